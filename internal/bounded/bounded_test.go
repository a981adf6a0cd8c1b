package bounded

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"", `""`},
		{"abc", `"abc"`},
		{"a\x00b\xff", `"a\x00b\xff"`},
		{strings.Repeat("x", 64), `"` + strings.Repeat("x", 64) + `"`},
		{strings.Repeat("x", 65), `"` + strings.Repeat("x", 64) + `"... (65 bytes)`},
		{strings.Repeat("x", 1<<20), `"` + strings.Repeat("x", 64) + `"... (1048576 bytes)`},
		// A 3-byte character across byte 64 is not split.
		{strings.Repeat("x", 63) + "€" + "y", `"` + strings.Repeat("x", 63) + `"... (67 bytes)`},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%.20q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("short", 10); got != "short" {
		t.Errorf("Truncate(short, 10) = %q", got)
	}
	long := strings.Repeat("é", 1000) // 2000 bytes
	got := Truncate(long, 100)
	if len(got) > 100 || !strings.HasSuffix(got, "... (2000 bytes)") || !utf8.ValidString(got) {
		t.Errorf("Truncate(2000 bytes, 100) = %q (%d bytes), want at most 100 valid bytes naming the length", got, len(got))
	}
	if got := Truncate(long, 5); !strings.HasSuffix(got, "(2000 bytes)") {
		t.Errorf("Truncate(2000 bytes, 5) = %q, want the length at least", got)
	}
}

func FuzzQuote(f *testing.F) {
	f.Add("abc")
	f.Add(strings.Repeat("\xff€", 40))
	f.Fuzz(func(t *testing.T, s string) {
		if q := Quote(s); len(q) > 4*QuoteBytes+2+len("... (0000000000000000000 bytes)") {
			t.Fatalf("Quote of %d bytes is %d bytes long", len(s), len(q))
		}
		if got := Truncate(s, 64); len(got) > 64 && len(s) > 64 {
			t.Fatalf("Truncate(%d bytes, 64) is %d bytes long", len(s), len(got))
		}
	})
}
