package rblob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

type evType int

func (t evType) ReflexType() int { return int(t) }

// testEvent returns varied events: types, string foreign IDs, metadata that
// is absent, binary or JSON, traces on some.
func testEvent(i int) reflex.Event {
	e := reflex.Event{
		Type:      evType(i % 7),
		ForeignID: "fid-" + strconv.Itoa(i*31%1000),
		Timestamp: time.Date(2026, 5, 1, 10, 0, 0, i*1001, time.UTC),
	}
	switch i % 4 {
	case 1:
		e.MetaData = []byte{0, byte(i), '\n', '"', 0xff}
	case 2:
		e.MetaData = fmt.Appendf(nil, `{"n":%d}`, i)
	case 3:
		e.Trace = []byte("trace-" + strconv.Itoa(i))
	}
	return e
}

func newLog(n int) *reflextest.Log {
	l := reflextest.NewLog()
	evs := make([]reflex.Event, n)
	for i := range evs {
		evs[i] = testEvent(i + 1)
	}
	l.Append(evs...)
	return l
}

// archive runs an archiver over stream to its head and flushes the tail.
func archive(t *testing.T, a *rblob.Archiver, stream reflex.StreamFunc, store reflex.CursorStore) {
	t.Helper()
	err := reflex.Run(t.Context(), a.Spec(stream, store, reflex.WithStreamToHead()))
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Run = %v, want ErrHeadReached", err)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// replay streams the bucket from the start and decodes the archived events.
func replay(t *testing.T, raw *blob.Bucket) []reflex.Event {
	t.Helper()
	b := rblob.NewBucket("replay", raw)
	var out []reflex.Event
	for _, e := range drain(t, b.Stream, "") {
		orig, err := rblob.DecodeArchived(e)
		if err != nil {
			t.Fatalf("DecodeArchived(%q): %v", e.ID, err)
		}
		out = append(out, *orig)
	}
	return out
}

// sameEvents compares every field of got and want, in order.
func sameEvents(t *testing.T, got, want []reflex.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d events, want %d", len(got), len(want))
	}
	bad := 0
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.ForeignID != w.ForeignID || !reflex.IsType(g.Type, w.Type) ||
			!g.Timestamp.Equal(w.Timestamp) || !bytes.Equal(g.MetaData, w.MetaData) || !bytes.Equal(g.Trace, w.Trace) {
			t.Errorf("event %d = %+v, want %+v", i, g, w)
			if bad++; bad > 5 {
				t.Fatal("too many differences")
			}
		}
	}
}

func keys(t *testing.T, raw *blob.Bucket) []string {
	t.Helper()
	var out []string
	it := raw.List(nil)
	for {
		obj, err := it.Next(t.Context())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, obj.Key)
	}
}

func key(first int) string { return fmt.Sprintf("%020d.jsonl", first) }

func TestArchiverRoundTrip(t *testing.T) {
	for name, open := range map[string]func(t testing.TB) *blob.Bucket{
		"memblob":  memBucket,
		"fileblob": func(t testing.TB) *blob.Bucket { b, _ := fileBucket(t); return b },
	} {
		t.Run(name, func(t *testing.T) {
			raw := open(t)
			log := newLog(2500)
			store := reflextest.NewCursorStore()
			a := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(1000), rblob.WithArchiveMaxAge(0))
			t.Cleanup(func() { _ = a.Close() })
			archive(t, a, log.Stream, store)

			if got, want := keys(t, raw), []string{key(1), key(1001), key(2001)}; !slices.Equal(got, want) {
				t.Errorf("objects = %q, want %q", got, want)
			}
			sameEvents(t, replay(t, raw), log.Events())
			if got := store.Cursor("archiver"); got != "2500" {
				t.Errorf("cursor = %q, want 2500", got)
			}
		})
	}
}

func TestArchiverCursorFollowsWrites(t *testing.T) {
	raw := memBucket(t)
	log := newLog(25)
	store := reflextest.NewCursorStore()
	a := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(10), rblob.WithArchiveMaxAge(0))
	defer a.Close()
	err := reflex.Run(t.Context(), a.Spec(log.Stream, store, reflex.WithStreamToHead()))
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Run = %v", err)
	}
	// Run set a cursor after each of the 25 events; only the writes reach
	// the store.
	if got := store.Sets("archiver"); !slices.Equal(got, []string{"10", "20"}) {
		t.Errorf("cursors set = %q, want [10 20]: the cursor must not pass unwritten events", got)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(t.Context()); err != nil { // nothing buffered
		t.Fatal(err)
	}
	if got := store.Sets("archiver"); !slices.Equal(got, []string{"10", "20", "25"}) {
		t.Errorf("cursors set = %q, want [10 20 25]", got)
	}
	if got := keys(t, raw); len(got) != 3 {
		t.Errorf("objects = %q, want 3", got)
	}
}

