package rpatterns_test

// End-to-end tests of the patterns over MariaDB through rsql. They need
// DB_TEST_URI (see internal/dbtest) and skip under -short without it.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// openStrict returns a fresh database whose sessions use strict SQL mode,
// where luno/reflex's swapped dead-letter arguments failed.
func openStrict(t *testing.T) *sql.DB {
	t.Helper()
	_, dsn := dbtest.OpenDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var mode string
	if err := db.QueryRowContext(t.Context(), "SELECT @@SESSION.sql_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mode, "STRICT_ALL_TABLES") {
		t.Fatalf("sql_mode = %q, want strict", mode)
	}
	return db
}

// insertEvents inserts one event per foreign ID, in order, and returns the
// ID of the last.
func insertEvents(t *testing.T, db *sql.DB, table *rsql.EventsTable, fids []string) int64 {
	t.Helper()
	for len(fids) > 0 {
		n := min(len(fids), 1000)
		batch := make([]rsql.EventToInsert, n)
		for i, fid := range fids[:n] {
			batch[i] = rsql.EventToInsert{ForeignID: fid, Type: OrderPlaced}
		}
		notify, err := table.InsertMany(t.Context(), db, batch)
		if err != nil {
			t.Fatalf("InsertMany: %v", err)
		}
		notify()
		fids = fids[n:]
	}
	var last int64
	if err := db.QueryRowContext(t.Context(), "SELECT COALESCE(MAX(id), 0) FROM "+table.Name()).Scan(&last); err != nil {
		t.Fatal(err)
	}
	return last
}

// TestE2EDeadLetter: a poison event is recorded once in the consumer errors
// table (strict mode) and the consumer moves past it.
func TestE2EDeadLetter(t *testing.T) {
	db := openStrict(t)
	rsqltest.CreateEventsTable(t, db, "orders_events")
	rsqltest.CreateCursorsTable(t, db, "cursors")
	rsqltest.CreateErrorsTables(t, db)
	events := rsql.NewEventsTable("orders_events")
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncDisabled())
	t.Cleanup(func() { cursors.Close() })

	fids := []string{"o1", "o2", "o3", "poison", "o5", "o6"}
	last := insertEvents(t, db, events, fids)
	poisonID := last - 2

	var mu sync.Mutex
	var processed []string
	fn := func(ctx context.Context, e *reflex.Event) error {
		if e.ForeignID == "poison" {
			return errors.New("cannot process poison")
		}
		mu.Lock()
		defer mu.Unlock()
		processed = append(processed, e.ForeignID)
		return nil
	}
	insert := rsql.NewErrorsTable().ToErrorInsertFunc(db)
	const name = "dl_e2e"
	consumer := rpatterns.NewDeadLetterConsumer(name, 1, fn, insert)
	spec := reflex.NewSpec(events.ToStream(db), cursors.ToStore(db), consumer, reflex.WithStreamToHead())

	// Retries 1: the first run fails at the poison event, the second records
	// it and continues to the head.
	if err := reflex.Run(t.Context(), spec); err == nil || reflex.IsHeadReachedErr(err) {
		t.Fatalf("first Run = %v, want the poison error", err)
	}
	if err := reflex.Run(t.Context(), spec); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("second Run = %v, want ErrHeadReached", err)
	}
	// Replaying the stream (another cursor store) records it again: still
	// one row.
	replay := reflex.NewSpec(events.ToStream(db), rpatterns.MemCursorStore(), consumer, reflex.WithStreamToHead())
	for range 2 {
		_ = reflex.Run(t.Context(), replay)
	}

	if got, want := processed[:5], []string{"o1", "o2", "o3", "o5", "o6"}; !slices.Equal(got, want) {
		t.Errorf("processed %q, want %q", got, want)
	}
	cur, err := cursors.GetCursor(t.Context(), db, name)
	if err != nil || cur != strconv.FormatInt(last, 10) {
		t.Errorf("cursor = %q, %v; want %d", cur, err, last)
	}

	rows, err := db.QueryContext(t.Context(), "SELECT consumer, event_id, error_msg, error_status FROM consumer_errors")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		consumer string
		eventID  int64
		msg      string
		status   int
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.consumer, &r.eventID, &r.msg, &r.status); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []row{{consumer: name, eventID: poisonID, msg: "cannot process poison", status: int(reflex.EventErrorRecorded)}}
	if !slices.Equal(got, want) {
		t.Errorf("consumer_errors = %+v, want %+v", got, want)
	}
	var errEvents int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM consumer_errors_events WHERE metadata = ?", name).Scan(&errEvents); err != nil {
		t.Fatal(err)
	}
	if errEvents < 1 {
		t.Errorf("%d error-recorded events, want at least 1", errEvents)
	}
}

