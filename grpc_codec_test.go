package reflex

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// codecEvents are events whose hand encoding must match proto.Marshal.
func codecEvents() []Event {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	return []Event{
		{ID: "1", Type: eventType(1), ForeignID: "f", Timestamp: ts},
		{ID: "", Type: eventType(0), Timestamp: time.Unix(0, 0)},                                   // all zero on the wire
		{ID: "2", Type: eventType(-7), Timestamp: time.Unix(-1, 5)},                                // negative type and seconds
		{ID: "3", Type: eventType(math.MaxInt32), Timestamp: time.Unix(0, 999999999)},              // nanos only
		{ID: "4", Type: eventType(math.MinInt32), Timestamp: time.Time{}},                          // year 1
		{ID: "5", Type: eventType(2), Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}, // year 9999
		{ID: "6", Type: eventType(3), ForeignID: "é€😀", Timestamp: ts, MetaData: []byte{0, 1, 2}, Trace: []byte("trace")},
		{ID: "7", Type: eventType(4), Timestamp: ts, MetaData: []byte{}, Trace: []byte{}}, // empty, not sent
		{ID: string(bytes.Repeat([]byte("9"), 300)), Type: eventType(5), ForeignID: string(bytes.Repeat([]byte("x"), 20000)), Timestamp: ts, MetaData: bytes.Repeat([]byte{7}, 70000)},
	}
}

