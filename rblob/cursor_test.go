package rblob_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rblob"
)

func TestParseCursor(t *testing.T) {
	valid := []struct {
		in   string
		want rblob.Cursor
		out  string // String() of the result
	}{
		{"path/to/file|01|9", rblob.Cursor{Key: "path/to/file", Offset: 9}, "path/to/file|01|9"},
		{"path/to/file|02|10", rblob.Cursor{Key: "path/to/file", Offset: 10}, "path/to/file|02|10"},
		{"path/to/file|03|999", rblob.Cursor{Key: "path/to/file", Offset: 999}, "path/to/file|03|999"},
		{"k|01|0", rblob.Cursor{Key: "k"}, "k|01|0"},
		{"k|eof", rblob.Cursor{Key: "k", EOF: true}, "k|eof"},
		{"2019|eof", rblob.Cursor{Key: "2019", EOF: true}, "2019|eof"},
		{"k|0", rblob.Cursor{Key: "k"}, "k|01|0"},                  // legacy
		{"k|123", rblob.Cursor{Key: "k", Offset: 123}, "k|03|123"}, // legacy
		{"eof|eof", rblob.Cursor{Key: "eof", EOF: true}, "eof|eof"},
	}
	for _, tc := range valid {
		got, err := rblob.ParseCursor(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if s := got.String(); s != tc.out {
			t.Errorf("ParseCursor(%q).String() = %q, want %q", tc.in, s, tc.out)
		}
	}
	for _, in := range []string{
		"", "k", "|eof", "|01|0", "k|", "k||0", "k|01|", "k|eof|1", "k|01|eof", "k|1|1", "k|001|1",
		"k|02|1", "k|01|10", "k|01|-", "k|-1", "k|+1", "k|01", "k|00|", "k|01|01", "k|007", "k|1e3",
		"k|1 ", "a|b|c|d", "k|EOF", "k|99999999999999999999", "k|20|99999999999999999999", "k|0x|1",
	} {
		if c, err := rblob.ParseCursor(in); !errors.Is(err, rblob.ErrInvalidCursor) {
			t.Errorf("ParseCursor(%q) = %+v, %v; want ErrInvalidCursor", in, c, err)
		} else if !strings.Contains(err.Error(), in) {
			t.Errorf("ParseCursor(%q) error %q does not quote the cursor", in, err)
		}
	}
}

// TestCursorOrder: an object's cursors sort as strings in record order,
// and its eof cursor after them all.
func TestCursorOrder(t *testing.T) {
	var ids []string
	for _, off := range []int{0, 1, 9, 10, 11, 99, 100, 999, 1000, 123456} {
		ids = append(ids, rblob.Cursor{Key: "k", Offset: off}.String())
	}
	ids = append(ids, rblob.Cursor{Key: "k", EOF: true}.String())
	if !slices.IsSorted(ids) {
		t.Errorf("cursors %q do not sort in record order", ids)
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"k|01|9", "k|02|10", "k|eof", "k|7", "a|b|c", "|", "k|00|0", "x|99|1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := rblob.ParseCursor(s)
		if err != nil {
			if !errors.Is(err, rblob.ErrInvalidCursor) {
				t.Fatalf("ParseCursor(%q) error %v does not wrap ErrInvalidCursor", s, err)
			}
			return
		}
		if c.Key == "" || strings.Contains(c.Key, "|") || c.Offset < 0 || (c.EOF && c.Offset != 0) {
			t.Fatalf("ParseCursor(%q) = %+v", s, c)
		}
		again, err := rblob.ParseCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("ParseCursor(%q) = %+v; its String %q parses to %+v, %v", s, c, c.String(), again, err)
		}
		if strings.Count(s, "|") == 2 || c.EOF {
			if c.String() != s {
				t.Fatalf("ParseCursor(%q).String() = %q", s, c.String())
			}
		}
	})
}

