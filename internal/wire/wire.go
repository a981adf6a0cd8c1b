// Package wire encodes and decodes packed event batches by hand: the bytes
// of a reflexpb.EventBatch that holds only events (field 1), which a
// StreamBatch server puts in EventBatch.packed for clients that ask for it.
// The encoding is the one proto.Marshal produces for the same messages
// (fields in number order, zero values omitted, the timestamp always
// present), so peers that use the generated code read the same bytes; the
// point of writing it by hand is that no reflexpb.Event is allocated per
// event on either side.
//
// The field numbers and wire types come from one table (the fields
// below), used by the encoder and the decoder alike; a test checks it
// against the generated descriptors of reflexpb.
package wire

import (
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The table of the fields a packed batch holds, from reflex.proto: each
// field's number, and its tag, the byte that starts the field on the wire
// (the number and the wire type, as protowire.EncodeTag gives them; every
// number is below 16, so one byte). The encoder writes these tags and the
// decoder matches them; TestFieldTable checks the table against the
// generated descriptors and protowire.EncodeTag.
const (
	batchEvents    protowire.Number = 1 // EventBatch.events: repeated Event
	tagBatchEvents                  = byte(batchEvents)<<3 | byte(protowire.BytesType)

	eventType         protowire.Number = 3 // Event.type: int32
	tagEventType                       = byte(eventType)<<3 | byte(protowire.VarintType)
	eventTimestamp    protowire.Number = 4 // Event.timestamp: google.protobuf.Timestamp
	tagEventTimestamp                  = byte(eventTimestamp)<<3 | byte(protowire.BytesType)
	eventForeignID    protowire.Number = 5 // Event.foreign_id: string
	tagEventForeignID                  = byte(eventForeignID)<<3 | byte(protowire.BytesType)
	eventID           protowire.Number = 6 // Event.id: string
	tagEventID                         = byte(eventID)<<3 | byte(protowire.BytesType)
	eventMetadata     protowire.Number = 7 // Event.metadata: bytes
	tagEventMetadata                   = byte(eventMetadata)<<3 | byte(protowire.BytesType)
	eventTrace        protowire.Number = 8 // Event.trace: bytes
	tagEventTrace                      = byte(eventTrace)<<3 | byte(protowire.BytesType)

	timestampSeconds    protowire.Number = 1 // Timestamp.seconds: int64
	tagTimestampSeconds                  = byte(timestampSeconds)<<3 | byte(protowire.VarintType)
	timestampNanos      protowire.Number = 2 // Timestamp.nanos: int32
	tagTimestampNanos                    = byte(timestampNanos)<<3 | byte(protowire.VarintType)
)

// tagOf returns the one-byte tag of a field read from the wire, or 0 for
// a field number that needs a longer tag (no field of the table).
func tagOf(num protowire.Number, typ protowire.Type) byte {
	if num >= 16 {
		return 0
	}
	return byte(num)<<3 | byte(typ)
}

// Event is one reflexpb.Event as the wire carries it.
type Event struct {
	ID        string
	ForeignID string
	Type      int32
	// Seconds and Nanos are the google.protobuf.Timestamp. The encoder
	// always writes the timestamp; the decoder sets HasTimestamp when the
	// message has one (the generated code then has a non-nil Timestamp).
	Seconds      int64
	Nanos        int32
	HasTimestamp bool
	MetaData     []byte
	Trace        []byte
}

// The range of valid google.protobuf.Timestamp seconds (years 1 to 9999),
// as timestamppb.Timestamp.CheckValid checks it.
const (
	minSeconds = -62135596800
	maxSeconds = 253402300799
)

// Time returns the event's timestamp in UTC: the Unix epoch if it has
// none, and an error (as timestamppb.Timestamp.CheckValid gives) if it is
// outside years 1 to 9999 or its nanoseconds are out of range.
func (e *Event) Time() (time.Time, error) {
	switch {
	case !e.HasTimestamp:
		return time.Unix(0, 0).UTC(), nil
	case e.Seconds < minSeconds:
		return time.Time{}, fmt.Errorf("timestamp (seconds:%d nanos:%d) before 0001-01-01", e.Seconds, e.Nanos)
	case e.Seconds > maxSeconds:
		return time.Time{}, fmt.Errorf("timestamp (seconds:%d nanos:%d) after 9999-12-31", e.Seconds, e.Nanos)
	case e.Nanos < 0 || e.Nanos >= 1e9:
		return time.Time{}, fmt.Errorf("timestamp (seconds:%d nanos:%d) has out-of-range nanos", e.Seconds, e.Nanos)
	}
	return time.Unix(e.Seconds, int64(e.Nanos)).UTC(), nil
}

// sizes returns the encoded size of e's Timestamp message and of its Event
// message.
func sizes(e *Event) (ts, msg int) {
	if e.Seconds != 0 {
		ts += 1 + protowire.SizeVarint(uint64(e.Seconds))
	}
	if e.Nanos != 0 {
		ts += 1 + protowire.SizeVarint(uint64(e.Nanos))
	}
	msg = 1 + protowire.SizeBytes(ts)
	if e.Type != 0 {
		msg += 1 + protowire.SizeVarint(uint64(e.Type))
	}
	msg += sizeBytes(len(e.ForeignID)) + sizeBytes(len(e.ID)) + sizeBytes(len(e.MetaData)) + sizeBytes(len(e.Trace))
	return ts, msg
}

// Size returns the encoded size of e as a reflexpb.Event message, as
// proto.Size gives for the message the encoder writes.
func Size(e *Event) int {
	_, msg := sizes(e)
	return msg
}

// sizeBytes is the encoded size of a length-delimited field holding n
// bytes (0 when n is 0: proto3 omits it).
func sizeBytes(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + protowire.SizeBytes(n)
}

// AppendEvent appends e to b as one element of EventBatch.events and
// returns the extended buffer. It writes what proto.Marshal writes for the
// message, with the timestamp always present. It does not check e: the
// caller has (strings must be valid UTF-8, as proto.Marshal requires).
func AppendEvent(b []byte, e *Event) []byte {
	ts, msg := sizes(e)
	b = append(b, tagBatchEvents)
	b = protowire.AppendVarint(b, uint64(msg))
	if e.Type != 0 {
		b = append(b, tagEventType)
		b = protowire.AppendVarint(b, uint64(e.Type))
	}
	b = append(b, tagEventTimestamp, byte(ts)) // ts is at most 17
	if e.Seconds != 0 {
		b = append(b, tagTimestampSeconds)
		b = protowire.AppendVarint(b, uint64(e.Seconds))
	}
	if e.Nanos != 0 {
		b = append(b, tagTimestampNanos)
		b = protowire.AppendVarint(b, uint64(e.Nanos))
	}
	b = appendString(b, tagEventForeignID, e.ForeignID)
	b = appendString(b, tagEventID, e.ID)
	b = appendBytes(b, tagEventMetadata, e.MetaData)
	b = appendBytes(b, tagEventTrace, e.Trace)
	return b
}

func appendString(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, tag)
	b = protowire.AppendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, tag byte, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, tag)
	b = protowire.AppendVarint(b, uint64(len(v)))
	return append(b, v...)
}

