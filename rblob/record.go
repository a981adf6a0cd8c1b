package rblob

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/seed-e488ba2e/reflex"
)

// This file is the archive record codec: the JSON object an Archiver writes
// per event (encodeRecord), and its decoding. Decoding has two paths that
// give the same result: parseRecord reads the exact form encodeRecord
// writes (no whitespace, fields in order, strings without escapes) without
// allocating; anything else goes through encoding/json (decodeRecordJSON),
// which either accepts it or returns the error. FuzzRecordFastPath checks
// that parseRecord accepts nothing encoding/json rejects and decodes what
// it accepts to the same event.

// record is one line of an archive object; see DecodeArchived.
type record struct {
	ID        string    `json:"id"`
	Type      int       `json:"type"`
	ForeignID string    `json:"foreign_id"`
	Timestamp time.Time `json:"timestamp"`
	MetaData  []byte    `json:"metadata,omitempty"`
	Trace     []byte    `json:"trace,omitempty"`
}

func encodeRecord(e *reflex.Event) ([]byte, error) {
	typ := 0
	if e.Type != nil {
		typ = e.Type.ReflexType()
	}
	b, err := json.Marshal(record{
		ID: e.ID, Type: typ, ForeignID: e.ForeignID, Timestamp: e.Timestamp,
		MetaData: e.MetaData, Trace: e.Trace,
	})
	if err != nil {
		return nil, fmt.Errorf("rblob: archive event %s: %w", bounded.Quote(e.ID), err)
	}
	return append(b, '\n'), nil
}

// DecodeArchived returns the original event that an Archiver stored in the
// record e.MetaData, as streamed by Bucket.Stream: its ID, type (an
// int-backed EventType: compare with reflex.IsType), foreign ID, timestamp
// (with nanoseconds and zone offset), metadata and trace. e.ID, the stream
// cursor, is not part of it. Bucket.StreamArchived streams the original
// events directly, faster.
//
// A record is one JSON object (a line of an archive object):
//
//	{"id":"42","type":3,"foreign_id":"u-9","timestamp":"2026-05-01T10:00:00.123456Z","metadata":"<base64>","trace":"<base64>"}
//
// id, type, foreign_id and timestamp are required; metadata and trace are
// standard base64 and omitted when empty. Field names match as
// encoding/json matches them (the last of duplicates wins). Anything else
// (unknown fields, data after the record other than whitespace, missing
// fields, invalid JSON) returns an error wrapping ErrNotArchived.
//
// Records in the form an Archiver writes decode without encoding/json, in
// well under a microsecond; other valid forms (whitespace, other field
// orders, escaped strings) decode the same way, more slowly. The returned
// event shares no memory with e. DecodeArchived is safe for concurrent use.
func DecodeArchived(e *reflex.Event) (*reflex.Event, error) {
	ev, err := decodeRecord(e.MetaData, nil)
	if err != nil {
		return nil, fmt.Errorf("rblob: event %s: %w", bounded.Quote(e.ID), err)
	}
	return ev, nil
}

// decodeRecord decodes the record b, which may be followed by whitespace.
// The event's memory comes from a (nil: allocated for the event alone).
func decodeRecord(b []byte, a *arena) (*reflex.Event, error) {
	var raw rawRecord
	if n, st := parseRecord(b, &raw); st == parsed && len(bytes.TrimLeft(b[n:], " \t\r\n")) == 0 {
		if e, ok := raw.event(a); ok {
			return e, nil
		}
	}
	return decodeRecordJSON(b)
}

