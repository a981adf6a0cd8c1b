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
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// field is one field of the table: its number, its wire type and the
// one-byte tag that starts it on the wire.
type field struct {
	num protowire.Number
	typ protowire.Type
	tag byte
}

// newField returns the field num of wire type typ. Every field of the
// table has a number below 16, so its tag is one byte.
func newField(num protowire.Number, typ protowire.Type) field {
	tag := protowire.EncodeTag(num, typ)
	if tag >= 0x80 {
		panic(fmt.Sprintf("wire: field %d needs a tag of more than one byte", num))
	}
	return field{num: num, typ: typ, tag: byte(tag)}
}

// is reports whether a field read from the wire is f.
func (f field) is(num protowire.Number, typ protowire.Type) bool {
	return num == f.num && typ == f.typ
}

// The table: the fields of reflex.proto that a packed batch holds.
var (
	batchEvents = newField(1, protowire.BytesType) // EventBatch.events: repeated Event

	eventType      = newField(3, protowire.VarintType) // Event.type: int32
	eventTimestamp = newField(4, protowire.BytesType)  // Event.timestamp: google.protobuf.Timestamp
	eventForeignID = newField(5, protowire.BytesType)  // Event.foreign_id: string
	eventID        = newField(6, protowire.BytesType)  // Event.id: string
	eventMetadata  = newField(7, protowire.BytesType)  // Event.metadata: bytes
	eventTrace     = newField(8, protowire.BytesType)  // Event.trace: bytes

	timestampSeconds = newField(1, protowire.VarintType) // Timestamp.seconds: int64
	timestampNanos   = newField(2, protowire.VarintType) // Timestamp.nanos: int32
)

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
	b = append(b, batchEvents.tag)
	b = protowire.AppendVarint(b, uint64(msg))
	if e.Type != 0 {
		b = append(b, eventType.tag)
		b = protowire.AppendVarint(b, uint64(e.Type))
	}
	b = append(b, eventTimestamp.tag, byte(ts)) // ts is at most 17
	if e.Seconds != 0 {
		b = append(b, timestampSeconds.tag)
		b = protowire.AppendVarint(b, uint64(e.Seconds))
	}
	if e.Nanos != 0 {
		b = append(b, timestampNanos.tag)
		b = protowire.AppendVarint(b, uint64(e.Nanos))
	}
	b = appendString(b, eventForeignID, e.ForeignID)
	b = appendString(b, eventID, e.ID)
	b = appendBytes(b, eventMetadata, e.MetaData)
	b = appendBytes(b, eventTrace, e.Trace)
	return b
}

func appendString(b []byte, f field, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, f.tag)
	b = protowire.AppendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, f field, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, f.tag)
	b = protowire.AppendVarint(b, uint64(len(v)))
	return append(b, v...)
}

// ErrMalformed is wrapped by the errors of Count and Decode for bytes that
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
		if batchEvents.is(num, typ) {
			count++
		}
		off += n
	}
	return count, nil
}

// Decode decodes raw, the bytes of an EventBatch message, into one E per
// event: it decodes each event into an Event and passes it to set, which
// converts it into the E of the same index (and may fail). It returns nil
// for a batch without events.
//
// The events' strings share one allocation; their MetaData and Trace point
// into raw, which the caller must not modify afterwards, with their
// capacity cut to their length (so an append never writes into raw), and
// are nil when empty, as the generated code decodes proto3 bytes fields.
// Unknown fields, and known fields with an unexpected wire type, are
// skipped as the generated code skips them; repeated timestamps are
// merged as it merges them. Malformed bytes and strings that are not valid
// UTF-8 fail with an error wrapping ErrMalformed.
func Decode[E any](raw []byte, set func(dst *E, e *Event) error) ([]E, error) {
	count, err := Count(raw)
	if err != nil || count == 0 {
		return nil, err
	}
	var (
		out = make([]E, count)
		str = string(raw) // the events' strings are substrings
		i   int
		e   Event
	)
	for off := 0; off < len(raw); {
		num, typ, start, n := consumeField(raw[off:]) // valid: counted above
		if batchEvents.is(num, typ) {
			e = Event{}
			if err := decodeEvent(&e, raw, str, off+start, off+n); err != nil {
				return nil, err
			}
			if err := set(&out[i], &e); err != nil {
				return nil, err
			}
			i++
		}
		off += n
	}
	return out, nil
}

// decodeEvent decodes the Event message raw[off:end] into e, which is
// zero; str is string(raw).
func decodeEvent(e *Event, raw []byte, str string, off, end int) error {
	for off < end {
		num, typ, start, n := consumeField(raw[off:end])
		if n < 0 {
			return malformed(n)
		}
		v := raw[off+start : off+n] // the value
		vs := off + start           // where v starts in raw and str
		off += n
		switch {
		case eventType.is(num, typ):
			x, _ := protowire.ConsumeVarint(v)
			e.Type = int32(x)
		case eventTimestamp.is(num, typ):
			e.HasTimestamp = true
			if err := decodeTimestamp(e, v); err != nil {
				return err
			}
		case eventForeignID.is(num, typ):
			s, err := decodeString(str, vs, len(v), num)
			if err != nil {
				return err
			}
			e.ForeignID = s
		case eventID.is(num, typ):
			s, err := decodeString(str, vs, len(v), num)
			if err != nil {
				return err
			}
			e.ID = s
		case eventMetadata.is(num, typ):
			e.MetaData = nonEmpty(v)
		case eventTrace.is(num, typ):
			e.Trace = nonEmpty(v)
		}
	}
	return nil
}

// decodeString returns the string field num of n bytes at str[off:].
func decodeString(str string, off, n int, num protowire.Number) (string, error) {
	s := str[off : off+n]
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: string field %d is not valid UTF-8", ErrMalformed, num)
	}
	return s, nil
}

// decodeTimestamp merges the Timestamp message v into e, as proto merges
// repeated occurrences of a message field.
func decodeTimestamp(e *Event, v []byte) error {
	for len(v) > 0 {
		num, typ, start, n := consumeField(v)
		if n < 0 {
			return malformed(n)
		}
		switch {
		case timestampSeconds.is(num, typ):
			x, _ := protowire.ConsumeVarint(v[start:n])
			e.Seconds = int64(x)
		case timestampNanos.is(num, typ):
			x, _ := protowire.ConsumeVarint(v[start:n])
			e.Nanos = int32(x)
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