// TestE2EParallelShards: n shards over one events table together consume
// every event exactly once per pass, resuming from their cursors.
func TestE2EParallelShards(t *testing.T) {
	db := dbtest.Open(t)
	rsqltest.CreateEventsTable(t, db, "shard_events")
	rsqltest.CreateCursorsTable(t, db, "cursors")
	events := rsql.NewEventsTable("shard_events")
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncDisabled())
	t.Cleanup(func() { cursors.Close() })
	store := cursors.ToStore(db)

	var mu sync.Mutex
	seen := make(map[string]int)
	fn := func(ctx context.Context, e *reflex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen[e.ID]++
		return nil
	}
	specs := rpatterns.ParallelSpecs("sharded", 4, events.ToStream(db), store, fn,
		rpatterns.WithStreamOpts(reflex.WithStreamToHead()))

	first := int64(1)
	for pass, n := range []int{600, 250} {
		fids := make([]string, n)
		for i := range fids {
			fids[i] = "f" + strconv.Itoa(i%37)
		}
		last := insertEvents(t, db, events, fids)

		var wg sync.WaitGroup
		for _, s := range specs {
			wg.Go(func() {
				if err := reflex.Run(t.Context(), s); !reflex.IsHeadReachedErr(err) {
					t.Errorf("pass %d: Run(%s) = %v, want ErrHeadReached", pass, s.Name(), err)
				}
			})
		}
		wg.Wait()

		mu.Lock()
		for id := first; id <= last; id++ {
			if c := seen[strconv.FormatInt(id, 10)]; c != 1 {
				t.Errorf("pass %d: event %d consumed %d times, want 1", pass, id, c)
			}
		}
		if len(seen) != int(last) {
			t.Errorf("pass %d: %d distinct events consumed, want %d", pass, len(seen), last)
		}
		mu.Unlock()
		for _, s := range specs {
			if c, _ := store.GetCursor(t.Context(), s.Name()); c != strconv.FormatInt(last, 10) {
				t.Errorf("pass %d: cursor of %s = %q, want %d", pass, s.Name(), c, last)
			}
		}
		first = last + 1
	}
}

// TestE2EKeyedOrder: the keyed consumer never reorders two events of the
// same foreign ID, over 10,000 events with random processing delays.
func TestE2EKeyedOrder(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 2_000
	}
	db := dbtest.Open(t)
	rsqltest.CreateEventsTable(t, db, "keyed_events")
	rsqltest.CreateCursorsTable(t, db, "cursors")
	events := rsql.NewEventsTable("keyed_events")
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncPeriod(50*time.Millisecond))
	t.Cleanup(func() { cursors.Close() })
	store := cursors.ToStore(db)

	fids := make([]string, n)
	for i := range fids {
		fids[i] = "user" + strconv.Itoa(rand.IntN(97))
	}
	last := insertEvents(t, db, events, fids)

	var mu sync.Mutex
	byFID := make(map[string][]int64)
	count := 0
	all := make(chan struct{})
	inner := reflex.NewConsumer("keyed_e2e", func(ctx context.Context, e *reflex.Event) error {
		// Simulated work of random length, so workers overtake each other.
		time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
		mu.Lock()
		defer mu.Unlock()
		byFID[e.ForeignID] = append(byFID[e.ForeignID], e.IDInt())
		if count++; count == n {
			close(all)
		}
		return nil
	})
	kc := rpatterns.NewKeyedConsumer(store, inner, 16)
	spec := rpatterns.NewKeyedSpec(events.ToStream(db), kc)

	ctx, cancel := context.WithCancel(t.Context())
	res := make(chan error, 1)
	go func() { res <- reflex.Run(ctx, spec) }()
	err := testguard.Poll(time.Minute, 10*time.Millisecond, "keyed consumption", func() (int64, bool, error) {
		select {
		case err := <-res:
			return 0, false, fmt.Errorf("Run = %v before all events were consumed", err)
		case <-all:
			return 0, true, nil
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		return int64(count), false, nil
	})
	if err != nil {
		t.Fatalf("%d events: %v", n, err)
	}
	cancel()
	<-res
	if err := spec.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := store.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	total := 0
	for fid, ids := range byFID {
		total += len(ids)
		if !slices.IsSorted(ids) {
			t.Errorf("events of %s processed out of order: %v", fid, ids)
		}
		if len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Errorf("events of %s processed more than once", fid)
		}
	}
	if total != n {
		t.Errorf("processed %d events, want %d", total, n)
	}
	if c, err := cursors.GetCursor(t.Context(), db, "keyed_e2e"); err != nil || c != strconv.FormatInt(last, 10) {
		t.Errorf("cursor = %q, %v; want %d", c, err, last)
	}
}
