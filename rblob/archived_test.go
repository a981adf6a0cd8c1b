package rblob_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// archiveAppender returns a reflextest.Appender that writes each call's
// events as one archive object, as an Archiver does: IDs 1, 2, ... and
// timestamps of now (so that lag holds them back).
func archiveAppender(b *blob.Bucket) reflextest.Appender {
	var (
		mu   sync.Mutex
		next = 1
	)
	return func(t *testing.T, evs ...reflex.Event) {
		t.Helper()
		if len(evs) == 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		var sb strings.Builder
		first := next
		for _, e := range evs {
			e.ID = strconv.Itoa(next)
			e.Timestamp = time.Now()
			next++
			sb.WriteString(rblob.EncodeRecord(&e))
		}
		write(t, b, key(first), sb.String())
	}
}

var invalidArchiveCursors = []string{
	"x", "-1", "01", "1.5", "+1", " 1", "1 ", "9223372036854775808", "1|eof", "00000000000000000001.jsonl|eof",
}

func TestStreamArchivedConformance(t *testing.T) {
	buckets := map[string]func(t *testing.T) (*rblob.Bucket, *blob.Bucket){
		"fileblob": func(t *testing.T) (*rblob.Bucket, *blob.Bucket) {
			raw, dir := fileBucket(t)
			b, err := rblob.OpenBucket(t.Context(), "conformance", "file://"+filepath.ToSlash(dir), rblob.WithBackoff(testBackoff))
			if err != nil {
				t.Fatalf("OpenBucket: %v", err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b, raw
		},
		"memblob": func(t *testing.T) (*rblob.Bucket, *blob.Bucket) {
			raw := memBucket(t)
			return rblob.NewBucket("conformance", raw, rblob.WithBackoff(testBackoff)), raw
		},
	}
	for name, open := range buckets {
		t.Run(name, func(t *testing.T) {
			reflextest.TestStreamFunc(t, reflextest.StreamHarness{
				New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
					b, raw := open(t)
					return b.StreamArchived, archiveAppender(raw)
				},
				InvalidCursors: invalidArchiveCursors,
			})
		})
	}
}

// gappedBucket holds events 1-3, 5-6 (4 was never archived: a filtered
// noop) and 10-12 in three objects.
func gappedBucket(t *testing.T) *blob.Bucket {
	raw := memBucket(t)
	for _, ids := range [][]int{{1, 2, 3}, {5, 6}, {10, 11, 12}} {
		var sb strings.Builder
		for _, id := range ids {
			e := testEvent(id)
			e.ID = strconv.Itoa(id)
			sb.WriteString(rblob.EncodeRecord(&e))
		}
		write(t, raw, key(ids[0]), sb.String())
	}
	return raw
}

func ids(events []*reflex.Event) string {
	var s []string
	for _, e := range events {
		s = append(s, e.ID)
	}
	return strings.Join(s, ",")
}

// TestStreamArchivedCursors: a cursor is an event ID; the stream starts
// with the next archived event, opening only the objects from the one that
// may hold it.
func TestStreamArchivedCursors(t *testing.T) {
	raw := gappedBucket(t)
	tests := []struct {
		after, want string
		opened      float64
	}{
		{"", "1,2,3,5,6,10,11,12", 3},
		{"0", "1,2,3,5,6,10,11,12", 3},
		{"1", "2,3,5,6,10,11,12", 3},
		{"3", "5,6,10,11,12", 3}, // the object of 1 may hold 4
		{"4", "5,6,10,11,12", 2},
		{"5", "6,10,11,12", 2},
		{"6", "10,11,12", 2}, // the object of 5 may hold 7
		{"9", "10,11,12", 1},
		{"11", "12", 1},
		{"12", "", 1},
		{"1000", "", 1},
		{strconv.FormatInt(math.MaxInt64, 10), "", 1},
	}
	for i, tc := range tests {
		t.Run("after "+tc.after, func(t *testing.T) {
			label := fmt.Sprint("cursors-", i)
			b := rblob.NewBucket(label, raw)
			opened := counterValue(t, metrics.NewRBlob(label).Read)
			got := drain(t, b.StreamArchived, tc.after)
			if ids(got) != tc.want {
				t.Errorf("after %q: IDs %q, want %q", tc.after, ids(got), tc.want)
			}
			if n := counterValue(t, metrics.NewRBlob(label).Read) - opened; n != tc.opened {
				t.Errorf("after %q: opened %v objects, want %v", tc.after, n, tc.opened)
			}
		})
	}
}

// TestStreamArchivedEvents: the events are those the Archiver consumed,
// every field, IDs included, zones and nanoseconds kept.
func TestStreamArchivedEvents(t *testing.T) {
	raw := memBucket(t)
	log := reflextest.NewLog()
	var want []reflex.Event
	zone := time.FixedZone("", -5*3600)
	for i := 1; i <= 300; i++ {
		e := testEvent(i)
		if i%10 == 0 {
			e.Timestamp = e.Timestamp.In(zone)
		}
		if i%50 == 0 {
			e.Type = evType(100000 + i) // boxed types above 255 are cached
			e.ForeignID = "ünïcode-" + strconv.Itoa(i) + `-<&>"\`
		}
		want = append(want, e)
	}
	log.Append(want...)
	want = log.Events()
	a := rblob.NewArchiver(raw, "events", rblob.WithArchiveMaxEvents(64))
	defer a.Close()
	archive(t, a, log.Stream, reflextest.NewCursorStore())

	got := drain(t, rblob.NewBucket("events", raw).StreamArchived, "")
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.ID != w.ID || g.ForeignID != w.ForeignID || g.Type.ReflexType() != w.Type.ReflexType() ||
			g.Timestamp.String() != w.Timestamp.String() || !bytes.Equal(g.MetaData, w.MetaData) || !bytes.Equal(g.Trace, w.Trace) {
			t.Errorf("event %d = %+v, want %+v", i, *g, w)
		}
	}
}

// TestStreamArchivedEventsIndependent: events share memory blocks, but
// changing one changes no other.
func TestStreamArchivedEventsIndependent(t *testing.T) {
	raw := memBucket(t)
	var sb strings.Builder
	for i := 1; i <= 3; i++ {
		sb.WriteString(rblob.EncodeRecord(&reflex.Event{ID: strconv.Itoa(i), Type: evType(1), MetaData: []byte("abc")}))
	}
	write(t, raw, key(1), sb.String())
	got := drain(t, rblob.NewBucket("independent", raw).StreamArchived, "")
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3", len(got))
	}
	got[0].MetaData[0] = 'X'
	got[0].MetaData = append(got[0].MetaData, "more"...)
	got[0].ID = "changed"
	for _, e := range got[1:] {
		if string(e.MetaData) != "abc" {
			t.Errorf("event %s: MetaData %q after changing another event's, want abc", e.ID, e.MetaData)
		}
	}
	if got[1].ID != "2" || got[2].ID != "3" {
		t.Errorf("IDs %q, %q after changing another event's, want 2, 3", got[1].ID, got[2].ID)
	}
}

// TestStreamArchivedMalformed: anything but an Archiver's objects ends
// the stream with an error naming the object and record, after the good
// events before it.
func TestStreamArchivedMalformed(t *testing.T) {
	rec := func(id string) string {
		return rblob.EncodeRecord(&reflex.Event{ID: id, Type: evType(2), ForeignID: "f", Timestamp: time.Unix(1, 0)})
	}
	tests := []struct {
		name    string
		objects map[string]string
		good    string
		key     string
		offset  int
		is      error
		msg     string
	}{
		{name: "foreign key", objects: map[string]string{key(1): rec("1"), "notes.txt": "x"},
			good: "1", key: "notes.txt", offset: -1, is: rblob.ErrNotArchived, msg: "not an archive object key"},
		{name: "first id not the key's", objects: map[string]string{key(1): rec("2")},
			key: key(1), offset: 0, is: rblob.ErrNotArchived, msg: "does not match the key"},
		{name: "ids not increasing", objects: map[string]string{key(1): rec("1") + rec("3") + rec("3")},
			good: "1,3", key: key(1), offset: 2, is: rblob.ErrNotArchived, msg: "must increase"},
		{name: "objects overlap", objects: map[string]string{key(1): rec("1") + rec("2") + rec("7"), key(5): rec("5")},
			good: "1,2,7", key: key(5), offset: -1, is: rblob.ErrNotArchived, msg: "not after"},
		{name: "id not an integer", objects: map[string]string{key(1): rec("1") + rec("x")},
			good: "1", key: key(1), offset: 1, is: rblob.ErrNotArchived, msg: `"x"`},
		{name: "unknown field", objects: map[string]string{key(1): rec("1") + `{"id":"2","type":1,"foreign_id":"","timestamp":"2026-05-01T10:00:00Z","extra":1}`},
			good: "1", key: key(1), offset: 1, is: rblob.ErrNotArchived, msg: "unknown field"},
		{name: "bad base64", objects: map[string]string{key(1): `{"id":"1","type":1,"foreign_id":"","timestamp":"2026-05-01T10:00:00Z","metadata":"!!!!"}`},
			key: key(1), offset: 0, is: rblob.ErrNotArchived, msg: "base64"},
		{name: "truncated", objects: map[string]string{key(1): rec("1") + rec("2")[:30]},
			good: "1", key: key(1), offset: 1, is: io.ErrUnexpectedEOF, msg: "truncated"},
		{name: "invalid JSON", objects: map[string]string{key(1): rec("1") + "{]\n"},
			good: "1", key: key(1), offset: 1, msg: "invalid JSON"},
		{name: "empty object", objects: map[string]string{key(1): rec("1"), key(2): ""},
			good: "1", key: key(2), offset: 0, is: rblob.ErrEmptyObject},
		// Objects after the first are read and decoded ahead, while the
		// one before is consumed: their errors come in order too.
		{name: "later object ids not increasing", objects: map[string]string{key(1): rec("1") + rec("2"), key(5): rec("5") + rec("7") + rec("6")},
			good: "1,2,5,7", key: key(5), offset: 2, is: rblob.ErrNotArchived, msg: "must increase"},
		{name: "later object first id", objects: map[string]string{key(1): rec("1"), key(5): rec("6")},
			good: "1", key: key(5), offset: 0, is: rblob.ErrNotArchived, msg: "does not match the key"},
		{name: "later object bad record", objects: map[string]string{key(1): rec("1"), key(5): rec("5") + `{"id":"6","type":1}` + "\n" + rec("7")},
			good: "1,5", key: key(5), offset: 1, is: rblob.ErrNotArchived, msg: "missing foreign_id"},
		{name: "later object truncated", objects: map[string]string{key(1): rec("1"), key(5): rec("5") + rec("6")[:20]},
			good: "1,5", key: key(5), offset: 1, is: io.ErrUnexpectedEOF},
		{name: "later object foreign key", objects: map[string]string{key(1): rec("1"), key(5) + ".bak": rec("5")},
			good: "1", key: key(5) + ".bak", offset: -1, is: rblob.ErrNotArchived},
		{name: "skipped record malformed", objects: map[string]string{key(1): rec("1") + "nope" + rec("3")},
			key: key(1), offset: 1, msg: "invalid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := memBucket(t)
			for k, v := range tc.objects {
				write(t, raw, k, v)
			}
			after := ""
			if strings.HasPrefix(tc.name, "skipped") {
				after = "2"
			}
			got, err := drainErr(t, rblob.NewBucket("malformed", raw).StreamArchived, after)
			if ids(got) != tc.good {
				t.Errorf("delivered %q before the error, want %q", ids(got), tc.good)
			}
			checkObjectErr(t, err, tc.key, tc.offset, tc.is, tc.msg)
		})
	}

	// With WithEmptyObjects, an empty object holds no events.
	raw := memBucket(t)
	write(t, raw, key(1), rec("1"))
	write(t, raw, key(2), "")
	write(t, raw, key(3), rec("3"))
	if got := ids(drain(t, rblob.NewBucket("empty-ok", raw, rblob.WithEmptyObjects()).StreamArchived, "")); got != "1,3" {
		t.Errorf("WithEmptyObjects: IDs %q, want 1,3", got)
	}
}

// TestStreamArchivedBufferEnds reads objects in pieces, so that records
// straddle the ends of the read buffer, with records in the Archiver's
// form and in others (whitespace, field order, escapes), which decode
// through encoding/json.
func TestStreamArchivedBufferEnds(t *testing.T) {
	var want []reflex.Event
	for i := 1; i <= 2000; i++ {
		e := testEvent(i)
		e.ID = strconv.Itoa(i)
		want = append(want, e)
	}
	raw := memBucket(t)
	var sb strings.Builder
	for first := 1; first <= 2000; first += 700 {
		sb.Reset()
		for i := first; i < first+700 && i <= 2000; i++ {
			line := rblob.EncodeRecord(&want[i-1])
			switch i % 5 {
			case 1:
				line = strings.Replace(line, `{"id":`, `{ "id" : `, 1)
			case 2:
				line = strings.Replace(line, `"foreign_id":"fid-`, `"foreign_id":"\u0066id-`, 1)
			case 3:
				line = strings.TrimSuffix(line, "\n") + "  \r\n\t"
			}
			sb.WriteString(line)
		}
		write(t, raw, key(first), sb.String())
	}
	for _, n := range []int{1, 7, 100, 4096} {
		t.Run(fmt.Sprint("read ahead ", n), func(t *testing.T) {
			rblob.SetReadAhead(t, n)
			got := drain(t, rblob.NewBucket("buffer-ends", raw).StreamArchived, "")
			evs := make([]reflex.Event, len(got))
			for i, e := range got {
				evs[i] = *e
			}
			sameEvents(t, evs, want)
		})
	}
}

// TestDecodeArchivedForms: records in other forms than the Archiver's
// decode as encoding/json decodes them.
func TestDecodeArchivedForms(t *testing.T) {
	for _, md := range []string{
		`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00.5Z","metadata":"AQI=","trace":"eA=="}`,
		`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z","metadata":""}`,
		`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z","metadata":null}`,
		`{"id":"1","type":-0,"foreign_id":"","timestamp":"2026-05-01T10:00:00+02:00"}`,
		`{"id":"1","type":123456789012345678,"foreign_id":"é","timestamp":"2024-02-29T23:59:59.999999999Z"}`,
		`{"id":"1","type":1234567890123456789,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z"}`,
		`{"trace":"eA==","metadata":"AQI=","timestamp":"2026-05-01T10:00:00Z","foreign_id":"f","type":2,"id":"1"}`,
		`{"ID":"1","Type":2,"FOREIGN_ID":"f","timestamp":"2026-05-01T10:00:00Z"}`,
		`{"id":"1","id":"2","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z"}`,
		`{"id":"\u0031","type":2,"foreign_id":"a\/b","timestamp":"2026-05-01T10:00:00Z"}` + " \n",
		`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00,5Z"}`,
		`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00.1234567891Z"}`,
	} {
		checkSameAsJSON(t, []byte(md))
	}
}

// checkSameAsJSON checks that DecodeArchived accepts md if and only if
// encoding/json does, with the same event.
func checkSameAsJSON(t *testing.T, md []byte) {
	t.Helper()
	got, err := rblob.DecodeArchived(&reflex.Event{ID: "c", MetaData: md})
	want, wantErr := rblob.DecodeRecordJSON(md)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("DecodeArchived(%q) = %v, encoding/json: %v", md, err, wantErr)
	}
	if err != nil {
		if !errors.Is(err, rblob.ErrNotArchived) {
			t.Fatalf("DecodeArchived(%q) error %v does not wrap ErrNotArchived", md, err)
		}
		return
	}
	if !reflect.DeepEqual(got, want) || got.Timestamp != want.Timestamp {
		t.Fatalf("DecodeArchived(%q) = %#v, encoding/json: %#v", md, got, want)
	}
}

// FuzzArchiveObject streams random object contents with StreamArchived
// and checks the events and the error against a split of the object with
// JSONDecoder and a decoding of each record with encoding/json.
func FuzzArchiveObject(f *testing.F) {
	var sb strings.Builder
	for i := 1; i <= 5; i++ {
		e := testEvent(i)
		e.ID = strconv.Itoa(i)
		sb.WriteString(rblob.EncodeRecord(&e))
	}
	f.Add([]byte(sb.String()), uint16(0))
	f.Add([]byte(sb.String()), uint16(40))
	f.Add([]byte(sb.String()[:100]), uint16(3))
	f.Add([]byte(`{"id":"1","type":1,"foreign_id":"","timestamp":"2026-05-01T10:00:00Z"} {"id":"3"}`), uint16(9))
	f.Fuzz(func(t *testing.T, obj []byte, readAhead uint16) {
		rblob.SetReadAhead(t, int(readAhead))

		// The reference: split, decode, check IDs.
		var want []*reflex.Event
		var wantErr error
		dec, _ := rblob.JSONDecoder(bytes.NewReader(obj))
		last := int64(0)
		for {
			rec, err := dec.Decode()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				wantErr = err
				break
			}
			e, err := rblob.DecodeRecordJSON(rec)
			if err != nil {
				wantErr = err
				break
			}
			id, err := strconv.ParseInt(e.ID, 10, 64)
			if err != nil || strconv.FormatInt(id, 10) != e.ID || id <= last || (len(want) == 0 && id != 1) {
				wantErr = errors.New("bad id")
				break
			}
			last = id
			want = append(want, e)
		}

		// The object alone is decoded as it is consumed; after another
		// object, it is decoded ahead.
		for _, lead := range []bool{false, true} {
			raw := memBucket(t)
			write(t, raw, key(1), string(obj))
			if lead {
				write(t, raw, key(0), rblob.EncodeRecord(&reflex.Event{ID: "0", Type: evType(1)}))
			}
			got, err := drainErr(t, rblob.NewBucket("fuzz", raw, rblob.WithEmptyObjects()).StreamArchived, "")
			if lead && len(got) > 0 && got[0].ID == "0" {
				got = got[1:]
			}
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("object %q (lead %v): stream error %v, reference %v", obj, lead, err, wantErr)
			}
			if err != nil {
				checkObjectErr(t, err, key(1), len(want), nil, "")
			}
			if len(got) != len(want) {
				t.Fatalf("object %q (lead %v): %d events, reference %d", obj, lead, len(got), len(want))
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], want[i]) || got[i].Timestamp != want[i].Timestamp {
					t.Fatalf("object %q (lead %v): event %d = %#v, reference %#v", obj, lead, i, got[i], want[i])
				}
			}
		}
	})
}

// TestInvalidArchiveCursor: bad cursors are reflex.ErrInvalidCursor too.
func TestInvalidArchiveCursor(t *testing.T) {
	b := rblob.NewBucket("bad-cursor", memBucket(t))
	for _, c := range invalidArchiveCursors {
		_, err := b.StreamArchived(t.Context(), c)
		if !errors.Is(err, rblob.ErrInvalidCursor) || !errors.Is(err, reflex.ErrInvalidCursor) {
			t.Errorf("StreamArchived(%q) = %v, want rblob.ErrInvalidCursor and reflex.ErrInvalidCursor", c, err)
		}
	}
}
