package streamopen

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

func TestParseInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  error
	}{
		{"0", 0, nil},
		{"007", 7, nil},
		{"9223372036854775807", 1<<63 - 1, nil},
		{"9223372036854775808", 0, errRange},
		{"99999999999999999999", 0, errRange},
		{"-1", 0, errNegative},
		{"", 0, errNotInteger},
		{"-", 0, errNotInteger},
		{"+1", 0, errNotInteger},
		{" 1", 0, errNotInteger},
		{"1.5", 0, errNotInteger},
		{"abc", 0, errNotInteger},
		{"1\x00", 0, errNotInteger},
		{"\xff", 0, errNotInteger},
	} {
		got, err := ParseInt(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("ParseInt(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzParseInt(f *testing.F) {
	f.Add("123")
	f.Add("-5")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseInt(s)
		if err != nil {
			if len(err.Error()) > 64 {
				t.Fatalf("ParseInt(%q) error is %d bytes", s, len(err.Error()))
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseInt(%q) = %d", s, n)
		}
	})
}

func TestOpen(t *testing.T) {
	o, err := Open(t.Context(), "pkg", "12", []reflex.StreamOption{reflex.WithStreamToHead()}, ParseInt)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Life.Close()
	if o.Cursor != 12 || !o.HasCursor || !o.Options.StreamToHead {
		t.Errorf("Open = %+v", o)
	}

	// From the head, the cursor is not parsed.
	o, err = Open(t.Context(), "pkg", "not a cursor", []reflex.StreamOption{reflex.WithStreamFromHead()}, ParseInt)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Life.Close()
	if o.HasCursor || o.Cursor != 0 {
		t.Errorf("Open from head = %+v, want no cursor", o)
	}

	o, err = Open(t.Context(), "pkg", "", nil, ParseInt)
	if err != nil || o.HasCursor {
		t.Fatalf("Open(\"\") = %+v, %v", o, err)
	}
	defer o.Life.Close()
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after string
		opts  []reflex.StreamOption
		want  string
	}{
		{"negative lag", "", []reflex.StreamOption{reflex.WithStreamLag(-time.Second)}, "pkg: negative stream lag -1s"},
		{"bad cursor", "abc", nil, `pkg: invalid cursor "abc": not a non-negative base-10 integer`},
		{"negative cursor", "-1", nil, `pkg: invalid cursor "-1": negative`},
		{"huge cursor", strings.Repeat("x", 1<<20), nil, `pkg: invalid cursor "` + strings.Repeat("x", 64) + `"... (1048576 bytes): not a non-negative base-10 integer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(t.Context(), "pkg", tc.after, tc.opts, ParseInt)
			if !errors.Is(err, reflex.ErrInvalidCursor) {
				t.Fatalf("Open = %v, want an error wrapping reflex.ErrInvalidCursor", err)
			}
			if err.Error() != tc.want {
				t.Errorf("Open error = %q, want %q", err, tc.want)
			}
		})
	}
	// The parse function's error is wrapped too, and its message bounded.
	errLong := errors.New(strings.Repeat("y", 10000))
	_, err := Open(t.Context(), "pkg", "c", nil, func(string) (int, error) { return 0, errLong })
	if !errors.Is(err, errLong) || !errors.Is(err, reflex.ErrInvalidCursor) || len(err.Error()) > maxMessage {
		t.Errorf("Open with a long parse error = %d bytes, errors.Is = %v; want both sentinels and at most %d bytes",
			len(err.Error()), errors.Is(err, errLong), maxMessage)
	}
}