// decodeRecordJSON decodes the record b with encoding/json.
func decodeRecordJSON(b []byte) (*reflex.Event, error) {
	var r struct {
		ID        string     `json:"id"`
		Type      *int       `json:"type"`
		ForeignID *string    `json:"foreign_id"`
		Timestamp *time.Time `json:"timestamp"`
		MetaData  []byte     `json:"metadata"`
		Trace     []byte     `json:"trace"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotArchived, clippedError{err})
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the record", ErrNotArchived)
	}
	switch {
	case r.ID == "":
		return nil, fmt.Errorf("%w: missing id", ErrNotArchived)
	case r.Type == nil:
		return nil, fmt.Errorf("%w: missing type", ErrNotArchived)
	case r.ForeignID == nil:
		return nil, fmt.Errorf("%w: missing foreign_id", ErrNotArchived)
	case r.Timestamp == nil:
		return nil, fmt.Errorf("%w: missing timestamp", ErrNotArchived)
	}
	return &reflex.Event{
		ID:        r.ID,
		Type:      eventtype.Type(*r.Type),
		ForeignID: *r.ForeignID,
		Timestamp: *r.Timestamp,
		MetaData:  r.MetaData,
		Trace:     r.Trace,
	}, nil
}

// rawRecord is a record parsed by parseRecord: its strings are sub-slices
// of the record, metadata and trace still base64.
type rawRecord struct {
	id, foreignID []byte
	typ           int
	ts            time.Time
	meta, trace   []byte
	hasMeta       bool
	hasTrace      bool
}

// parseStatus is the outcome of parseRecord.
type parseStatus int

const (
	parsed parseStatus = iota // a record in the Archiver's form
	short                     // the input ends inside what may be one
	other                     // not in that form: use encoding/json
)

// Record field prefixes, in the order encodeRecord writes them.
const (
	fieldID        = `{"id":`
	fieldType      = `,"type":`
	fieldForeignID = `,"foreign_id":`
	fieldTimestamp = `,"timestamp":`
	fieldMetaData  = `,"metadata":`
	fieldTrace     = `,"trace":`
)

// parseRecord parses the record at the start of b if it has the form
// encodeRecord writes, returning its length. It does not allocate, except
// for a timestamp whose zone is not UTC.
func parseRecord(b []byte, r *rawRecord) (int, parseStatus) {
	p := recordParser{b: b}
	var ts []byte
	ok := p.lit(fieldID) && p.str(&r.id) &&
		p.lit(fieldType) && p.int(&r.typ) &&
		p.lit(fieldForeignID) && p.str(&r.foreignID) &&
		p.lit(fieldTimestamp) && p.str(&ts)
	if !ok {
		return 0, p.st
	}
	if len(r.id) == 0 {
		return 0, other // encoding/json reports it missing
	}
	tsQuoted := b[p.i-len(ts)-2 : p.i]
	var valid bool
	if r.ts, valid = parseUTC(ts); !valid && r.ts.UnmarshalJSON(tsQuoted) != nil {
		return 0, other
	}
	r.meta, r.trace, r.hasMeta, r.hasTrace = nil, nil, false, false
	if p.peek(fieldMetaData[0]) && p.prefix(fieldMetaData) {
		if !p.lit(fieldMetaData) || !p.base64(&r.meta) {
			return 0, p.st
		}
		r.hasMeta = true
	}
	if p.st == parsed && p.peek(fieldTrace[0]) {
		if !p.lit(fieldTrace) || !p.base64(&r.trace) {
			return 0, p.st
		}
		r.hasTrace = true
	}
	if p.st != parsed || !p.lit("}") {
		return 0, p.st
	}
	return p.i, parsed
}

// recordParser reads b from i; st says why a read failed.
type recordParser struct {
	b  []byte
	i  int
	st parseStatus
}

func (p *recordParser) fail(st parseStatus) bool {
	p.st = st
	return false
}

// peek reports whether the next byte is c; at the end of b it sets short.
func (p *recordParser) peek(c byte) bool {
	if p.i >= len(p.b) {
		p.st = short
		return false
	}
	return p.b[p.i] == c
}

// prefix reports whether b continues with s (or ends inside it, setting
// short).
func (p *recordParser) prefix(s string) bool {
	rest := p.b[p.i:]
	if len(rest) < len(s) {
		if string(rest) == s[:len(rest)] {
			p.st = short
		}
		return false
	}
	return string(rest[:len(s)]) == s
}

// lit reads s.
func (p *recordParser) lit(s string) bool {
	rest := p.b[p.i:]
	if len(rest) < len(s) {
		if string(rest) == s[:len(rest)] {
			return p.fail(short)
		}
		return p.fail(other)
	}
	if string(rest[:len(s)]) != s {
		return p.fail(other)
	}
	p.i += len(s)
	return true
}

// str reads a JSON string that needs no unescaping (no backslash, no
// control character, valid UTF-8), so its bytes are its value.
func (p *recordParser) str(v *[]byte) bool {
	if !p.lit(`"`) {
		return false
	}
	i := p.i
	for i < len(p.b) && plainASCII[p.b[i]] {
		i++
	}
	if i < len(p.b) && p.b[i] >= utf8.RuneSelf {
		// Not ASCII: find the end, then check the UTF-8.
		for i < len(p.b) && (plainASCII[p.b[i]] || p.b[i] >= utf8.RuneSelf) {
			i++
		}
		if i < len(p.b) && p.b[i] == '"' && !utf8.Valid(p.b[p.i:i]) {
			return p.fail(other) // encoding/json would replace bytes
		}
	}
	switch {
	case i == len(p.b):
		return p.fail(short)
	case p.b[i] != '"':
		return p.fail(other) // a backslash or control character
	}
	*v = p.b[p.i:i]
	p.i = i + 1
	return true
}

// plainASCII holds the bytes that stand for themselves in a JSON string.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// base64 reads a JSON string of standard base64 (not yet decoded: event
// checks it). Characters outside the alphabet make decoding fail, except
// CR and LF, which the decoder skips but JSON does not allow raw.
func (p *recordParser) base64(v *[]byte) bool {
	if !p.lit(`"`) {
		return false
	}
	n := bytes.IndexByte(p.b[p.i:], '"')
	if n < 0 {
		return p.fail(short)
	}
	s := p.b[p.i : p.i+n]
	if bytes.IndexByte(s, '\n') >= 0 || bytes.IndexByte(s, '\r') >= 0 {
		return p.fail(other)
	}
	*v = s
	p.i += n + 1
	return true
}

// int reads an integer without fraction or exponent that fits in 18
// digits (larger ones go to encoding/json, which checks the range).
func (p *recordParser) int(v *int) bool {
	i := p.i
	neg := i < len(p.b) && p.b[i] == '-'
	if neg {
		i++
	}
	start := i
	n := 0
	for ; i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9'; i++ {
		n = n*10 + int(p.b[i]-'0')
	}
	digits := i - start
	switch {
	case i == len(p.b):
		return p.fail(short)
	case digits == 0, digits > 18, digits > 1 && p.b[start] == '0':
		return p.fail(other)
	}
	if neg {
		n = -n
	}
	*v = n
	p.i = i
	return true
}