func TestAppendBatchEventMatchesProtoMarshal(t *testing.T) {
	var all []byte
	want := &reflexpb.EventBatch{}
	for i, e := range codecEvents() {
		got, err := appendBatchEvent(nil, &e)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		pb, err := eventToProto(&e)
		if err != nil {
			t.Fatal(err)
		}
		w, err := proto.Marshal(&reflexpb.EventBatch{Events: []*reflexpb.Event{pb}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("event %d: appendBatchEvent = %x, proto.Marshal = %x", i, got, w)
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
		all, _ = appendBatchEvent(all, &e)
		want.Events = append(want.Events, pb)
	}
	w, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(all, w) {
		t.Errorf("batch encoding differs from proto.Marshal")
	}
}

func TestAppendBatchEventErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    *Event
	}{
		{"nil event", nil},
		{"nil type", &Event{ID: "1"}},
		{"type beyond int32", &Event{ID: "1", Type: eventType(1 << 40)}},
		{"invalid UTF-8 ID", &Event{ID: "\xff", Type: eventType(1)}},
		{"invalid UTF-8 foreign ID", &Event{ID: "1", ForeignID: "a\xc0", Type: eventType(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := appendBatchEvent([]byte("x"), tc.e)
			if err == nil {
				t.Fatal("appendBatchEvent: nil error")
			}
			if string(b) != "x" {
				t.Errorf("appendBatchEvent wrote %q before failing", b)
			}
		})
	}
}

// protoBatchEvents decodes raw as the generated code and eventFromProtoInto
// do: the reference decodeEventBatch must agree with.
func protoBatchEvents(raw []byte) ([]Event, error) {
	var b reflexpb.EventBatch
	if err := proto.Unmarshal(raw, &b); err != nil {
		return nil, err
	}
	events := make([]Event, len(b.Events))
	for i, pb := range b.Events {
		if err := eventFromProtoInto(&events[i], pb); err != nil {
			return nil, err
		}
	}
	return events, nil
}

func sameEvent(a, b *Event) bool {
	return a.ID == b.ID && a.ForeignID == b.ForeignID && a.Type.ReflexType() == b.Type.ReflexType() &&
		a.Timestamp.Equal(b.Timestamp) && a.Timestamp.Location() == b.Timestamp.Location() &&
		bytes.Equal(a.MetaData, b.MetaData) && (a.MetaData == nil) == (b.MetaData == nil) &&
		bytes.Equal(a.Trace, b.Trace) && (a.Trace == nil) == (b.Trace == nil)
}

func TestDecodeEventBatchMatchesProto(t *testing.T) {
	var raw []byte
	for _, e := range codecEvents() {
		raw, _ = appendBatchEvent(raw, &e)
	}
	// Fields a newer peer might add, and known fields with another wire
	// type, are skipped as the generated code skips them.
	raw = append(raw, 2<<3, 5)                                                                             // EventBatch field 2, varint
	raw = append(raw, 1<<3, 1)                                                                             // events as a varint
	raw = append(raw, batchEventsTag, 5, 9<<3, 1, 3<<3|2, 1, 'x')                                          // unknown field, type as bytes
	raw = append(raw, batchEventsTag, 2, 4<<3, 1)                                                          // timestamp as a varint
	raw = append(raw, batchEventsTag, 8, eventTimeTag, 2, tsSecondsTag, 5, eventTimeTag, 2, tsNanosTag, 6) // merged timestamps
	raw = append(raw, batchEventsTag, 0)                                                                   // an empty event
	want, err := protoBatchEvents(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEventBatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameEvent(&got[i], &want[i]) {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if ts := got[len(got)-2].Timestamp; !ts.Equal(time.Unix(5, 6)) {
		t.Errorf("merged timestamp = %v, want 5s 6ns", ts)
	}
	if got, err := decodeEventBatch(nil); err != nil || got != nil {
		t.Errorf("decodeEventBatch(nil) = %v, %v; want nil, nil", got, err)
	}
}

func TestDecodeEventBatchCapsSlices(t *testing.T) {
	raw, _ := appendBatchEvent(nil, &Event{ID: "1", Type: eventType(1), MetaData: []byte("ab")})
	raw, _ = appendBatchEvent(raw, &Event{ID: "2", Type: eventType(1), MetaData: []byte("cd")})
	got, err := decodeEventBatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(got[0].MetaData, 'z')
	if string(got[1].MetaData) != "cd" && string(got[0].MetaData) != "ab" {
		t.Errorf("append to one event's metadata changed another's")
	}
	if cap(got[0].MetaData) != 2 {
		t.Errorf("metadata capacity = %d, want 2", cap(got[0].MetaData))
	}
}

func TestDecodeEventBatchErrors(t *testing.T) {
	valid, _ := appendBatchEvent(nil, &Event{ID: "12", ForeignID: "34", Type: eventType(1), Timestamp: time.Unix(5, 0)})
	for _, tc := range []struct {
		name      string
		raw       []byte
		malformed bool
	}{
		{"truncated event", valid[:len(valid)-1], true},
		{"truncated tag", []byte{0x80}, true},
		{"field number zero", []byte{0 << 3, 1}, true},
		{"event length beyond the message", []byte{batchEventsTag, 9, eventTypeTag}, true},
		{"truncated type", []byte{batchEventsTag, 2, eventTypeTag, 0x80}, true},
		{"truncated field inside event", []byte{batchEventsTag, 2, eventIDTag, 5}, true},
		{"truncated timestamp", []byte{batchEventsTag, 4, eventTimeTag, 2, tsSecondsTag, 0x80}, true},
		{"invalid UTF-8 ID", []byte{batchEventsTag, 3, eventIDTag, 1, 0xff}, true},
		{"invalid UTF-8 foreign ID", []byte{batchEventsTag, 3, eventForeignTag, 1, 0xc0}, true},
		{"timestamp before year 1", append([]byte{batchEventsTag, 13, eventTimeTag, 11, tsSecondsTag}, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), false},
		{"negative nanos", append([]byte{batchEventsTag, 13, eventTimeTag, 11, tsNanosTag}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeEventBatch(tc.raw)
			if err == nil {
				t.Fatal("decodeEventBatch: nil error")
			}
			if got := errors.Is(err, errMalformedBatch); got != tc.malformed {
				t.Errorf("decodeEventBatch = %v; errors.Is(err, errMalformedBatch) = %v, want %v", err, got, tc.malformed)
			}
			if _, perr := protoBatchEvents(tc.raw); perr == nil {
				t.Errorf("the generated code accepts what decodeEventBatch refuses")
			}
		})
	}
}

// FuzzDecodeEventBatch checks decodeEventBatch against the generated code
// and eventFromProtoInto on arbitrary bytes: both fail, or both give the
// same events.
func FuzzDecodeEventBatch(f *testing.F) {
	var raw []byte
	for _, e := range codecEvents()[:8] {
		raw, _ = appendBatchEvent(raw, &e)
	}
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte{batchEventsTag, 4, eventTimeTag, 2, tsSecondsTag, 1})
	f.Add([]byte{batchEventsTag, 3, 0x0b, 0x0c, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		want, werr := protoBatchEvents(raw)
		got, err := decodeEventBatch(raw)
		if (err != nil) != (werr != nil) {
			t.Fatalf("decodeEventBatch error %v, generated code error %v", err, werr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("decoded %d events, want %d", len(got), len(want))
		}
		for i := range want {
			if !sameEvent(&got[i], &want[i]) {
				t.Fatalf("event %d = %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}

// benchBatch is a typical batch: 1024 events with 7-digit IDs, short
// foreign IDs and no metadata.
func benchBatch() []Event {
	events := make([]Event, 1024)
	ts := time.Now()
	for i := range events {
		events[i] = Event{ID: strconv.Itoa(1_000_000 + i), ForeignID: strconv.Itoa(i), Type: eventType(i%5 + 1), Timestamp: ts}
	}
	return events
}

// BenchmarkEncodeBatch compares encoding a batch by hand (appendBatchEvent)
// with the generated code (fillProto, then proto.Marshal).
func BenchmarkEncodeBatch(b *testing.B) {
	events := benchBatch()
	b.Run("Hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw := make([]byte, 0, len(events)*batchEventGuess)
			for i := range events {
				raw, _ = appendBatchEvent(raw, &events[i])
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

// BenchmarkDecodeBatch compares decoding a batch by hand
// (decodeEventBatch) with the generated code (proto.Unmarshal, then
// eventFromProtoInto).
func BenchmarkDecodeBatch(b *testing.B) {
	var raw []byte
	events := benchBatch()
	for i := range events {
		raw, _ = appendBatchEvent(raw, &events[i])
	}
	b.Run("Hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEventBatch(raw); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
	b.Run("Proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protoBatchEvents(raw); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
}

func TestDecodeEventBatchFieldNumberTooLarge(t *testing.T) {
	// A tag for field 2^29 (above protowire.MaxValidNumber), varint type.
	raw := []byte{0x80, 0x80, 0x80, 0x80, 0x10, 0}
	_, err := decodeEventBatch(raw)
	if !errors.Is(err, errMalformedBatch) || !strings.Contains(err.Error(), "field number") {
		t.Fatalf("decodeEventBatch = %v, want a malformed batch error about the field number", err)
	}
	if _, perr := protoBatchEvents(raw); perr == nil {
		t.Errorf("the generated code accepts what decodeEventBatch refuses")
	}
}