func decodeAll(d rblob.Decoder) ([][]byte, error) {
	var out [][]byte
	for range 1 << 16 {
		rec, err := d.Decode()
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
	panic("decoder never ended")
}

func newJSONDecoder(t *testing.T, r io.Reader) rblob.Decoder {
	t.Helper()
	d, err := rblob.JSONDecoder(r)
	if err != nil {
		t.Fatalf("JSONDecoder: %v", err)
	}
	return d
}

func TestJSONDecoder(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "", want: nil},
		{in: " \n\t", want: nil},
		{in: `1 2 3`, want: []string{"1", "2", "3"}},
		{in: "{\"a\":[1,2]}\n\"s\"\nnull\n", want: []string{`{"a":[1,2]}`, `"s"`, "null"}},
		{in: `{}{}[]`, want: []string{"{}", "{}", "[]"}},
		{in: "1\n{\"a\":", want: []string{"1"}, err: "truncated JSON value starting near byte 2"},
		{in: "1\n2\n}", want: []string{"1", "2"}, err: "invalid JSON at byte"},
		{in: `"unterminated`, err: "truncated"},
		{in: "1 x", want: []string{"1"}, err: "invalid JSON"},
	}
	for _, tc := range tests {
		got, err := decodeAll(newJSONDecoder(t, strings.NewReader(tc.in)))
		var gs []string
		for _, r := range got {
			gs = append(gs, string(r))
		}
		if !slices.Equal(gs, tc.want) {
			t.Errorf("decode %q: records %q, want %q", tc.in, gs, tc.want)
		}
		switch {
		case tc.err == "" && !errors.Is(err, io.EOF):
			t.Errorf("decode %q: end %v, want io.EOF", tc.in, err)
		case tc.err != "" && (err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("decode %q: end %v, want an error containing %q", tc.in, err, tc.err)
		}
	}
}

// referenceDecode splits in as successive json.Decoder.Decode calls into
// json.RawMessage do, the behaviour JSONDecoder promises.
func referenceDecode(in []byte) ([][]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(in))
	var out [][]byte
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return out, err
		}
		out = append(out, raw)
	}
}

func FuzzJSONDecoder(f *testing.F) {
	for _, s := range []string{
		"1 2", "{\"a\":1}\n{\"b\":[", `"x"null[]{}`, "\xff", "  ", "1e999", `{"a":"\u00"}`,
		"nulltrue", "01", "1x", "[}", "[[}", `"a\"b"` + "\n", "{\"a\":\"}\"}\n[1,[2]]", "-", "1.5.3", "\"\x01\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := referenceDecode(in)
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(in),
			"bytewise": iotest.OneByteReader(bytes.NewReader(in)),
			"data+eof": iotest.DataErrReader(bytes.NewReader(in)),
		} {
			got, err := decodeAll(newJSONDecoder(t, r))
			if len(got) != len(want) {
				t.Fatalf("%s: %q: %d records, encoding/json %d", name, in, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%s: %q: record %d = %q, encoding/json %q", name, in, i, got[i], want[i])
				}
			}
			if errors.Is(err, io.EOF) != errors.Is(wantErr, io.EOF) ||
				errors.Is(err, io.ErrUnexpectedEOF) != errors.Is(wantErr, io.ErrUnexpectedEOF) {
				t.Fatalf("%s: %q: ends with %v, encoding/json with %v", name, in, err, wantErr)
			}
			if _, ok := errors.AsType[*json.SyntaxError](wantErr); ok && !strings.Contains(fmt.Sprint(err), "invalid JSON at byte") {
				t.Fatalf("%s: %q: ends with %v, encoding/json with %v", name, in, err, wantErr)
			}
		}
	})
}

