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

// DecoderFunc returns a Decoder reading one object from r. See WithDecoder.
type DecoderFunc func(r io.Reader) (Decoder, error)

// jsonBufSize is the initial read buffer of a JSONDecoder: large reads keep
// object storage round trips few; it grows for longer values.
const jsonBufSize = 64 << 10

// JSONDecoder is the default Decoder: it yields the raw bytes of each
// top-level JSON value of concatenated JSON (values separated by optional
// whitespace, so JSON lines work as well), exactly as successive
// encoding/json Decoder.Decode calls into json.RawMessage would. A truncated
// value or invalid JSON is an error that names the byte offset. It is not
// safe for concurrent use.
//
// Objects, arrays, strings and plain scalars take a fast path: the value's
// end is found by counting brackets, then the value is validated with
// json.Valid. From the first value that does not (invalid or truncated
// data, or scalars written without separators) it hands the rest of the
// input to an encoding/json Decoder, which reports the error.
type JSONDecoder struct {
	r      io.Reader
	buf    []byte // unread data is buf[pos:]
	pos    int
	off    int64 // input offset of buf[0]
	rerr   error // error of the last read, io.EOF at the end
	slow   *json.Decoder
	slowAt int64 // input offset where slow starts
}

var _ Decoder = (*JSONDecoder)(nil)

// NewJSONDecoder returns a JSONDecoder reading from r.
func NewJSONDecoder(r io.Reader) *JSONDecoder {
	return &JSONDecoder{r: r}
}

// Decode returns the next JSON value's bytes (without surrounding
// whitespace), or io.EOF when only whitespace remains. A value cut short
// returns an error wrapping io.ErrUnexpectedEOF; invalid JSON returns one
// wrapping the *json.SyntaxError. Read errors are returned wrapped.
func (d *JSONDecoder) Decode() ([]byte, error) {
	if d.slow != nil {
		return d.decodeSlow()
	}
	// Skip whitespace.
	for {
		for d.pos < len(d.buf) && isSpace(d.buf[d.pos]) {
			d.pos++
		}
		if d.pos < len(d.buf) {
			break
		}
		if d.rerr != nil {
			if errors.Is(d.rerr, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("read after byte %d: %w", d.off+int64(d.pos), d.rerr)
		}
		d.fill()
	}
	end, ok := d.scan()
	if !ok || !json.Valid(d.buf[d.pos:end]) {
		return d.fallback()
	}
	rec := bytes.Clone(d.buf[d.pos:end])
	d.pos = end
	return rec, nil
}

// scan returns the end of the value starting at pos, reading more input as
// needed; ok is false if the input ends (or fails) first.
func (d *JSONDecoder) scan() (end int, ok bool) {
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

// fill reads more input after compacting the buffer.
func (d *JSONDecoder) fill() {
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
		d.buf = append(d.buf, make([]byte, cap(d.buf))...)[:len(d.buf)]
	}
	n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
	d.buf = d.buf[:len(d.buf)+n]
	if err != nil {
		d.rerr = err
	}
}

// fallback decodes the rest of the input with encoding/json.
func (d *JSONDecoder) fallback() ([]byte, error) {
	rest := io.Reader(bytes.NewReader(d.buf[d.pos:]))
	if d.rerr == nil {
		rest = io.MultiReader(rest, d.r)
	} else if !errors.Is(d.rerr, io.EOF) {
		rest = io.MultiReader(rest, errReader{d.rerr})
	}
	d.slow = json.NewDecoder(rest)
	d.slowAt = d.off + int64(d.pos)
	d.buf, d.pos = nil, 0
	return d.decodeSlow()
}

func (d *JSONDecoder) decodeSlow() ([]byte, error) {
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

func jsonDecoderFunc(r io.Reader) (Decoder, error) { return NewJSONDecoder(r), nil }
