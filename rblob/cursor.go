package rblob

import (
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"math"
	"strconv"
	"strings"
)

// Cursor is the position of an event in a bucket, and the ID of the events
// a stream emits. Its string form is key|NN|offset, where offset is the
// record's 0-based index in the object and NN the number of digits of
// offset, zero-padded to two ("a|01|9", "a|02|10"), so that the cursors of
// an object sort as strings in record order; the last record of an object
// has key|eof instead, which sorts after them. Objects are ordered by key,
// so cursors of objects whose keys are not prefixes of one another sort in
// stream order too.
type Cursor struct {
	// Key is the object's key.
	Key string
	// Offset is the record's 0-based index; it is 0 when EOF is set.
	Offset int
	// EOF marks the last record of the object: the stream resumes with the
	// next object.
	EOF bool
}

// String formats c as key|NN|offset or key|eof.
func (c Cursor) String() string {
	if c.EOF {
		return c.Key + "|eof"
	}
	var num [24]byte
	o := strconv.AppendInt(num[:0], int64(c.Offset), 10)
	var sb strings.Builder // one allocation
	sb.Grow(len(c.Key) + 5 + len(o))
	sb.WriteString(c.Key)
	sb.WriteByte('|')
	if len(o) < 10 {
		sb.WriteByte('0')
	}
	sb.WriteString(strconv.Itoa(len(o)))
	sb.WriteByte('|')
	sb.Write(o)
	return sb.String()
}

// ParseCursor parses key|NN|offset, key|eof, or the legacy key|offset. The
// key must be non-empty and contain no "|"; offset is a decimal without
// sign or leading zeros and NN its digit count. Any other input returns an
// error wrapping ErrInvalidCursor (and so reflex.ErrInvalidCursor) that
// quotes at most 64 bytes of s.
//
// key|eof need not name an existing object: a stream resumes after it with
// the first key greater than key, so "2019/06|eof" seeks to the first
// object after the prefix 2019/06.
func ParseCursor(s string) (Cursor, error) {
	parts := strings.Split(s, "|")
	bad := func(why string) (Cursor, error) {
		return Cursor{}, fmt.Errorf("%w %s: %s", ErrInvalidCursor, bounded.Quote(s), why)
	}
	if len(parts) < 2 || len(parts) > 3 {
		return bad("want key|NN|offset or key|eof")
	}
	c := Cursor{Key: parts[0]}
	if c.Key == "" {
		return bad("empty key")
	}
	last := parts[len(parts)-1]
	if len(parts) == 2 && last == "eof" {
		c.EOF = true
		return c, nil
	}
	off, ok := parseDecimal(last)
	if !ok || off > math.MaxInt {
		return bad("offset must be a decimal integer without sign or leading zeros")
	}
	c.Offset = int(off)
	if len(parts) == 3 {
		nn := parts[1]
		if len(nn) != 2 || nn[0] < '0' || nn[0] > '9' || nn[1] < '0' || nn[1] > '9' {
			return bad("width must be two digits")
		}
		if int(nn[0]-'0')*10+int(nn[1]-'0') != len(last) {
			return bad("width does not match the offset's length")
		}
	}
	return c, nil
}

// validKey reports whether key can be part of a cursor.
func validKey(key string) bool {
	return key != "" && !strings.Contains(key, "|")
}