// FuzzStreamRecords streams random object contents with Bucket.Stream
// (whose default JSONDecoder takes the bytes read ahead without copying)
// and checks the records and the error against encoding/json.
func FuzzStreamRecords(f *testing.F) {
	f.Add([]byte("1 2 {\"a\":[1,2]}\n\"s\""), uint16(0))
	f.Add([]byte("{\"a\":1}\n{\"b\":["), uint16(3))
	f.Add([]byte(`"x"null[]{}`), uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, readAhead uint16) {
		rblob.SetReadAhead(t, int(readAhead))
		raw := memBucket(t)
		write(t, raw, "obj", string(in))
		got, err := drainErr(t, rblob.NewBucket("fuzz-records", raw, rblob.WithEmptyObjects()).Stream, "")
		want, wantErr := referenceDecode(in)
		if !errors.Is(wantErr, io.EOF) && len(want) > 0 {
			want = want[:len(want)-1] // the stream decodes one record ahead
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d records, encoding/json %d (%v, %v)", in, len(got), len(want), err, wantErr)
		}
		for i := range got {
			if !bytes.Equal(got[i].MetaData, want[i]) {
				t.Fatalf("%q: record %d = %q, encoding/json %q", in, i, got[i].MetaData, want[i])
			}
		}
		if (err == nil) != errors.Is(wantErr, io.EOF) {
			t.Fatalf("%q: stream ends with %v, encoding/json with %v", in, err, wantErr)
		}
	})
}

// FuzzDecodeArchived checks DecodeArchived against encoding/json (the
// same accept or reject, the same event: its fast path for the Archiver's
// form must agree with encoding/json on every input), and that what it
// accepts survives a round trip through the Archiver's encoding.
func FuzzDecodeArchived(f *testing.F) {
	f.Add([]byte(`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z","metadata":"AQI=","trace":"eA=="}`))
	f.Add([]byte(`{"id":"1","type":-2,"foreign_id":"","timestamp":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"","type":2}`))
	f.Add([]byte(`{"id":"1","type":2,"foreign_id":"f","timestamp":"2024-02-29T23:59:59.123456789Z","metadata":""}`))
	f.Add([]byte(`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00.5+01:00","trace":"eA=="}` + "\n"))
	f.Add([]byte(`{"id":"1","type":2,"foreign_id":"\u00e9\n","timestamp":"2026-05-01T10:00:00Z"}`))
	for i := range 8 {
		e := testEvent(i)
		e.ID = strconv.Itoa(i + 1)
		f.Add([]byte(rblob.EncodeRecord(&e)))
	}
	f.Fuzz(func(t *testing.T, md []byte) {
		checkSameAsJSON(t, md)
		e, err := rblob.DecodeArchived(&reflex.Event{ID: "c", MetaData: md})
		if err != nil {
			return
		}
		line := rblob.EncodeRecord(e)
		again, err := rblob.DecodeArchived(&reflex.Event{MetaData: []byte(line)})
		if err != nil {
			t.Fatalf("re-encoded %q as %q: %v", md, line, err)
		}
		if again.ID != e.ID || again.ForeignID != e.ForeignID || again.Type.ReflexType() != e.Type.ReflexType() ||
			!again.Timestamp.Equal(e.Timestamp) || !bytes.Equal(again.MetaData, e.MetaData) || !bytes.Equal(again.Trace, e.Trace) {
			t.Fatalf("round trip of %q: %+v, then %+v", md, e, again)
		}
	})
}

func TestArchivedTimestampPrecision(t *testing.T) {
	ts := time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	e, err := rblob.DecodeArchived(&reflex.Event{MetaData: []byte(rblob.EncodeRecord(&reflex.Event{ID: "1", Timestamp: ts}))})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Timestamp.Equal(ts) || e.Timestamp.Format(time.RFC3339Nano) != ts.Format(time.RFC3339Nano) {
		t.Errorf("timestamp %v, want %v", e.Timestamp, ts)
	}
	if e.Type == nil || e.Type.ReflexType() != 0 {
		t.Errorf("nil type archived as %v, want 0", e.Type)
	}
}