// TestArchiverRestart interrupts archiving and resumes with a fresh
// archiver (a new process) and a cursor that lags the bucket by varying
// amounts, as after a crash with an asynchronous cursor store: no event is
// lost or duplicated and no existing object is rewritten.
func TestArchiverRestart(t *testing.T) {
	const n, per = 1000, 100
	tests := []struct {
		name       string
		stopAt     int    // the first run stops when it receives this event
		flushFirst bool   // the first run flushes its buffer (graceful stop)
		cursor     string // the cursor the second run starts from
	}{
		{name: "cursor saved", stopAt: 450, cursor: "400"},
		{name: "cursor lost", stopAt: 450, cursor: ""},
		{name: "cursor lags two objects", stopAt: 450, cursor: "200"},
		{name: "cursor inside an object", stopAt: 450, cursor: "250"},
		{name: "partial object flushed", stopAt: 437, flushFirst: true, cursor: "300"},
		{name: "partial object, cursor lost", stopAt: 437, flushFirst: true, cursor: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := memBucket(t)
			log := newLog(n)

			// First run: stop when event stopAt is received.
			ctx, cancel := context.WithCancel(t.Context())
			log.SetRecvHook(func(_ context.Context, e *reflex.Event) error {
				if e.ID == strconv.Itoa(tc.stopAt) {
					cancel()
					return context.Canceled
				}
				return nil
			})
			a1 := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(per), rblob.WithArchiveMaxAge(0))
			store1 := reflextest.NewCursorStore()
			if err := reflex.Run(ctx, a1.Spec(log.Stream, store1)); !errors.Is(err, context.Canceled) {
				t.Fatalf("first Run = %v, want context.Canceled", err)
			}
			if tc.flushFirst {
				if err := a1.Flush(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			_ = a1.Close()
			log.SetRecvHook(nil)
			before := snapshot(t, raw)

			archivedBefore := 0
			for _, v := range before {
				archivedBefore += strings.Count(v, "\n")
			}
			skipped := metrics.NewRBlobArchiver("archiver").Skipped
			skippedBefore := counterValue(t, skipped)

			// Second run, as a new process whose store has cursor.
			store2 := reflextest.NewCursorStore()
			if tc.cursor != "" {
				_ = store2.SetCursor(t.Context(), "archiver", tc.cursor)
			}
			a2 := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(per), rblob.WithArchiveMaxAge(0))
			defer a2.Close()
			archive(t, a2, log.Stream, store2)

			sameEvents(t, replay(t, raw), log.Events())
			after := snapshot(t, raw)
			for k, v := range before {
				if after[k] != v {
					t.Errorf("object %q was rewritten", k)
				}
			}
			cursor, _ := strconv.Atoi(tc.cursor)
			if got, want := counterValue(t, skipped)-skippedBefore, float64(max(archivedBefore-cursor, 0)); got != want {
				t.Errorf("skipped %v events already archived, want %v", got, want)
			}
			if got := store2.Cursor("archiver"); got != strconv.Itoa(n) {
				t.Errorf("final cursor = %q, want %d", got, n)
			}
		})
	}
}

func snapshot(t *testing.T, raw *blob.Bucket) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, k := range keys(t, raw) {
		b, err := raw.ReadAll(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		m[k] = string(b)
	}
	return m
}

// TestArchiverFillsBetweenObjects resumes over a bucket whose objects have
// other boundaries (written with other settings): new objects end before
// existing ones.
func TestArchiverFillsBetweenObjects(t *testing.T) {
	raw := memBucket(t)
	log := newLog(40)
	evs := log.Events()
	writeObject := func(from, to int) { // events from..to, 1-based
		var sb strings.Builder
		for i := from; i <= to; i++ {
			sb.WriteString(rblob.EncodeRecord(&evs[i-1]))
		}
		write(t, raw, key(from), sb.String())
	}
	writeObject(1, 5)
	writeObject(11, 12)
	writeObject(13, 30)

	a := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(100), rblob.WithArchiveMaxAge(0))
	defer a.Close()
	archive(t, a, log.Stream, reflextest.NewCursorStore())
	if got, want := keys(t, raw), []string{key(1), key(6), key(11), key(13), key(31)}; !slices.Equal(got, want) {
		t.Errorf("objects = %q, want %q", got, want)
	}
	sameEvents(t, replay(t, raw), evs)
}