// ErrMalformed is wrapped by the errors of Count and the Decoder for bytes that
// are not a valid EventBatch.
var ErrMalformed = errors.New("reflex: malformed event batch")

// malformed returns the error for a protowire result code n < 0, or for
// errFieldNumber.
func malformed(n int) error {
	if n == errFieldNumber {
		return fmt.Errorf("%w: field number above %d", ErrMalformed, protowire.MaxValidNumber)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(n))
}

// errFieldNumber is the result code of consumeTag for a field number
// above protowire.MaxValidNumber (protowire's codes are -1 to -6).
const errFieldNumber = -100

// consumeTag is protowire.ConsumeTag, also refusing field numbers above
// protowire.MaxValidNumber as the generated code does (n is then
// errFieldNumber).
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, errFieldNumber
	}
	return num, typ, n
}

// consumeField returns the number and wire type of the field at the start
// of b, where its value starts (after the length of a length-delimited
// value) and the field's length; n < 0 is a protowire error code.
func consumeField(b []byte) (num protowire.Number, typ protowire.Type, start, n int) {
	// Fast path: a one-byte tag (fields 1 to 15) with a one-byte varint
	// value or length.
	if len(b) >= 2 && b[0] >= 1<<3 && b[0] < 0x80 && b[1] < 0x80 {
		switch typ := protowire.Type(b[0] & 7); typ {
		case protowire.VarintType:
			return protowire.Number(b[0] >> 3), typ, 1, 2
		case protowire.BytesType:
			if l := 2 + int(b[1]); l <= len(b) {
				return protowire.Number(b[0] >> 3), typ, 2, l
			}
		}
	}
	return consumeFieldSlow(b)
}

func consumeFieldSlow(b []byte) (num protowire.Number, typ protowire.Type, start, n int) {
	num, typ, t := consumeTag(b)
	if t < 0 {
		return 0, 0, 0, t
	}
	switch typ {
	case protowire.VarintType:
		_, l := protowire.ConsumeVarint(b[t:])
		if l < 0 {
			return 0, 0, 0, l
		}
		return num, typ, t, t + l
	case protowire.BytesType:
		v, l := protowire.ConsumeBytes(b[t:])
		if l < 0 {
			return 0, 0, 0, l
		}
		return num, typ, t + l - len(v), t + l
	}
	l := protowire.ConsumeFieldValue(num, typ, b[t:])
	if l < 0 {
		return 0, 0, 0, l
	}
	return num, typ, t, t + l
}

