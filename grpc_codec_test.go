package reflex

import (
	"bytes"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/seed-e488ba2e/reflex/internal/wire"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// codecEvents are events whose three encodings (eventToProto, fillProto
// and packed) must agree with proto.Marshal.
func codecEvents() []Event {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	return []Event{
		{ID: "1", Type: eventtype.Type(1), ForeignID: "f", Timestamp: ts},
		{ID: "", Type: eventtype.Type(0), Timestamp: time.Unix(0, 0)},                                   // all zero on the wire
		{ID: "2", Type: eventtype.Type(-7), Timestamp: time.Unix(-1, 5)},                                // negative type and seconds
		{ID: "3", Type: eventtype.Type(math.MaxInt32), Timestamp: time.Unix(0, 999999999)},              // nanos only
		{ID: "4", Type: eventtype.Type(math.MinInt32), Timestamp: time.Time{}},                          // year 1
		{ID: "5", Type: eventtype.Type(2), Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}, // year 9999
		{ID: "6", Type: eventtype.Type(3), ForeignID: "é€😀", Timestamp: ts, MetaData: []byte{0, 1, 2}, Trace: []byte("trace")},
		{ID: "7", Type: eventtype.Type(4), Timestamp: ts, MetaData: []byte{}, Trace: []byte{}}, // empty, not sent
		{ID: strings.Repeat("9", 300), Type: eventtype.Type(5), ForeignID: strings.Repeat("x", 20000), Timestamp: ts, MetaData: bytes.Repeat([]byte{7}, 70000)},
	}
}

// TestEncodingsAgree checks that an event sent packed, sent in a filled
// reflexpb.Event and converted by eventToProto is the same on the wire,
// and comes back the same from the packed decoder and the generated code.
func TestEncodingsAgree(t *testing.T) {
	for i, e := range codecEvents() {
		pb, err := eventToProto(&e)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.Marshal(&reflexpb.EventBatch{Events: []*reflexpb.Event{pb}})
		if err != nil {
			t.Fatal(err)
		}
		w, err := toWire(&e)
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.AppendEvent(nil, &w); !bytes.Equal(got, want) {
			t.Errorf("event %d: packed = %x, proto.Marshal = %x", i, got, want)
		}
		var fp reflexpb.Event
		var fts timestamppb.Timestamp
		size, err := fillProto(&fp, &fts, &e)
		if err != nil {
			t.Fatal(err)
		}
		if ps := proto.Size(pb); size != ps {
			t.Errorf("event %d: fillProto size %d, proto.Size %d", i, size, ps)
		}
		if !proto.Equal(&fp, pb) {
			t.Errorf("event %d: fillProto = %v, want %v", i, &fp, pb)
		}

		packed, err := decodePacked(want)
		if err != nil || len(packed) != 1 {
			t.Fatalf("event %d: packed decode = %v, %v", i, packed, err)
		}
		var got reflexpb.EventBatch
		if err := proto.Unmarshal(want, &got); err != nil {
			t.Fatal(err)
		}
		back, err := eventFromProto(got.Events[0])
		if err != nil {
			t.Fatal(err)
		}
		if !sameEvent(&packed[0], back) || !back.Timestamp.Equal(e.Timestamp) {
			t.Errorf("event %d: packed decodes to %+v, the generated code to %+v", i, packed[0], *back)
		}
	}
}

func sameEvent(a, b *Event) bool {
	return a.ID == b.ID && a.ForeignID == b.ForeignID && a.Type.ReflexType() == b.Type.ReflexType() &&
		a.Timestamp.Equal(b.Timestamp) && a.Timestamp.Location() == b.Timestamp.Location() &&
		bytes.Equal(a.MetaData, b.MetaData) && (a.MetaData == nil) == (b.MetaData == nil) &&
		bytes.Equal(a.Trace, b.Trace) && (a.Trace == nil) == (b.Trace == nil)
}

// TestToWireErrors checks the one list of checks of every sent event.
func TestToWireErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    *Event
	}{
		{"nil event", nil},
		{"nil type", &Event{ID: "1"}},
		{"type beyond int32", &Event{ID: "1", Type: eventtype.Type(1 << 40)}},
		{"invalid UTF-8 ID", &Event{ID: "\xff", Type: eventtype.Type(1)}},
		{"invalid UTF-8 foreign ID", &Event{ID: "1", ForeignID: "a\xc0", Type: eventtype.Type(1)}},
		{"long invalid ID", &Event{ID: strings.Repeat("\xff", 1<<20), Type: eventtype.Type(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := toWire(tc.e)
			if err == nil {
				t.Fatal("toWire: nil error")
			}
			if len(err.Error()) > 512 {
				t.Errorf("toWire error is %d bytes long, want a bounded message", len(err.Error()))
			}
			if _, perr := eventToProto(tc.e); perr == nil {
				t.Error("eventToProto accepts what toWire refuses")
			}
			var pb reflexpb.Event
			var ts timestamppb.Timestamp
			if _, ferr := fillProto(&pb, &ts, tc.e); ferr == nil {
				t.Error("fillProto accepts what toWire refuses")
			}
		})
	}
}

// BenchmarkEncodeBatch compares encoding a batch packed with filling
// reflexpb messages and proto.Marshal.
func BenchmarkEncodeBatch(b *testing.B) {
	events := benchBatch()
	b.Run("Hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw := make([]byte, 0, len(events)*batchEventGuess)
			for i := range events {
				w, err := toWire(&events[i])
				if err != nil {
					b.Fatal(err)
				}
				raw = wire.AppendEvent(raw, &w)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
	b.Run("Proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pbs, tss := make([]reflexpb.Event, len(events)), make([]timestamppb.Timestamp, len(events))
			batch := &reflexpb.EventBatch{Events: make([]*reflexpb.Event, len(events))}
			for i := range events {
				_, _ = fillProto(&pbs[i], &tss[i], &events[i])
				batch.Events[i] = &pbs[i]
			}
			if _, err := proto.Marshal(batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
}

// BenchmarkDecodeBatch compares decoding a packed batch into events with
// proto.Unmarshal and eventFromProtoInto.
func BenchmarkDecodeBatch(b *testing.B) {
	var raw []byte
	events := benchBatch()
	for i := range events {
		w, _ := toWire(&events[i])
		raw = wire.AppendEvent(raw, &w)
	}
	b.Run("Hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodePacked(raw); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
	b.Run("Proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var pb reflexpb.EventBatch
			if err := proto.Unmarshal(raw, &pb); err != nil {
				b.Fatal(err)
			}
			out := make([]Event, len(pb.Events))
			for i, e := range pb.Events {
				if err := eventFromProtoInto(&out[i], e); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
}

// benchBatch is a typical batch: 1024 events with 7-digit IDs, short
// foreign IDs and no metadata.
func benchBatch() []Event {
	events := make([]Event, 1024)
	ts := time.Now()
	for i := range events {
		events[i] = Event{ID: strconv.Itoa(1_000_000 + i), ForeignID: strconv.Itoa(i), Type: eventtype.Type(i%5 + 1), Timestamp: ts}
	}
	return events
}