// TestArchiverSkipsAfterGaps: event IDs need not be contiguous (rsql hides
// noop events).
func TestArchiverSkipsAfterGaps(t *testing.T) {
	raw := memBucket(t)
	log := reflextest.NewLog()
	var want []reflex.Event
	for i := 1; i <= 30; i++ {
		if i%4 == 0 {
			continue
		}
		e := testEvent(i)
		e.ID = strconv.Itoa(i * 3)
		want = append(want, e)
	}
	log.Append(want...)
	want = log.Events()
	a := rblob.NewArchiver(raw, "gaps", rblob.WithArchiveMaxEvents(7), rblob.WithArchiveMaxAge(0))
	defer a.Close()
	store := reflextest.NewCursorStore()
	archive(t, a, log.Stream, store)
	sameEvents(t, replay(t, raw), want)

	// Again from scratch: everything is skipped, nothing rewritten.
	before := snapshot(t, raw)
	a2 := rblob.NewArchiver(raw, "gaps", rblob.WithArchiveMaxEvents(5), rblob.WithArchiveMaxAge(0))
	defer a2.Close()
	store2 := reflextest.NewCursorStore()
	archive(t, a2, log.Stream, store2)
	if after := snapshot(t, raw); len(after) != len(before) {
		t.Errorf("%d objects after re-archiving, want %d", len(after), len(before))
	}
	sameEvents(t, replay(t, raw), want)
	if got, want := store2.Cursor("gaps"), want[len(want)-1].ID; got != want {
		t.Errorf("cursor after skipping = %q, want %q", got, want)
	}
}

func TestArchiverKeyPrefix(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "other/x", "not an archive") // outside the prefix
	log := newLog(5)
	a := rblob.NewArchiver(raw, "p", rblob.WithArchiveKeyPrefix("events/orders-"), rblob.WithArchiveMaxAge(0))
	defer a.Close()
	archive(t, a, log.Stream, reflextest.NewCursorStore())
	want := "events/orders-" + key(1)
	if got := keys(t, raw); !slices.Contains(got, want) {
		t.Errorf("objects = %q, want %q among them", got, want)
	}
	sameEvents(t, replay(t, blob.PrefixedBucket(raw, "events/")), log.Events())
}

