package rblob_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest"
)

// TestStreamTieredTrimRaces trims the table inside each switch window of a
// reader, deterministically through the switch hooks: the reader goes
// back to the archive as needed and sees every event once, in order.
func TestStreamTieredTrimRaces(t *testing.T) {
	forTieredServers(t, testStreamTieredTrimRaces)
}

func testStreamTieredTrimRaces(t *testing.T, srv tieredServer) {
	for _, stage := range []string{"switch", "table", "back"} {
		t.Run(stage, func(t *testing.T) {
			// Without the table's cache, which would serve the events
			// deleted under the reader (correctly, but without a switch).
			env := newTieredEnvTable(t, srv.open(t), srv.d, memBucket(t), 10, []rsql.EventsOption{rsql.WithoutEventsCache()})
			env.insert(t, tieredEvents(1, 200)...)
			env.archiveAll(t)
			env.trimBelow(t, 61)
			steps := []int64{81, 101, 141}
			if stage == "back" {
				steps = steps[:2] // one trim at the table, one as it goes back
			}
			var seen []string
			rblob.SetTieredHook(t, func(s string) {
				seen = append(seen, s)
				trigger := s == stage
				if stage == "back" && s == "table" && !slices.Contains(seen[:len(seen)-1], "table") {
					trigger = true // the first trim makes the reader go back
				}
				if trigger && len(steps) > 0 {
					env.trimBelow(t, steps[0])
					steps = steps[1:]
				}
			})
			got := drain(t, env.stream, "", reflex.WithStreamToHead())
			wantIDs(t, got, 1, 200)
			checkTieredEvents(t, got)
			if len(steps) > 0 {
				t.Errorf("stage %q reached too few times (%v): trims %v not done", stage, seen, steps)
			}
			if !slices.Contains(seen, "back") {
				t.Errorf("the reader never went back to the archive: %v", seen)
			}
		})
	}
}

// TestStreamTieredTrimUnderReader trims past a reader of the table, and
// past a consumer of the table's own stream: the tiered reader goes back
// to the archive, and the table's consumer, failing with ErrTrimmed, goes
// on from its cursor through the tiered stream.
func TestStreamTieredTrimUnderReader(t *testing.T) {
	env := newTieredEnv(t, sqlitetest.Open(t), rsql.SQLite, memBucket(t), 10)
	env.insert(t, tieredEvents(1, 150)...)
	env.archiveAll(t)
	env.trimBelow(t, 61)

	ctx := t.Context()
	cl, err := env.stream(ctx, "", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	// A consumer of the table reading small batches, without the cache.
	small := env.table.Clone(rsql.WithoutEventsCache(), rsql.WithEventLookupLimit(5))
	t.Cleanup(func() { _ = small.Close() })
	plain, err := small.ToStream(env.db)(ctx, "60", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.(io.Closer).Close()
	var got []*reflex.Event
	for len(got) < 70 {
		e, err := cl.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	var plainCursor string
	for range 3 {
		e, err := plain.Recv()
		if err != nil {
			t.Fatal(err)
		}
		plainCursor = e.ID
	}
	env.trimBelow(t, 121)
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			break
		}
		if err != nil {
			t.Fatalf("Recv after %d events: %v", len(got), err)
		}
		got = append(got, e)
	}
	wantIDs(t, got, 1, 150)
	checkTieredEvents(t, got)

	// The plain stream reads its buffered events, then fails.
	for {
		e, err := plain.Recv()
		if err != nil {
			if !errors.Is(err, rsql.ErrTrimmed) {
				t.Fatalf("plain stream after %s: %v, want ErrTrimmed", plainCursor, err)
			}
			break
		}
		plainCursor = e.ID
	}
	rest := drain(t, env.stream, plainCursor, reflex.WithStreamToHead())
	from, _ := strconv.ParseInt(plainCursor, 10, 64)
	wantIDs(t, rest, from+1, 150)
}

// TestStreamTieredConcurrentTrim trims in small steps on another goroutine
// while readers cross the switch point again and again.
func TestStreamTieredConcurrentTrim(t *testing.T) {
	forTieredServers(t, testStreamTieredConcurrentTrim)
}

func testStreamTieredConcurrentTrim(t *testing.T, srv tieredServer) {
	env := newTieredEnv(t, srv.open(t), srv.d, memBucket(t), 7)
	const n = 600
	env.insert(t, tieredEvents(1, n)...)
	env.archiveAll(t)
	env.trimBelow(t, 11)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	trimErr := make(chan error, 1)
	go func() {
		defer close(trimErr)
		for below := int64(12); below <= n && ctx.Err() == nil; below += 3 {
			if _, err := env.trimmer.TrimBelow(ctx, below); err != nil && ctx.Err() == nil {
				trimErr <- err
				return
			}
		}
	}()
	for r := range 4 {
		got := drain(t, env.stream, "", reflex.WithStreamToHead())
		wantIDs(t, got, 1, n)
		if r == 0 {
			checkTieredEvents(t, got)
		}
	}
	cancel()
	if err := <-trimErr; err != nil {
		t.Fatalf("TrimBelow: %v", err)
	}
}

// objectKey is the key of the archive object whose first event is first.
func objectKey(first int) string { return key(first) }

func wantObjectErr(t *testing.T, err error, key string, is error, msg string) {
	t.Helper()
	oe, ok := errors.AsType[*rblob.ObjectError](err)
	if !ok || is != nil && !errors.Is(err, is) {
		t.Fatalf("error %v, want an *ObjectError wrapping %v", err, is)
	}
	if oe.Key != key || !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q, want it to name object %q and say %q", err, key, msg)
	}
}

