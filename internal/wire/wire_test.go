package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// TestFieldTable checks the table against the generated descriptors: the
// number and wire type of every field the codec reads and writes, and its
// tag against protowire.EncodeTag.
func TestFieldTable(t *testing.T) {
	event := (&reflexpb.Event{}).ProtoReflect().Descriptor()
	for _, tc := range []struct {
		num  protowire.Number
		tag  byte
		msg  protoreflect.MessageDescriptor
		name protoreflect.Name
	}{
		{batchEvents, tagBatchEvents, (&reflexpb.EventBatch{}).ProtoReflect().Descriptor(), "events"},
		{eventType, tagEventType, event, "type"},
		{eventTimestamp, tagEventTimestamp, event, "timestamp"},
		{eventForeignID, tagEventForeignID, event, "foreign_id"},
		{eventID, tagEventID, event, "id"},
		{eventMetadata, tagEventMetadata, event, "metadata"},
		{eventTrace, tagEventTrace, event, "trace"},
		{timestampSeconds, tagTimestampSeconds, (&timestamppb.Timestamp{}).ProtoReflect().Descriptor(), "seconds"},
		{timestampNanos, tagTimestampNanos, (&timestamppb.Timestamp{}).ProtoReflect().Descriptor(), "nanos"},
	} {
		fd := tc.msg.Fields().ByName(tc.name)
		if fd == nil {
			t.Errorf("%s has no field %s", tc.msg.FullName(), tc.name)
			continue
		}
		if fd.Number() != tc.num {
			t.Errorf("%s.%s is field %d, the table says %d", tc.msg.FullName(), tc.name, fd.Number(), tc.num)
		}
		typ := protowire.VarintType
		switch fd.Kind() {
		case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
			typ = protowire.BytesType
		}
		if want := protowire.EncodeTag(fd.Number(), typ); uint64(tc.tag) != want {
			t.Errorf("%s.%s tag = %#x, want %#x", tc.msg.FullName(), tc.name, tc.tag, want)
		}
	}
}

// codecEvents are events whose hand encoding must match proto.Marshal.
func codecEvents() []Event {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	at := func(t time.Time) (int64, int32) { return t.Unix(), int32(t.Nanosecond()) }
	var out []Event
	add := func(e Event, t time.Time) {
		e.Seconds, e.Nanos = at(t)
		e.HasTimestamp = true
		out = append(out, e)
	}
	add(Event{ID: "1", Type: 1, ForeignID: "f"}, ts)
	add(Event{}, time.Unix(0, 0))                                     // all zero on the wire
	add(Event{ID: "2", Type: -7}, time.Unix(-1, 5))                   // negative type and seconds
	add(Event{ID: "3", Type: math.MaxInt32}, time.Unix(0, 999999999)) // nanos only
	add(Event{ID: "4", Type: math.MinInt32}, time.Time{})             // year 1
	add(Event{ID: "5", Type: 2}, time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC))
	add(Event{ID: "6", Type: 3, ForeignID: "é€😀", MetaData: []byte{0, 1, 2}, Trace: []byte("trace")}, ts)
	add(Event{ID: "7", Type: 4, MetaData: []byte{}, Trace: []byte{}}, ts) // empty, not sent
	add(Event{ID: strings.Repeat("9", 300), Type: 5, ForeignID: strings.Repeat("x", 20000), MetaData: bytes.Repeat([]byte{7}, 70000)}, ts)
	return out
}

// toProto is the reflexpb.Event that e stands for.
func toProto(e *Event) *reflexpb.Event {
	return &reflexpb.Event{
		Id:        e.ID,
		Type:      e.Type,
		ForeignId: e.ForeignID,
		Timestamp: &timestamppb.Timestamp{Seconds: e.Seconds, Nanos: e.Nanos},
		Metadata:  e.MetaData,
		Trace:     e.Trace,
	}
}

