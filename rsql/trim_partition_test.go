package rsql_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// TestTrimPartitioned follows the procedure of the shipped partitioned
// schema file of each server engine: the file applies (twice: it is
// idempotent), events cross the first partition bound, MarkTrimmed puts
// the marker on the first ID of the partition kept, and dropping the
// oldest partition (MySQL DROP PARTITION; PostgreSQL DETACH ...
// CONCURRENTLY, then DROP TABLE) leaves a table that streams below the
// marker fail on with ErrTrimmed, and that streams from the marker read.
func TestTrimPartitioned(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		ctx := t.Context()
		db := e.openDB(t)
		dir, restart, drop := "mysql", []string{"ALTER TABLE `events` AUTO_INCREMENT = 9999991"},
			[]string{"ALTER TABLE `events` DROP PARTITION p0"}
		if e.d == rsql.PostgreSQL {
			dir, restart = "postgres", []string{"ALTER TABLE events ALTER COLUMN id RESTART WITH 9999991"}
			// CONCURRENTLY runs outside a transaction: one statement per
			// Exec.
			drop = []string{"ALTER TABLE events DETACH PARTITION events_p0 CONCURRENTLY", "DROP TABLE events_p0"}
		}
		b, err := os.ReadFile("schema/" + dir + "/events_partitioned.sql")
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := db.ExecContext(ctx, string(b)); err != nil {
				t.Fatalf("%s/events_partitioned.sql: %v", dir, err)
			}
		}
		for _, q := range restart {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		table := rsql.NewEventsTable("events", rsql.WithEventsDialect(e.d),
			rsql.WithEventMetadataField("metadata"), rsql.WithEventTraceField("trace"))
		t.Cleanup(func() { _ = table.Close() })
		if err := rsql.FillGaps(db, table); err != nil {
			t.Fatal(err)
		}
		stopGaps(t, table)
		const (
			first = 9999991  // the first event, in p0
			bound = 10000000 // the first ID of p1
			last  = 10000010
		)
		insertN(t, db, table, 1, last-first+1)
		if h, err := table.Head(ctx, db); h != last || err != nil {
			t.Fatalf("Head = %d, %v; want %d", h, err, last)
		}

		store := rpatterns.MemCursorStore()
		_ = store.SetCursor(ctx, "archiver", strconv.Itoa(bound+5))
		tr, err := rsql.NewTrimmer(db, table, time.Hour, rsql.WithTrimArchive(store, "archiver"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := tr.MarkTrimmed(ctx, bound)
		if err != nil || r.Through < bound || r.Through >= 2*bound {
			t.Fatalf("MarkTrimmed(%d) = %+v, %v; want the marker in p1", bound, r, err)
		}
		if r.Through != bound || r.Oldest != bound+1 {
			t.Errorf("MarkTrimmed(%d) = %+v, want through %d", bound, r, bound)
		}
		// Before the drop: the rows of p0 are read, then the marker stops
		// the stream.
		got, err := recvErr(t, table.ToStream(db), strconv.Itoa(first-1))
		if !equal(ids(got), seq(first, bound-1)) {
			t.Errorf("events before the drop: %v, want %d..%d", ids(got), first, bound-1)
		}
		wantTrimmed(t, err, bound-1, bound)

		for _, q := range drop {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if th, err := table.TrimmedThrough(ctx, db); th != bound || err != nil {
			t.Errorf("TrimmedThrough after the drop = %d, %v; want %d", th, err, bound)
		}
		uncached := table.Clone(rsql.WithoutEventsCache())
		t.Cleanup(func() { _ = uncached.Close() })
		for _, after := range []int64{0, first + 3} {
			_, err := recvErr(t, uncached.ToStream(db), strconv.FormatInt(after, 10))
			wantTrimmed(t, err, after, bound)
		}
		insertN(t, db, table, 1, 1)
		if got := drain(t, uncached.ToStream(db), strconv.Itoa(bound)); !equal(ids(got), seq(bound+1, last+1)) {
			t.Errorf("events after the marker: %v, want %d..%d", ids(got), bound+1, last+1)
		}
		// The filler, given a gap across the dropped partition, fills
		// nothing.
		rsql.FillGap(ctx, table, db, rsql.Gap{Prev: first, Next: bound + 1})
		if th, err := table.TrimmedThrough(ctx, db); th != bound || err != nil {
			t.Errorf("TrimmedThrough after a fill = %d, %v; want %d", th, err, bound)
		}
	})
}