// TestStreamTieredArchiveDamage: an object missing where the table was
// trimmed, missing at the archive's end, or corrupt ends the stream with
// an error naming it, never a skip to the table.
func TestStreamTieredArchiveDamage(t *testing.T) {
	setup := func(t *testing.T) *tieredEnv {
		env := newTieredEnv(t, sqlitetest.Open(t), rsql.SQLite, memBucket(t), 10)
		env.insert(t, tieredEvents(1, 100)...)
		env.archiveAll(t)
		env.trimBelow(t, 61) // the marker replaces event 60
		return env
	}
	del := func(t *testing.T, env *tieredEnv, firsts ...int) {
		for _, f := range firsts {
			if err := env.raw.Delete(t.Context(), objectKey(f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("missing object holding the trimmed-through event", func(t *testing.T) {
		env := setup(t)
		del(t, env, 51)
		_, err := env.stream(t.Context(), "")
		wantObjectErr(t, err, objectKey(61), rblob.ErrArchiveGap, `events 60 to 60 (among them event 60, through which the table is trimmed) are missing between object "00000000000000000041.jsonl" and this one`)
		// A reader past the check at opening meets it too.
		_, err = env.stream(t.Context(), "55")
		wantObjectErr(t, err, objectKey(61), rblob.ErrArchiveGap, "events 60 to 60")
	})
	t.Run("missing objects at the end", func(t *testing.T) {
		env := setup(t)
		del(t, env, 51, 61, 71, 81, 91)
		_, err := env.stream(t.Context(), "12")
		wantObjectErr(t, err, objectKey(41), rblob.ErrArchiveGap, "the archive holds no event after 59 but the table is trimmed through event 60")
	})
	t.Run("corrupt object", func(t *testing.T) {
		env := setup(t)
		write(t, env.raw, objectKey(31), `{"id":"31","type":1,"foreign_id":"f31","timestamp":"2026-01-01T00:00:00Z"}`+"\nnot json\n")
		got, err := drainErr(t, env.stream, "")
		wantObjectErr(t, err, objectKey(31), nil, "record 1: invalid JSON")
		wantIDs(t, got, 1, 31)
	})
	t.Run("missing middle object, dense", func(t *testing.T) {
		// The archive holds noops too: every ID is checked.
		db := dbtest.Open(t)
		env := newTieredEnv(t, db, rsql.MySQL, memBucket(t), 10, rblob.WithTieredDense(rsql.IsNoop))
		if err := rsql.FillGaps(db, env.table); err != nil {
			t.Fatal(err)
		}
		env.insert(t, tieredEvents(1, 14)...)
		burnID(t, env) // ID 15, filled with a noop
		env.insert(t, tieredEvents(16, 85)...)
		waitFilled(t, env, 14, "16")
		noops := env.table.Clone(rsql.WithIncludeNoopEvents())
		t.Cleanup(func() { _ = noops.Close() })
		err := reflex.Run(t.Context(), env.archiver.Spec(noops.ToStream(db), env.store, reflex.WithStreamToHead()))
		if !reflex.IsHeadReachedErr(err) {
			t.Fatal(err)
		}
		if err := env.archiver.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		env.trimBelow(t, 61)
		got := drain(t, env.stream, "", reflex.WithStreamToHead())
		if len(got) != 99 || slices.ContainsFunc(got, func(e *reflex.Event) bool { return e.ID == "15" }) {
			t.Fatalf("dense archive: %d events (%v...), want 99 without the noop 15", len(got), got[:3])
		}
		del(t, env, 21)
		got, err = drainErr(t, env.stream, "")
		wantObjectErr(t, err, objectKey(31), rblob.ErrArchiveGap, `events 21 to 30 are missing between object "00000000000000000011.jsonl" and this one`)
		if len(got) != 19 {
			t.Errorf("delivered %d events before the hole, want 19", len(got))
		}
	})
	t.Run("missing middle object, not dense", func(t *testing.T) {
		// What cannot be told from noops goes undetected: documented.
		env := setup(t)
		del(t, env, 21)
		got, err := drainErr(t, env.stream, "")
		if err != nil || len(got) != 90 {
			t.Errorf("%d events, %v; want 90 (10 lost undetected)", len(got), err)
		}
	})
}

// burnID burns the next event ID in a rolled-back transaction.
func burnID(t *testing.T, env *tieredEnv) {
	t.Helper()
	tx, err := env.db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.table.Insert(t.Context(), tx, "rolled-back", evType(1)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
}

// waitFilled waits until a stream passes the event after id: the gap
// filler has filled the IDs before it.
func waitFilled(t *testing.T, env *tieredEnv, id int64, next string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // hang guard
	defer cancel()
	cl, err := env.table.ToStream(env.db)(ctx, strconv.FormatInt(id, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	if e, err := cl.Recv(); err != nil || e.ID != next {
		t.Fatalf("after %d: %v, %v; want %s", id, e, err, next)
	}
}

// TestStreamTieredMismatch: a bucket and a table of different tables are
// detected by the overlap of their events, or by the IDs the archive
// lacks, when the stream opens.
func TestStreamTieredMismatch(t *testing.T) {
	db := sqlitetest.Open(t)
	a := newTieredEnv(t, db, rsql.SQLite, memBucket(t), 10)
	a.insert(t, tieredEvents(1, 100)...)
	a.archiveAll(t)

	// Table b: other events, trimmed (as if archived) through 40.
	bdb := sqlitetest.Open(t)
	b := newTieredEnv(t, bdb, rsql.SQLite, memBucket(t), 10)
	other := tieredEvents(1001, 100)
	b.insert(t, other...)
	_ = b.store.SetCursor(t.Context(), "archiver", "100")
	b.trimBelow(t, 41)

	mixed := a.bucket.StreamTiered(b.table.ToStream(bdb), b.trimmed)
	_, err := mixed(t.Context(), "")
	if !errors.Is(err, rblob.ErrArchiveMismatch) || !strings.Contains(err.Error(), "event \"41\" differs: the archive's and the table's have") {
		t.Errorf("tiered stream over another table's archive: %v, want ErrArchiveMismatch at event 41", err)
	}
	if _, err := mixed(t.Context(), "40"); err != nil {
		t.Errorf("from the table's trimmed-through ID, the archive is not read: %v", err)
	}

	// Table c, trimmed beyond a's archive.
	cdb := sqlitetest.Open(t)
	c := newTieredEnv(t, cdb, rsql.SQLite, memBucket(t), 10)
	c.insert(t, tieredEvents(1, 300)...)
	_ = c.store.SetCursor(t.Context(), "archiver", "300")
	c.trimBelow(t, 251)
	_, err = a.bucket.StreamTiered(c.table.ToStream(cdb), c.trimmed)(t.Context(), "")
	wantObjectErr(t, err, objectKey(91), rblob.ErrArchiveGap, "the archive holds no event after 249 but the table is trimmed through event 250")
}

// TestStreamTieredBadInput: nil arguments panic at setup; invalid cursors
// and lags are errors.
func TestStreamTieredBadInput(t *testing.T) {
	b := rblob.NewBucket("bad", memBucket(t))
	table := reflex.StreamFunc(newLog(3).Stream)
	trimmed := func(context.Context) (int64, error) { return 0, nil }
	mustPanic(t, "nil table", func() { b.StreamTiered(nil, trimmed) })
	mustPanic(t, "nil trimmed", func() { b.StreamTiered(table, nil) })
	mustPanic(t, "nil option", func() { b.StreamTiered(table, trimmed, nil) })
	s := b.StreamTiered(table, trimmed)
	for _, c := range []string{"x", "-1", "01", strings.Repeat("9", 1000)} {
		if _, err := s(t.Context(), c); !errors.Is(err, reflex.ErrInvalidCursor) || len(err.Error()) > 200 {
			t.Errorf("cursor %.20q: %v, want a bounded ErrInvalidCursor", c, err)
		}
	}
	if _, err := s(t.Context(), "", reflex.WithStreamLag(-time.Second)); err == nil {
		t.Error("negative lag accepted")
	}
	failing := b.StreamTiered(table, func(context.Context) (int64, error) { return 0, errors.New("db down") })
	if _, err := failing(t.Context(), "5"); err == nil || !strings.Contains(err.Error(), "db down") {
		t.Errorf("failing TrimmedFunc: %v", err)
	}
}
