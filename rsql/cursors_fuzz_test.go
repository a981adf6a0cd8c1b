package rsql

import (
	"errors"
	"strconv"
	"testing"
)

// FuzzParseCursor: parseCursor accepts exactly the strings that
// strconv.FormatInt returns for non-negative int64 values, and its errors
// wrap ErrInvalidCursor and quote the input.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0", "1", "42", "9223372036854775807", "9223372036854775808", "-1", "-0", "+1",
		"007", "", "abc", " 1", "1 ", "1_000", "0x10", "１"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseCursor(s)
		p, perr := strconv.ParseInt(s, 10, 64)
		canonical := perr == nil && p >= 0 && strconv.FormatInt(p, 10) == s
		if canonical != (err == nil) {
			t.Fatalf("parseCursor(%q) = %d, %v; canonical = %v", s, v, err, canonical)
		}
		if err == nil {
			if v != p {
				t.Fatalf("parseCursor(%q) = %d, want %d", s, v, p)
			}
			return
		}
		if !errors.Is(err, ErrInvalidCursor) {
			t.Fatalf("parseCursor(%q) error %v does not wrap ErrInvalidCursor", s, err)
		}
	})
}