// parseUTC parses the RFC 3339 timestamps that time.Time's JSON form has
// in UTC: "2006-01-02T15:04:05Z" with 1 to 9 fraction digits or none. It
// gives the same Time as time.Time.UnmarshalJSON, which takes the rest.
func parseUTC(s []byte) (time.Time, bool) {
	const base = len("2006-01-02T15:04:05")
	if len(s) < base+1 || s[len(s)-1] != 'Z' ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year := digits2(s[0:2])*100 + digits2(s[2:4])
	month, day := digits2(s[5:7]), digits2(s[8:10])
	hour, minute, sec := digits2(s[11:13]), digits2(s[14:16]), digits2(s[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[base : len(s)-1]; len(frac) > 0 {
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' {
			return time.Time{}, false
		}
		for _, c := range frac[1:] {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			nsec = nsec*10 + int(c-'0')
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// digits2 returns the value of two decimal digits, or a negative number.
func digits2(b []byte) int {
	hi, lo := b[0]-'0', b[1]-'0' // bytes: a non-digit wraps above 9
	if hi > 9 || lo > 9 {
		return -1000
	}
	return int(hi)*10 + int(lo)
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// event returns the parsed record as an event whose memory comes from a
// (nil: allocated for this event alone); ok is false if metadata or trace
// is not valid base64.
func (r *rawRecord) event(a *arena) (*reflex.Event, bool) {
	if a == nil {
		a = &arena{}
	}
	enc := base64.StdEncoding
	a.reserveBytes(enc.DecodedLen(len(r.meta)) + enc.DecodedLen(len(r.trace)))
	var meta, trace []byte
	var ok bool
	if r.hasMeta {
		if meta, ok = a.decodeBase64(r.meta); !ok {
			return nil, false
		}
	}
	if r.hasTrace {
		if trace, ok = a.decodeBase64(r.trace); !ok {
			return nil, false
		}
	}
	e := a.event()
	e.ID, e.ForeignID = a.strings(r.id, r.foreignID)
	e.Type = a.eventType(r.typ)
	e.Timestamp = r.ts
	e.MetaData, e.Trace = meta, trace
	return e, true
}

// Arena block sizes: the memory of up to this many events, or bytes, is
// one allocation, kept alive by any event (or field of one) still in use.
const (
	arenaEvents = 128
	arenaBytes  = 16 << 10
	arenaString = 4 << 10
	// arenaTypes bounds the boxed event types an arena caches: types 0 to
	// 255 box without allocating; others are cached up to this many.
	arenaTypes = 256
)

// arena hands out the memory of decoded events in blocks, so that
// decoding allocates once per block rather than once per field. The zero
// value allocates each request alone (for one event). Blocks are never
// reused: events keep them alive as long as they need them.
type arena struct {
	block  bool // allocate in blocks
	events []reflex.Event
	bytes  []byte
	str    strings.Builder
	types  map[int]reflex.EventType
}

func (a *arena) event() *reflex.Event {
	if !a.block {
		return new(reflex.Event)
	}
	if len(a.events) == 0 {
		a.events = make([]reflex.Event, arenaEvents)
	}
	e := &a.events[0]
	a.events = a.events[1:]
	return e
}

// strings returns copies of x and y.
func (a *arena) strings(x, y []byte) (string, string) {
	n := len(x) + len(y)
	if n == 0 {
		return "", ""
	}
	if a.str.Cap()-a.str.Len() < n {
		a.str = strings.Builder{}
		if a.block {
			a.str.Grow(max(n, arenaString))
		} else {
			a.str.Grow(n)
		}
	}
	start := a.str.Len()
	a.str.Write(x)
	a.str.Write(y)
	s := a.str.String() // later writes never change these bytes
	return s[start : start+len(x)], s[start+len(x):]
}

// reserveBytes makes room for n more bytes in the current block.
func (a *arena) reserveBytes(n int) {
	if cap(a.bytes)-len(a.bytes) >= n {
		return
	}
	if a.block {
		n = max(n, arenaBytes)
	}
	if n > 0 {
		a.bytes = make([]byte, 0, n)
	}
}

// decodeBase64 returns the bytes of standard base64 s, or false.
func (a *arena) decodeBase64(s []byte) ([]byte, bool) {
	if len(s) == 0 {
		return []byte{}, true // as encoding/json: empty, not nil
	}
	n := base64.StdEncoding.DecodedLen(len(s))
	a.reserveBytes(n)
	l := len(a.bytes)
	m, err := base64.StdEncoding.Decode(a.bytes[l:l+n], s)
	if err != nil {
		return nil, false
	}
	a.bytes = a.bytes[:l+m]
	return a.bytes[l : l+m : l+m], true
}

func (a *arena) eventType(n int) reflex.EventType {
	if n >= 0 && n < 256 {
		return eventtype.Type(n) // boxing a small integer does not allocate
	}
	if t, ok := a.types[n]; ok {
		return t
	}
	t := reflex.EventType(eventtype.Type(n))
	if a.block && len(a.types) < arenaTypes {
		if a.types == nil {
			a.types = make(map[int]reflex.EventType)
		}
		a.types[n] = t
	}
	return t
}

// parseDecimal parses a non-negative decimal int64 without sign or leading
// zeros: an archived event ID, a StreamArchived cursor, a cursor offset.
func parseDecimal[S string | []byte](s S) (int64, bool) {
	if len(s) == 0 || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// clippedError cuts the message of an error that may quote unbounded
// input (encoding/json quotes unknown field names whole).
type clippedError struct{ err error }

const maxErrorText = 200

func (e clippedError) Error() string {
	s := e.err.Error()
	if len(s) > maxErrorText {
		return s[:maxErrorText] + "..."
	}
	return s
}

func (e clippedError) Unwrap() error { return e.err }