func TestAppendEventMatchesProtoMarshal(t *testing.T) {
	var all []byte
	want := &reflexpb.EventBatch{}
	for i, e := range codecEvents() {
		got := AppendEvent(nil, &e)
		pb := toProto(&e)
		w, err := proto.Marshal(&reflexpb.EventBatch{Events: []*reflexpb.Event{pb}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("event %d: AppendEvent = %x, proto.Marshal = %x", i, got, w)
		}
		if size, ps := Size(&e), proto.Size(pb); size != ps {
			t.Errorf("event %d: Size = %d, proto.Size = %d", i, size, ps)
		}
		all = AppendEvent(all, &e)
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

// Decode decodes raw with a Decoder and convert.
func Decode(raw []byte, convert func(*converted, *Event) error) ([]converted, error) {
	var d Decoder
	n, err := d.Reset(raw)
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]converted, n)
	for i := range out {
		e, err := d.Next()
		if err != nil {
			return nil, err
		}
		if err := convert(&out[i], e); err != nil {
			return nil, err
		}
	}
	if _, err := d.Next(); err != io.EOF {
		return nil, fmt.Errorf("Next after the last event = %v, want io.EOF", err)
	}
	return out, nil
}

// converted is an event decoded and converted as a client converts it:
// the wire fields with the timestamp checked.
type converted struct {
	Event
	time time.Time
}

func convert(dst *converted, e *Event) error {
	ts, err := e.Time()
	if err != nil {
		return err
	}
	*dst = converted{Event: *e, time: ts}
	return nil
}

// protoDecode decodes raw with the generated code and converts it with
// timestamppb: what Decode with convert must agree with.
func protoDecode(raw []byte) ([]converted, error) {
	var b reflexpb.EventBatch
	if err := proto.Unmarshal(raw, &b); err != nil {
		return nil, err
	}
	if len(b.Events) == 0 {
		return nil, nil
	}
	out := make([]converted, len(b.Events))
	for i, pb := range b.Events {
		ts := time.Unix(0, 0).UTC()
		if pb.Timestamp != nil {
			if err := pb.Timestamp.CheckValid(); err != nil {
				return nil, err
			}
			ts = pb.Timestamp.AsTime()
		}
		out[i] = converted{
			Event: Event{
				ID: pb.Id, ForeignID: pb.ForeignId, Type: pb.Type,
				Seconds: pb.GetTimestamp().GetSeconds(), Nanos: pb.GetTimestamp().GetNanos(), HasTimestamp: pb.Timestamp != nil,
				MetaData: pb.Metadata, Trace: pb.Trace,
			},
			time: ts,
		}
	}
	return out, nil
}

func same(a, b *converted) bool {
	return a.ID == b.ID && a.ForeignID == b.ForeignID && a.Type == b.Type &&
		a.Seconds == b.Seconds && a.Nanos == b.Nanos && a.HasTimestamp == b.HasTimestamp &&
		a.time.Equal(b.time) && a.time.Location() == b.time.Location() &&
		bytes.Equal(a.MetaData, b.MetaData) && (a.MetaData == nil) == (b.MetaData == nil) &&
		bytes.Equal(a.Trace, b.Trace) && (a.Trace == nil) == (b.Trace == nil)
}

func TestDecodeMatchesProto(t *testing.T) {
	var raw []byte
	for _, e := range codecEvents() {
		raw = AppendEvent(raw, &e)
	}
	ev := tagBatchEvents
	// Fields a newer peer might add, and known fields with another wire
	// type, are skipped as the generated code skips them.
	raw = append(raw, 2<<3, 5)                                                                                         // EventBatch field 2, varint
	raw = append(raw, 1<<3, 1)                                                                                         // events as a varint
	raw = append(raw, ev, 5, 9<<3, 1, 3<<3|2, 1, 'x')                                                                  // unknown field, type as bytes
	raw = append(raw, ev, 2, 4<<3, 1)                                                                                  // timestamp as a varint
	raw = append(raw, ev, 8, tagEventTimestamp, 2, tagTimestampSeconds, 5, tagEventTimestamp, 2, tagTimestampNanos, 6) // merged timestamps
	raw = append(raw, ev, 0)                                                                                           // an empty event
	want, err := protoDecode(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(raw, convert)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if !same(&got[i], &want[i]) {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if ts := got[len(got)-2].time; !ts.Equal(time.Unix(5, 6)) {
		t.Errorf("merged timestamp = %v, want 5s 6ns", ts)
	}
	if got, err := Decode(nil, convert); err != nil || got != nil {
		t.Errorf("Decode(nil) = %v, %v; want nil, nil", got, err)
	}
	if n, err := Count(raw); err != nil || n != len(want) {
		t.Errorf("Count = %d, %v; want %d", n, err, len(want))
	}
}

func TestDecodeCapsSlices(t *testing.T) {
	raw := AppendEvent(nil, &Event{ID: "1", Type: 1, MetaData: []byte("ab")})
	raw = AppendEvent(raw, &Event{ID: "2", Type: 1, MetaData: []byte("cd")})
	got, err := Decode(raw, convert)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(got[0].MetaData, 'z')
	if string(got[1].MetaData) != "cd" || string(got[0].MetaData) != "ab" {
		t.Errorf("append to one event's metadata changed another's")
	}
	if cap(got[0].MetaData) != 2 {
		t.Errorf("metadata capacity = %d, want 2", cap(got[0].MetaData))
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := AppendEvent(nil, &Event{ID: "12", ForeignID: "34", Type: 1, Seconds: 5})
	ev := tagBatchEvents
	for _, tc := range []struct {
		name      string
		raw       []byte
		malformed bool
	}{
		{"truncated event", valid[:len(valid)-1], true},
		{"truncated tag", []byte{0x80}, true},
		{"field number zero", []byte{0 << 3, 1}, true},
		{"event length beyond the message", []byte{ev, 9, tagEventType}, true},
		{"truncated type", []byte{ev, 2, tagEventType, 0x80}, true},
		{"truncated field inside event", []byte{ev, 2, tagEventID, 5}, true},
		{"truncated timestamp", []byte{ev, 4, tagEventTimestamp, 2, tagTimestampSeconds, 0x80}, true},
		{"invalid UTF-8 ID", []byte{ev, 3, tagEventID, 1, 0xff}, true},
		{"invalid UTF-8 foreign ID", []byte{ev, 3, tagEventForeignID, 1, 0xc0}, true},
		{"field number too large", []byte{0x80, 0x80, 0x80, 0x80, 0x10, 0}, true},
		{"timestamp before year 1", append([]byte{ev, 13, tagEventTimestamp, 11, tagTimestampSeconds}, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), false},
		{"negative nanos", append([]byte{ev, 13, tagEventTimestamp, 11, tagTimestampNanos}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.raw, convert)
			if err == nil {
				t.Fatal("Decode: nil error")
			}
			if got := errors.Is(err, ErrMalformed); got != tc.malformed {
				t.Errorf("Decode = %v; errors.Is(err, ErrMalformed) = %v, want %v", err, got, tc.malformed)
			}
			if _, perr := protoDecode(tc.raw); perr == nil {
				t.Errorf("the generated code accepts what Decode refuses")
			}
		})
	}
}

// FuzzDecode checks Decode against the generated code on arbitrary bytes:
// both fail, or both give the same events.
func FuzzDecode(f *testing.F) {
	var raw []byte
	for _, e := range codecEvents()[:8] {
		raw = AppendEvent(raw, &e)
	}
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte{tagBatchEvents, 4, tagEventTimestamp, 2, tagTimestampSeconds, 1})
	f.Add([]byte{tagBatchEvents, 3, 0x0b, 0x0c, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		want, werr := protoDecode(raw)
		got, err := Decode(raw, convert)
		if (err != nil) != (werr != nil) {
			t.Fatalf("Decode error %v, generated code error %v", err, werr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("decoded %d events, want %d", len(got), len(want))
		}
		for i := range want {
			if !same(&got[i], &want[i]) {
				t.Fatalf("event %d = %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}

// FuzzAppendEvent checks the encoder against proto.Marshal on arbitrary
// events.
func FuzzAppendEvent(f *testing.F) {
	f.Add("1", "f", int32(3), int64(5), int32(6), []byte("m"), []byte(nil))
	f.Add("", "", int32(-1), int64(-62135596800), int32(999999999), []byte{}, []byte("t"))
	f.Fuzz(func(t *testing.T, id, fid string, typ int32, secs int64, nanos int32, meta, trace []byte) {
		e := Event{ID: id, ForeignID: fid, Type: typ, Seconds: secs, Nanos: nanos, MetaData: meta, Trace: trace}
		w, err := proto.Marshal(&reflexpb.EventBatch{Events: []*reflexpb.Event{toProto(&e)}})
		if err != nil {
			return // invalid UTF-8: the caller of AppendEvent checks it
		}
		if got := AppendEvent(nil, &e); !bytes.Equal(got, w) {
			t.Fatalf("AppendEvent = %x, proto.Marshal = %x", got, w)
		}
	})
}

// benchBatch is a typical batch: 1024 events with 7-digit IDs, short
// foreign IDs and no metadata.
func benchBatch() []Event {
	events := make([]Event, 1024)
	now := time.Now()
	for i := range events {
		events[i] = Event{ID: strconv.Itoa(1_000_000 + i), ForeignID: strconv.Itoa(i), Type: int32(i%5 + 1), Seconds: now.Unix(), Nanos: int32(now.Nanosecond())}
	}
	return events
}

// BenchmarkEncode compares encoding a batch by hand with the generated
// code.
func BenchmarkEncode(b *testing.B) {
	events := benchBatch()
	b.Run("Hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw := make([]byte, 0, len(events)*40)
			for i := range events {
				raw = AppendEvent(raw, &events[i])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
	b.Run("Proto", func(b *testing.B) {
		b.ReportAllocs()
		pbs := make([]*reflexpb.Event, len(events))
		for i := range events {
			pbs[i] = toProto(&events[i])
		}
		for b.Loop() {
			if _, err := proto.Marshal(&reflexpb.EventBatch{Events: pbs}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
}

// BenchmarkDecode compares decoding a batch by hand with the generated
// code.
func BenchmarkDecode(b *testing.B) {
	var raw []byte
	events := benchBatch()
	for i := range events {
		raw = AppendEvent(raw, &events[i])
	}
	b.Run("Hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(raw, convert); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
	b.Run("Proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protoDecode(raw); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	})
}
