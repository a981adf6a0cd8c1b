package rblob

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Decoder splits an object into records.
type Decoder interface {
	// Decode returns the next record, or io.EOF after the last one. Any other
	// error means the object is malformed (or could not be read) and ends
	// the stream. The returned slice is owned by the caller.
	Decode() ([]byte, error)
}

// DecoderFunc is the type of the functions WithDecoder takes, such as
// JSONDecoder: it returns a Decoder reading one object from r.
type DecoderFunc = func(r io.Reader) (Decoder, error)

// JSONDecoder is the default Decoder constructor (see WithDecoder): its
// Decoder yields the raw bytes of each top-level JSON value of r, read as
// concatenated JSON (values separated by optional whitespace, so JSON
// lines work as well), exactly as successive encoding/json Decoder.Decode
// calls into json.RawMessage would. It never fails itself; Decode returns
// io.EOF when only whitespace remains, an error wrapping
// io.ErrUnexpectedEOF for a value cut short, one wrapping the
// *json.SyntaxError for invalid JSON (both naming the byte offset), and
// read errors wrapped. A Decoder is not safe for concurrent use.
//
// It is a variable, as in luno/reflex, so that it can be passed to
// WithDecoder as a value; reassigning it changes the default of Buckets
// created later.
var JSONDecoder = func(r io.Reader) (Decoder, error) {
	return newJSONDecoder(r), nil
}

func newJSONDecoder(r io.Reader) *jsonDecoder {
	if s, ok := r.(*objectSource); ok {
		// A stream's object: take the bytes read ahead without copying.
		d := &jsonDecoder{buf: s.buf, r: s.rest, rerr: s.rerr}
		*s = objectSource{rerr: io.EOF}
		return d
	}
	return &jsonDecoder{r: r}
}

// jsonBufSize is the initial read buffer of a jsonDecoder: large reads keep
// object storage round trips few; it grows for longer values.
const jsonBufSize = 64 << 10

// jsonDecoder is the Decoder of JSONDecoder.
//
// Objects, arrays, strings and plain scalars take a fast path: the value's
// end is found by counting brackets, then the value is validated with
// json.Valid. From the first value that does not (invalid or truncated
// data, or scalars written without separators) it hands the rest of the
// input to an encoding/json Decoder, which reports the error.
type jsonDecoder struct {
	r      io.Reader // nil once all input is in buf
	buf    []byte    // unread data is buf[pos:]
	pos    int
	off    int64 // input offset of buf[0]
	rerr   error // error of the last read, io.EOF at the end
	slow   *json.Decoder
	slowAt int64 // input offset where slow starts
}

var _ Decoder = (*jsonDecoder)(nil)

// Decode returns a copy of the next JSON value's bytes; see JSONDecoder.
func (d *jsonDecoder) Decode() ([]byte, error) {
	if d.slow != nil {
		return d.decodeSlow()
	}
	rec, err := d.next()
	if err != nil || d.slow != nil {
		return rec, err // the slow decoder's value is already a copy
	}
	return bytes.Clone(rec), nil
}

// next returns the next JSON value's bytes, valid until the next call.
func (d *jsonDecoder) next() ([]byte, error) {
	if d.slow != nil {
		return d.decodeSlow()
	}
	if err := d.skipSpace(); err != nil {
		return nil, err
	}
	end, ok := d.scan()
	if !ok || !json.Valid(d.buf[d.pos:end]) {
		return d.fallback()
	}
	rec := d.buf[d.pos:end]
	d.pos = end
	return rec, nil
}

// skipSpace skips whitespace, reading as needed, so that buf[pos] is the
// first byte of the next value. It returns io.EOF at the end of the input,
// or the read error, wrapped, that ended it.
func (d *jsonDecoder) skipSpace() error {
	for {
		for d.pos < len(d.buf) && isSpace(d.buf[d.pos]) {
			d.pos++
		}
		if d.pos < len(d.buf) {
			return nil
		}
		if d.rerr != nil {
			if errors.Is(d.rerr, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("read after byte %d: %w", d.off+int64(d.pos), d.rerr)
		}
		d.fill()
	}
}

// scan returns the end of the value starting at pos, reading more input as
// needed; ok is false if the input ends (or fails) first.
func (d *jsonDecoder) scan() (end int, ok bool) {
	var depth int
	var inString, escaped bool
	scalar := true
	switch d.buf[d.pos] {
	case '{', '[', '"':
		scalar = false
	}
	i := d.pos
	for {
		for ; i < len(d.buf); i++ {
			c := d.buf[i]
			switch {
			case scalar:
				if !isScalarByte(c) {
					return i, true
				}
			case inString:
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
					if depth == 0 {
						return i + 1, true
					}
				}
			case c == '"':
				inString = true
			case c == '{' || c == '[':
				depth++
			case c == '}' || c == ']':
				depth--
				if depth <= 0 {
					return i + 1, true
				}
			}
		}
		if d.rerr != nil {
			if scalar && errors.Is(d.rerr, io.EOF) {
				return i, true
			}
			return 0, false
		}
		i -= d.pos
		d.fill()
		i += d.pos
	}
}

// fill reads more input after moving the unread data to the front of the
// buffer, growing the buffer if it is full.
func (d *jsonDecoder) fill() {
	if d.r == nil {
		if d.rerr == nil {
			d.rerr = io.EOF
		}
		return
	}
	if d.buf == nil {
		d.buf = make([]byte, 0, jsonBufSize)
	}
	if d.pos > 0 {
		n := copy(d.buf, d.buf[d.pos:])
		d.off += int64(d.pos)
		d.buf = d.buf[:n]
		d.pos = 0
	}
	if len(d.buf) == cap(d.buf) {
		d.buf = append(d.buf, make([]byte, max(cap(d.buf), jsonBufSize))...)[:len(d.buf)]
	}
	n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
	d.buf = d.buf[:len(d.buf)+n]
	if err != nil {
		d.rerr = err
	}
}

// fallback decodes the rest of the input with encoding/json.
func (d *jsonDecoder) fallback() ([]byte, error) {
	rest := io.Reader(bytes.NewReader(d.buf[d.pos:]))
	switch {
	case d.rerr == nil && d.r != nil:
		rest = io.MultiReader(rest, d.r)
	case d.rerr != nil && !errors.Is(d.rerr, io.EOF):
		rest = io.MultiReader(rest, errReader{d.rerr})
	}
	d.slow = json.NewDecoder(rest)
	d.slowAt = d.off + int64(d.pos)
	d.buf, d.pos = nil, 0
	return d.decodeSlow()
}

func (d *jsonDecoder) decodeSlow() ([]byte, error) {
	var raw json.RawMessage
	start := d.slowAt + d.slow.InputOffset()
	if err := d.slow.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("truncated JSON value starting near byte %d: %w", start, err)
		}
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, fmt.Errorf("invalid JSON at byte %d: %w", d.slowAt+se.Offset, err)
		}
		return nil, fmt.Errorf("read after byte %d: %w", start, err)
	}
	return raw, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isScalarByte reports whether c may continue a number or literal.
func isScalarByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}