func TestArchiverStore(t *testing.T) {
	inner := reflextest.NewCursorStore(reflextest.WithBuffering())
	a := rblob.NewArchiver(memBucket(t), "archiver")
	defer a.Close()
	s := a.CursorStore(inner)
	ctx := t.Context()
	if err := s.SetCursor(ctx, "archiver", "99"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCursor(ctx, "other", "7"); err != nil {
		t.Fatal(err)
	}
	if got := inner.Sets("archiver"); len(got) != 0 {
		t.Errorf("inner cursors of the archiver = %q, want none (Run's cursors are ignored)", got)
	}
	if err := s.Flush(ctx); err != nil || inner.Flushes() != 1 {
		t.Errorf("Flush = %v, inner flushes %d; want passed through", err, inner.Flushes())
	}
	if c, err := s.GetCursor(ctx, "other"); err != nil || c != "7" {
		t.Errorf("GetCursor(other) = %q, %v; want 7", c, err)
	}
}

func TestArchiverErrors(t *testing.T) {
	ctx := t.Context()
	ev := func(id string) *reflex.Event {
		return &reflex.Event{ID: id, Type: evType(1), Timestamp: time.Now()}
	}

	t.Run("no store", func(t *testing.T) {
		a := rblob.NewArchiver(memBucket(t), "a")
		defer a.Close()
		if err := a.Consume(ctx, ev("1")); !errors.Is(err, rblob.ErrArchiverNoStore) {
			t.Errorf("Consume without a store = %v, want ErrArchiverNoStore", err)
		}
	})
	t.Run("ids", func(t *testing.T) {
		a := rblob.NewArchiver(memBucket(t), "a")
		defer a.Close()
		a.CursorStore(reflextest.NewCursorStore())
		for _, id := range []string{"x", "-1", "1.5", ""} {
			if err := a.Consume(ctx, ev(id)); !errors.Is(err, rblob.ErrArchiveEventID) {
				t.Errorf("Consume(id %q) = %v, want ErrArchiveEventID", id, err)
			}
		}
		if err := a.Consume(ctx, ev("5")); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"5", "4"} {
			if err := a.Consume(ctx, ev(id)); !errors.Is(err, rblob.ErrArchiveEventID) {
				t.Errorf("Consume(id %s after 5) = %v, want ErrArchiveEventID", id, err)
			}
		}
	})
	t.Run("closed", func(t *testing.T) {
		a := rblob.NewArchiver(memBucket(t), "a")
		a.CursorStore(reflextest.NewCursorStore())
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		if err := a.Consume(ctx, ev("1")); !errors.Is(err, rblob.ErrArchiverClosed) {
			t.Errorf("Consume after Close = %v, want ErrArchiverClosed", err)
		}
		if err := a.Flush(ctx); !errors.Is(err, rblob.ErrArchiverClosed) {
			t.Errorf("Flush after Close = %v, want ErrArchiverClosed", err)
		}
	})
	t.Run("options", func(t *testing.T) {
		b := memBucket(t)
		mustPanic(t, "nil bucket", func() { rblob.NewArchiver(nil, "a") })
		mustPanic(t, "zero max events", func() { rblob.NewArchiver(b, "a", rblob.WithArchiveMaxEvents(0)) })
		mustPanic(t, "negative max age", func() { rblob.NewArchiver(b, "a", rblob.WithArchiveMaxAge(-1)) })
		mustPanic(t, "pipe in prefix", func() { rblob.NewArchiver(b, "a", rblob.WithArchiveKeyPrefix("a|b")) })
		mustPanic(t, "nil option", func() { rblob.NewArchiver(b, "a", nil) })
	})

	bad := []struct {
		name, key, data string
		offset          int
		msg             string
	}{
		{name: "foreign key", key: "notes.txt", data: "x", offset: -1, msg: "not an archive object key"},
		{name: "first id mismatch", key: key(1), data: rblob.EncodeRecord(ev("2")), offset: 0, msg: "does not match"},
		{name: "invalid record", key: key(1), data: rblob.EncodeRecord(ev("1")) + "{\"id\":", offset: 1, msg: "truncated"},
		{name: "not archived", key: key(1), data: `{"x":1}`, offset: 0, msg: "not an archived event"},
		{name: "empty object", key: key(1), data: "", offset: -1, msg: "empty"},
	}
	for _, tc := range bad {
		t.Run("existing "+tc.name, func(t *testing.T) {
			raw := memBucket(t)
			write(t, raw, tc.key, tc.data)
			a := rblob.NewArchiver(raw, "a")
			defer a.Close()
			a.CursorStore(reflextest.NewCursorStore())
			err := a.Consume(ctx, ev("1"))
			checkObjectErr(t, err, tc.key, tc.offset, nil, tc.msg)
		})
	}

	t.Run("write error", func(t *testing.T) {
		raw, _ := newStartAfterBucket(t, false, nil) // read-only
		store := reflextest.NewCursorStore()
		a := rblob.NewArchiver(raw, "a", rblob.WithArchiveMaxEvents(2), rblob.WithArchiveMaxAge(0))
		defer a.Close()
		err := reflex.Run(ctx, a.Spec(newLog(5).Stream, store, reflex.WithStreamToHead()))
		if err == nil || !strings.Contains(err.Error(), "consume error") || !strings.Contains(err.Error(), key(1)) {
			t.Errorf("Run = %v, want a consume error naming %q", err, key(1))
		}
		if c := store.Cursor("a"); c != "" {
			t.Errorf("cursor = %q after a failed write, want none", c)
		}
	})
	t.Run("cursor error", func(t *testing.T) {
		raw := memBucket(t)
		boom := errors.New("boom")
		store := reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{
			Set: func(string, string) error { return boom },
		}))
		a := rblob.NewArchiver(raw, "a", rblob.WithArchiveMaxEvents(2), rblob.WithArchiveMaxAge(0))
		defer a.Close()
		err := reflex.Run(ctx, a.Spec(newLog(5).Stream, store, reflex.WithStreamToHead()))
		if !errors.Is(err, boom) {
			t.Errorf("Run = %v, want the cursor error", err)
		}
		// The object is written; a rerun skips it.
		sameEvents(t, replay(t, raw), newLog(2).Events())
	})
}

func TestDecodeArchivedErrors(t *testing.T) {
	ok := `{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z"}`
	if e, err := rblob.DecodeArchived(&reflex.Event{MetaData: []byte(ok)}); err != nil || e.ID != "1" || e.Type.ReflexType() != 2 || e.ForeignID != "f" {
		t.Fatalf("DecodeArchived(%s) = %+v, %v", ok, e, err)
	}
	for _, md := range []string{
		``, `1`, `nope`, `{}`,
		`{"type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z"}`,
		`{"id":"1","foreign_id":"f","timestamp":"2026-05-01T10:00:00Z"}`,
		`{"id":"1","type":2,"timestamp":"2026-05-01T10:00:00Z"}`,
		`{"id":"1","type":2,"foreign_id":"f"}`,
		`{"id":"1","type":2,"foreign_id":"f","timestamp":"yesterday"}`,
		`{"id":"1","type":2.5,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z"}`,
		`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z","extra":1}`,
		`{"id":"1","type":2,"foreign_id":"f","timestamp":"2026-05-01T10:00:00Z","metadata":"!!"}`,
		ok + ` 2`,
	} {
		_, err := rblob.DecodeArchived(&reflex.Event{ID: "k|eof", MetaData: []byte(md)})
		if !errors.Is(err, rblob.ErrNotArchived) || !strings.Contains(err.Error(), "k|eof") {
			t.Errorf("DecodeArchived(%s) = %v, want ErrNotArchived naming the event", md, err)
		}
	}
}