// Count returns the number of events in raw, the bytes of an EventBatch
// message, checking that its fields are well formed (not the events
// themselves). It fails with an error wrapping ErrMalformed.
func Count(raw []byte) (int, error) {
	count := 0
	for off := 0; off < len(raw); {
		num, typ, _, n := consumeField(raw[off:])
		if n < 0 {
			return 0, malformed(n)
		}
		if tagOf(num, typ) == tagBatchEvents {
			count++
		}
		off += n
	}
	return count, nil
}

// Decoder decodes the events of a packed batch one by one, without
// allocating per event:
//
//	var d wire.Decoder
//	n, err := d.Reset(raw)
//	for range n {
//		e, err := d.Next()
//		...
//	}
//
// The events' strings share one allocation per batch; their MetaData and
// Trace point into raw, which the caller must not modify afterwards, with
// their capacity cut to their length (so an append never writes into raw),
// and are nil when empty, as the generated code decodes proto3 bytes
// fields. Unknown fields, and known fields with an unexpected wire type,
// are skipped as the generated code skips them; repeated timestamps are
// merged as it merges them. Malformed bytes and strings that are not valid
// UTF-8 fail with an error wrapping ErrMalformed. The zero Decoder is
// ready for Reset; a Decoder is not safe for concurrent use.
type Decoder struct {
	raw []byte
	str string // string(raw): the events' strings are substrings
	off int    // where the next field of the batch starts
	e   Event  // the event Next returns
}

// Reset starts decoding raw, the bytes of an EventBatch message, and
// returns the number of events it holds (see Count).
func (d *Decoder) Reset(raw []byte) (int, error) {
	n, err := Count(raw)
	if err != nil {
		return 0, err
	}
	*d = Decoder{raw: raw}
	if n > 0 {
		d.str = string(raw)
	}
	return n, nil
}

// Next decodes the next event. The Event it returns is valid until the
// next call of Next or Reset. After the last event it returns io.EOF.
func (d *Decoder) Next() (*Event, error) {
	for d.off < len(d.raw) {
		num, typ, start, n := consumeField(d.raw[d.off:]) // valid: counted by Reset
		off := d.off
		d.off += n
		if tagOf(num, typ) != tagBatchEvents {
			continue
		}
		d.e = Event{}
		if err := decodeEvent(&d.e, d.raw, d.str, off+start, off+n); err != nil {
			d.off = len(d.raw)
			return nil, err
		}
		return &d.e, nil
	}
	return nil, io.EOF
}

// decodeEvent decodes the Event message raw[off:end] into e, which is
// zero; str is string(raw).
func decodeEvent(e *Event, raw []byte, str string, off, end int) error {
	for off < end {
		num, typ, start, n := consumeField(raw[off:end])
		if n < 0 {
			return malformed(n)
		}
		vs, ve := off+start, off+n // where the value is in raw and str
		off = ve
		switch tagOf(num, typ) {
		case tagEventType:
			x, _ := protowire.ConsumeVarint(raw[vs:ve])
			e.Type = int32(x)
		case tagEventTimestamp:
			e.HasTimestamp = true
			if err := decodeTimestamp(e, raw[vs:ve]); err != nil {
				return err
			}
		case tagEventForeignID:
			s, err := decodeString(str[vs:ve], num)
			if err != nil {
				return err
			}
			e.ForeignID = s
		case tagEventID:
			s, err := decodeString(str[vs:ve], num)
			if err != nil {
				return err
			}
			e.ID = s
		case tagEventMetadata:
			e.MetaData = nonEmpty(raw[vs:ve])
		case tagEventTrace:
			e.Trace = nonEmpty(raw[vs:ve])
		}
	}
	return nil
}

// decodeString returns s, the value of the string field num, if it is
// valid UTF-8.
func decodeString(s string, num protowire.Number) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: string field %d is not valid UTF-8", ErrMalformed, num)
	}
	return s, nil
}

// decodeTimestamp merges the Timestamp message v into e, as proto merges
// repeated occurrences of a message field.
func decodeTimestamp(e *Event, v []byte) error {
	for len(v) > 0 {
		if tag := v[0]; tag == tagTimestampSeconds || tag == tagTimestampNanos {
			x, l := protowire.ConsumeVarint(v[1:])
			if l < 0 {
				return malformed(l)
			}
			if tag == tagTimestampSeconds {
				e.Seconds = int64(x)
			} else {
				e.Nanos = int32(x)
			}
			v = v[1+l:]
			continue
		}
		_, _, _, n := consumeField(v) // another field: skip it
		if n < 0 {
			return malformed(n)
		}
		v = v[n:]
	}
	return nil
}

// nonEmpty returns v with its capacity cut to its length, or nil if v is
// empty.
func nonEmpty(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return v[:len(v):len(v)]
}
