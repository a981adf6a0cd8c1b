package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest"
)

// trimEnv is an events table with a cursor store holding an archiver's
// cursor, in one dialect.
type trimEnv struct {
	db      *sql.DB
	table   *rsql.EventsTable
	store   *rpatterns.MemCursors
	dialect rsql.Dialect
}

// trimDialects runs f once per dialect the trimmer supports.
func trimDialects(t *testing.T, f func(t *testing.T, env trimEnv)) {
	t.Run("mysql", func(t *testing.T) {
		db := dbtest.Open(t)
		f(t, trimEnv{db: db, table: newTable(t, db), store: rpatterns.MemCursorStore(), dialect: rsql.MySQL})
	})
	t.Run("postgres", func(t *testing.T) {
		db := postgres.openDB(t)
		f(t, trimEnv{db: db, table: newEngineTable(t, postgres, db), store: rpatterns.MemCursorStore(), dialect: rsql.PostgreSQL})
	})
	t.Run("sqlite", func(t *testing.T) {
		db := sqlitetest.Open(t)
		f(t, trimEnv{db: db, table: newSQLiteTable(t, db), store: rpatterns.MemCursorStore(), dialect: rsql.SQLite})
	})
}

func (e trimEnv) setArchived(t *testing.T, id int) {
	t.Helper()
	if err := e.store.SetCursor(t.Context(), "archiver", strconv.Itoa(id)); err != nil {
		t.Fatal(err)
	}
}

func (e trimEnv) trimmer(t *testing.T, retention time.Duration, opts ...rsql.TrimOption) *rsql.Trimmer {
	t.Helper()
	all := append([]rsql.TrimOption{rsql.WithTrimArchive(e.store, "archiver")}, opts...)
	tr, err := rsql.NewTrimmer(e.db, e.table, retention, all...)
	if err != nil {
		t.Fatalf("NewTrimmer: %v", err)
	}
	return tr
}

// rowIDs returns the IDs of the rows of the table.
func (e trimEnv) rowIDs(t *testing.T) []int64 {
	t.Helper()
	rows, err := e.db.QueryContext(t.Context(), "SELECT id FROM "+e.table.Name()+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantRows checks that the table holds the marker row through (if not 0)
// and the rows from..to.
func (e trimEnv) wantRows(t *testing.T, through, from, to int64) {
	t.Helper()
	var want []int64
	if through > 0 {
		want = append(want, through)
	}
	for id := from; id <= to; id++ {
		want = append(want, id)
	}
	if got := e.rowIDs(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}

func wantTrimmed(t *testing.T, err error, cursor, through int64) {
	t.Helper()
	te, ok := errors.AsType[*rsql.TrimmedError](err)
	if !ok || !errors.Is(err, rsql.ErrTrimmed) {
		t.Fatalf("error %v, want a *TrimmedError wrapping ErrTrimmed", err)
	}
	if te.Cursor != cursor || te.Through != through {
		t.Errorf("TrimmedError{Cursor: %d, Through: %d}, want {%d, %d}", te.Cursor, te.Through, cursor, through)
	}
}

// recvErr opens a to-head stream after after and returns its first error
// with the events before it.
func recvErr(t *testing.T, stream reflex.StreamFunc, after string, opts ...reflex.StreamOption) ([]*reflex.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	cl, err := stream(ctx, after, append(opts, reflex.WithStreamToHead())...)
	if err != nil {
		return nil, err
	}
	defer closeClient(cl)
	var out []*reflex.Event
	for {
		e, err := cl.Recv()
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

// TestTrimBelow trims in chunks up to an ID and then up to the archiver's
// cursor: the rows below the marker are deleted, the marker overwrites the
// last trimmed event, and streams below it fail with a *TrimmedError
// instead of waiting at a gap, in both dialects.
func TestTrimBelow(t *testing.T) {
	trimDialects(t, func(t *testing.T, env trimEnv) {
		ctx := t.Context()
		insertN(t, env.db, env.table, 1, 100)
		env.setArchived(t, 60)
		tr := env.trimmer(t, time.Hour, rsql.WithTrimChunk(7))

		if got, err := env.table.TrimmedThrough(ctx, env.db); got != 0 || err != nil {
			t.Fatalf("TrimmedThrough before trimming = %d, %v; want 0", got, err)
		}
		r, err := tr.TrimBelow(ctx, 51)
		if err != nil {
			t.Fatalf("TrimBelow(51): %v", err)
		}
		if r.Rows != 50 || r.Through != 50 || r.Oldest != 51 || r.Stop != rsql.TrimStopBelow || r.OldestTime.IsZero() {
			t.Errorf("TrimBelow(51) = %+v, want 50 rows through 50, oldest 51, stopped by below", r)
		}
		if r.Statements < 2*(50/7) || r.Longest <= 0 {
			t.Errorf("TrimBelow(51) ran %d statements (longest %v), want chunks of 7 rows", r.Statements, r.Longest)
		}
		env.wantRows(t, 50, 51, 100)
		if got, err := env.table.TrimmedThrough(ctx, env.db); got != 50 || err != nil {
			t.Errorf("TrimmedThrough = %d, %v; want 50", got, err)
		}

		// The archiver's cursor bounds the next pass.
		r, err = tr.TrimBelow(ctx, 1000)
		if err != nil {
			t.Fatalf("TrimBelow(1000): %v", err)
		}
		if r.Rows != 10 || r.Through != 60 || r.Oldest != 61 || r.Stop != rsql.TrimStopArchive {
			t.Errorf("TrimBelow(1000) = %+v, want 10 rows through 60, stopped by the archive", r)
		}
		env.wantRows(t, 60, 61, 100)

		stream := env.table.ToStream(env.db)
		for _, after := range []string{"", "30", "59"} {
			_, err := recvErr(t, stream, after)
			cur, _ := strconv.ParseInt(after, 10, 64)
			wantTrimmed(t, err, cur, 60)
		}
		got := drain(t, stream, "60")
		if !equal(ids(got), seq(61, 100)) {
			t.Errorf("events after 60: %v, want 61..100", ids(got))
		}
		// A stream with noops included, and one with lag, fail too.
		_, err = recvErr(t, env.table.Clone(rsql.WithIncludeNoopEvents()).ToStream(env.db), "10")
		wantTrimmed(t, err, 10, 60)
		_, err = recvErr(t, stream, "10", reflex.WithStreamLag(time.Millisecond))
		wantTrimmed(t, err, 10, 60)

		// Nothing more to trim: the pass stops at once, the marker stays.
		r, err = tr.TrimBelow(ctx, 1000)
		if err != nil || r.Rows != 0 || r.Through != 60 {
			t.Errorf("TrimBelow again = %+v, %v; want nothing trimmed, through 60", r, err)
		}
		// Head is unchanged by trimming.
		if h, err := env.table.Head(ctx, env.db); h != 100 || err != nil {
			t.Errorf("Head = %d, %v; want 100", h, err)
		}
	})
}

// TestTrimRetention trims only the events older than the retention, by the
// database's clock.
func TestTrimRetention(t *testing.T) {
	trimDialects(t, func(t *testing.T, env trimEnv) {
		ctx := t.Context()
		insertN(t, env.db, env.table, 1, 50)
		age := "UPDATE " + env.table.Name() + " SET timestamp = timestamp - INTERVAL '2' HOUR WHERE id <= 20"
		if env.dialect == rsql.SQLite {
			age = "UPDATE " + env.table.Name() + " SET timestamp = strftime('%Y-%m-%d %H:%M:%f', timestamp, '-2 hours') WHERE id <= 20"
		}
		if _, err := env.db.ExecContext(ctx, age); err != nil {
			t.Fatal(err)
		}
		env.setArchived(t, 50)
		tr := env.trimmer(t, time.Hour, rsql.WithTrimChunk(6))
		r, err := tr.Trim(ctx)
		if err != nil {
			t.Fatalf("Trim: %v", err)
		}
		if r.Rows != 20 || r.Through != 20 || r.Oldest != 21 || r.Stop != rsql.TrimStopRetention {
			t.Errorf("Trim = %+v, want 20 rows through 20, stopped by the retention", r)
		}
		if age := time.Since(r.OldestTime); age < 0 || age > time.Hour {
			t.Errorf("oldest retained event is %v old, want recent", age)
		}
		env.wantRows(t, 20, 21, 50)
	})
}

// TestTrimStopsAtGap: a pass never trims past a missing ID, here one that
// an open transaction holds.
func TestTrimStopsAtGap(t *testing.T) {
	forEngines(t, testTrimStopsAtGap)
}

func testTrimStopsAtGap(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	insertN(t, db, table, 1, 10)
	tx, id := openTx(t, db, table, "11")
	insertN(t, db, table, 12, 10)
	tr, err := rsql.NewTrimmer(db, table, time.Hour, rsql.WithTrimUnarchived())
	if err != nil {
		t.Fatal(err)
	}
	r, err := tr.TrimBelow(t.Context(), 100)
	if err != nil {
		t.Fatalf("TrimBelow: %v", err)
	}
	if r.Through != id-1 || r.Stop != rsql.TrimStopGap || r.Oldest != id+1 {
		t.Errorf("TrimBelow with %d uncommitted = %+v, want through %d, stopped at the gap", id, r, id-1)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if r, err := tr.TrimBelow(t.Context(), 100); err != nil || r.Through != 21 || r.Stop != rsql.TrimStopHead {
		t.Errorf("TrimBelow after the commit = %+v, %v; want through 21 (the head)", r, err)
	}
}

// TestTrimConsumers keeps what listed consumers have not consumed, and
// fails without their cursors.
func TestTrimConsumers(t *testing.T) {
	trimDialects(t, func(t *testing.T, env trimEnv) {
		ctx := t.Context()
		insertN(t, env.db, env.table, 1, 30)
		env.setArchived(t, 30)
		consumers := rpatterns.MemCursorStore()
		tr := env.trimmer(t, time.Hour, rsql.WithTrimConsumers(consumers, "a", "b"))
		_ = consumers.SetCursor(ctx, "a", "25")
		_, err := tr.TrimBelow(ctx, 100)
		if !errors.Is(err, rsql.ErrTrimNoCursor) || !strings.Contains(err.Error(), `"b"`) {
			t.Fatalf("TrimBelow without consumer b's cursor: %v, want ErrTrimNoCursor naming b", err)
		}
		env.wantRows(t, 0, 1, 30)
		_ = consumers.SetCursor(ctx, "b", "12")
		r, err := tr.TrimBelow(ctx, 100)
		if err != nil || r.Through != 12 || r.Stop != rsql.TrimStopConsumer {
			t.Errorf("TrimBelow = %+v, %v; want through 12, stopped by a consumer", r, err)
		}
		// Consumer b goes on reading the table.
		if got := drain(t, env.table.ToStream(env.db), "12"); !equal(ids(got), seq(13, 30)) {
			t.Errorf("consumer b reads %v, want 13..30", ids(got))
		}
	})
}

// TestTrimBadInput: invalid construction fails with a clear error, a
// missing archiver cursor fails each pass with ErrTrimNoCursor.
func TestTrimBadInput(t *testing.T) {
	forEngines(t, testTrimBadInput)
}

func testTrimBadInput(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	store := rpatterns.MemCursorStore()
	archive := rsql.WithTrimArchive(store, "archiver")
	for _, tc := range []struct {
		name      string
		db        *sql.DB
		table     *rsql.EventsTable
		retention time.Duration
		opts      []rsql.TrimOption
		want      string
		is        error
	}{
		{"nil db", nil, table, time.Hour, []rsql.TrimOption{archive}, "nil *sql.DB", nil},
		{"nil table", db, nil, time.Hour, []rsql.TrimOption{archive}, "nil *EventsTable", nil},
		{"zero retention", db, table, 0, []rsql.TrimOption{archive}, "retention 0s must be positive", nil},
		{"negative retention", db, table, -time.Second, []rsql.TrimOption{archive}, "retention -1s must be positive", nil},
		{"no archive", db, table, time.Hour, nil, "", rsql.ErrTrimNeedsArchive},
		{"nil option", db, table, time.Hour, []rsql.TrimOption{archive, nil}, "option 1 is nil", nil},
		{"nil archive store", db, table, time.Hour, []rsql.TrimOption{rsql.WithTrimArchive(nil, "a")}, "nil cursor store", nil},
		{"empty archiver", db, table, time.Hour, []rsql.TrimOption{rsql.WithTrimArchive(store, "")}, "empty archiver name", nil},
		{"both", db, table, time.Hour, []rsql.TrimOption{archive, rsql.WithTrimUnarchived()}, "exclude each other", nil},
		{"chunk", db, table, time.Hour, []rsql.TrimOption{archive, rsql.WithTrimChunk(0)}, "WithTrimChunk(0)", nil},
		{"interval", db, table, time.Hour, []rsql.TrimOption{archive, rsql.WithTrimInterval(-1)}, "WithTrimInterval(-1ns)", nil},
		{"no consumers", db, table, time.Hour, []rsql.TrimOption{archive, rsql.WithTrimConsumers(store)}, "no consumer names", nil},
		{"empty consumer", db, table, time.Hour, []rsql.TrimOption{archive, rsql.WithTrimConsumers(store, "a", "")}, "empty consumer name", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := rsql.NewTrimmer(tc.db, tc.table, tc.retention, tc.opts...)
			if err == nil || tr != nil {
				t.Fatalf("NewTrimmer = %v, %v; want an error", tr, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rsql: ") {
				t.Errorf("error %q, want it to name %q", err, tc.want)
			}
		})
	}

	insertN(t, db, table, 1, 5)
	tr, err := rsql.NewTrimmer(db, table, time.Hour, archive)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.TrimBelow(t.Context(), 0); err == nil || !strings.Contains(err.Error(), "TrimBelow(0)") {
		t.Errorf("TrimBelow(0) = %v, want an error", err)
	}
	if _, err := tr.MarkTrimmed(t.Context(), -1); err == nil {
		t.Error("MarkTrimmed(-1) succeeded")
	}
	_, err = tr.TrimBelow(t.Context(), 100)
	if !errors.Is(err, rsql.ErrTrimNoCursor) || !strings.Contains(err.Error(), `archiver "archiver" has no cursor`) {
		t.Errorf("TrimBelow without the archiver's cursor = %v, want ErrTrimNoCursor", err)
	}
	if err := tr.Run(t.Context()); !errors.Is(err, rsql.ErrTrimNoCursor) {
		t.Errorf("Run without the archiver's cursor = %v, want ErrTrimNoCursor", err)
	}
	_ = store.SetCursor(t.Context(), "archiver", "x"+strings.Repeat("9", 100))
	if _, err := tr.TrimBelow(t.Context(), 100); err == nil || !strings.Contains(err.Error(), "is not an event ID") || len(err.Error()) > 200 {
		t.Errorf("TrimBelow with a non-integer cursor = %v, want a bounded error", err)
	}
	unarchived, err := rsql.NewTrimmer(db, table, time.Hour, rsql.WithTrimUnarchived())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unarchived.MarkTrimmed(t.Context(), 3); err == nil {
		t.Error("MarkTrimmed without archive or consumers succeeded")
	}
	if got := len(trimEnv{db: db, table: table}.rowIDs(t)); got != 5 {
		t.Errorf("%d rows after the failed passes, want 5", got)
	}
}

// TestTrimGapFiller: the gap filler never fills trimmed IDs, and a stream
// tailing below the marker fails instead of waiting at a gap that the
// filler would fill.
func TestTrimGapFiller(t *testing.T) {
	trimDialects(t, func(t *testing.T, env trimEnv) {
		ctx := t.Context()
		if err := rsql.FillGaps(env.db, env.table); err != nil {
			t.Fatal(err)
		}
		stopGaps(t, env.table)
		insertN(t, env.db, env.table, 1, 40)
		env.setArchived(t, 40)

		// A stream waits at the head after 40 events... then the table
		// is trimmed under it.
		cl := openStream(t, env.table, env.db, "")
		for range 40 {
			recvWithin(t, cl)
		}
		slow := openStream(t, env.table, env.db, "10")
		for range 5 {
			recvWithin(t, slow)
		}
		tr := env.trimmer(t, time.Hour, rsql.WithTrimChunk(8))
		if _, err := tr.TrimBelow(ctx, 31); err != nil {
			t.Fatal(err)
		}
		insertN(t, env.db, env.table, 41, 1)
		if e := recvWithin(t, cl); e.ID != "41" {
			t.Errorf("the stream at the head got %s, want 41", e.ID)
		}
		// The slow stream (at 15, with up to 40 buffered or cached) reads
		// on until the events it needs are gone.
		var last string
		for {
			e, err := slow.Recv()
			if err != nil {
				if !errors.Is(err, rsql.ErrTrimmed) {
					t.Fatalf("slow stream after %s: %v, want ErrTrimmed", last, err)
				}
				break
			}
			last = e.ID
			if last == "41" {
				break // served from the cache or a batch read before the trim: no loss
			}
		}

		// The filler, given a gap across the marker, fills only above it.
		rsql.FillGap(ctx, env.table, env.db, rsql.Gap{Prev: 5, Next: 33})
		env.wantRows(t, 30, 31, 41)
	})
}

// TestMarkTrimmed moves the marker without deleting, as before dropping a
// partition.
func TestMarkTrimmed(t *testing.T) {
	trimDialects(t, func(t *testing.T, env trimEnv) {
		ctx := t.Context()
		insertN(t, env.db, env.table, 1, 30)
		env.setArchived(t, 25)
		tr := env.trimmer(t, time.Hour)
		r, err := tr.MarkTrimmed(ctx, 20)
		if err != nil || r.Through != 20 || r.Rows != 1 || r.Oldest != 21 || r.Stop != rsql.TrimStopBelow {
			t.Fatalf("MarkTrimmed(20) = %+v, %v; want the marker on 20", r, err)
		}
		env.wantRows(t, 0, 1, 30) // nothing deleted
		// Streams read the rows below the marker, then fail at it.
		got, err := recvErr(t, env.table.ToStream(env.db), "5")
		if !equal(ids(got), seq(6, 19)) {
			t.Errorf("events after 5: %v, want 6..19", ids(got))
		}
		wantTrimmed(t, err, 19, 20)
		if th, err := env.table.TrimmedThrough(ctx, env.db); th != 0 || err != nil {
			t.Errorf("TrimmedThrough with rows below the marker = %d, %v; want 0", th, err)
		}
		// The archive bounds the marker.
		if r, err := tr.MarkTrimmed(ctx, 26); err != nil || r.Through != 20 || r.Stop != rsql.TrimStopArchive {
			t.Errorf("MarkTrimmed(26) = %+v, %v; want the marker left on 20, stopped by the archive", r, err)
		}
		// "Drop the partition", leaving a stray row below the marker:
		// streams from below fail at once (they must not skip the
		// dropped IDs, nor take them for a gap).
		if _, err := env.db.ExecContext(ctx, "DELETE FROM "+env.table.Name()+" WHERE id < 20 AND id <> 12"); err != nil {
			t.Fatal(err)
		}
		uncached := env.table.Clone(rsql.WithoutEventsCache()) // the cache holds 6..19 read above
		t.Cleanup(func() { _ = uncached.Close() })
		for _, after := range []string{"", "5"} {
			got, err := recvErr(t, uncached.ToStream(env.db), after)
			cur, _ := strconv.ParseInt(after, 10, 64)
			if len(got) != 0 {
				t.Errorf("after %q: %v before the error, want none", after, ids(got))
			}
			wantTrimmed(t, err, cur, 20)
		}
		if _, err := env.db.ExecContext(ctx, "DELETE FROM "+env.table.Name()+" WHERE id = 12"); err != nil {
			t.Fatal(err)
		}
		if th, err := env.table.TrimmedThrough(ctx, env.db); th != 20 || err != nil {
			t.Errorf("TrimmedThrough = %d, %v; want 20", th, err)
		}
		if r, err := tr.MarkTrimmed(ctx, 25); err != nil || r.Through != 25 {
			t.Errorf("MarkTrimmed(25) = %+v, %v; want the marker on 25", r, err)
		}
	})
}

// TestTrimEventsTableInt trims a table with integer foreign IDs.
func TestTrimEventsTableInt(t *testing.T) {
	forEngines(t, testTrimEventsTableInt)
}

func testTrimEventsTableInt(t *testing.T, e engine) {
	db := e.openDB(t)
	name := fmt.Sprintf("events_%d", tableSeq.Add(1))
	ddl := "CREATE TABLE " + name + " (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, foreign_id BIGINT NOT NULL, timestamp DATETIME(6) NOT NULL, type INT NOT NULL)"
	if e.d == rsql.PostgreSQL {
		ddl = "CREATE TABLE " + name + " (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, foreign_id BIGINT NOT NULL, timestamp TIMESTAMPTZ NOT NULL, type INT NOT NULL)"
	}
	if _, err := db.ExecContext(t.Context(), ddl); err != nil {
		t.Fatal(err)
	}
	table := rsql.NewEventsTableInt(name, rsql.WithEventsDialect(e.d))
	t.Cleanup(func() { _ = table.Close() })
	for i := range 10 {
		if _, err := table.Insert(t.Context(), db, int64(100+i), testType(1)); err != nil {
			t.Fatal(err)
		}
	}
	store := rpatterns.MemCursorStore()
	_ = store.SetCursor(t.Context(), "archiver", "10")
	tr, err := rsql.NewTrimmer(db, table.EventsTable, time.Hour, rsql.WithTrimArchive(store, "archiver"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := tr.TrimBelow(t.Context(), 6); err != nil || r.Through != 5 {
		t.Fatalf("TrimBelow(6) = %+v, %v; want through 5", r, err)
	}
	if got := drain(t, table.ToStream(db), "5"); !equal(ids(got), seq(6, 10)) {
		t.Errorf("events after 5: %v", ids(got))
	}
}

// TestTrimRun runs passes until cancelled, and reports in metrics.
func TestTrimRun(t *testing.T) {
	forEngines(t, testTrimRun)
}

func testTrimRun(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	insertN(t, db, table, 1, 20)
	store := rpatterns.MemCursorStore()
	_ = store.SetCursor(t.Context(), "archiver", "12")
	// A nanosecond of retention: every committed row is old enough.
	tr, err := rsql.NewTrimmer(db, table, time.Nanosecond, rsql.WithTrimArchive(store, "archiver"), rsql.WithTrimInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.NewTrim(table.Name())
	rowsBefore, passesBefore := value(m.Rows), value(m.PassesOK)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	err = testguard.Poll(time.Minute, 5*time.Millisecond, "the first pass", func() (int64, bool, error) {
		return 0, value(m.PassesOK) > passesBefore, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(guard):
		t.Fatal("Run did not return after cancel")
	}
	if th, err := table.TrimmedThrough(t.Context(), db); th != 12 || err != nil {
		t.Errorf("TrimmedThrough after the first pass = %d, %v; want 12", th, err)
	}
	if got := value(m.Rows) - rowsBefore; got != 12 {
		t.Errorf("trimmed rows metric +%v, want +12", got)
	}
	if got := value(m.Through); got != 12 {
		t.Errorf("trimmed-through metric %v, want 12", got)
	}
	if got := value(m.OldestID); got != 13 {
		t.Errorf("oldest retained id metric %v, want 13", got)
	}
	if got := value(m.OldestTime); got < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("oldest retained timestamp metric %v, want recent", got)
	}
}

// TestTrimDuringFill: a trim that commits while the gap filler is between
// its check of a range and its INSERT must not make the filler write a
// noop below the trim marker: the table would then start with a noop
// instead of the marker (TrimmedThrough 0), and a stream below it would
// skip the trimmed events as if they were noops. The ID found absent
// commits, is archived and trimmed meanwhile: on the server engines, it
// was being written by an open transaction (writer); on every engine, it
// was burnt and another filler fills it first (filler).
func TestTrimDuringFill(t *testing.T) {
	t.Run("writer", func(t *testing.T) {
		forEngines(t, func(t *testing.T, e engine) {
			db := e.openDB(t)
			env := trimEnv{db: db, table: newEngineTable(t, e, db), store: rpatterns.MemCursorStore(), dialect: e.d}
			testTrimDuringFill(t, env, true)
		})
	})
	t.Run("filler", func(t *testing.T) {
		trimDialects(t, func(t *testing.T, env trimEnv) { testTrimDuringFill(t, env, false) })
	})
}

// testTrimDuringFill fills the gap at 11 of the events 1..20 while 11
// commits and 1..15 are trimmed: 11 is written by an open transaction
// (writer), or filled by another filler (it was burnt).
func testTrimDuringFill(t *testing.T, env trimEnv, writer bool) {
	ctx := t.Context()
	db, table := env.db, env.table
	defer rsql.SetGapConfirm(time.Millisecond)()
	insertN(t, db, table, 1, 10)
	var commit func() error
	if writer {
		tx, id := openTx(t, db, table, "11")
		if id != 11 {
			t.Fatalf("open transaction wrote %d, want 11", id)
		}
		insertN(t, db, table, 12, 9)
		commit = tx.Commit
	} else {
		insertN(t, db, table, 11, 10)
		if _, err := db.ExecContext(ctx, "DELETE FROM "+table.Name()+" WHERE id = 11"); err != nil {
			t.Fatal(err)
		}
		commit = func() error {
			rsql.FillGap(ctx, table, db, rsql.Gap{Prev: 10, Next: 12})
			return nil
		}
	}
	env.setArchived(t, 20)
	tr := env.trimmer(t, time.Hour)
	var (
		checks  int
		trimmed rsql.TrimResult
		hookErr error
	)
	rsql.SetFillCheckHook(func() {
		checks++
		if checks != 1 {
			return // the recheck, or the other filler's check
		}
		// The filler found 11 absent (or uncommitted): it commits and
		// is trimmed before the filler writes.
		if hookErr = commit(); hookErr == nil {
			trimmed, hookErr = tr.TrimBelow(ctx, 16)
		}
	})
	defer rsql.SetFillCheckHook(nil)
	rsql.FillGap(ctx, table, db, rsql.Gap{Prev: 10, Next: 12})
	if hookErr != nil || trimmed.Through != 15 {
		t.Fatalf("trim during the fill = %+v, %v; want through 15", trimmed, hookErr)
	}
	env.wantRows(t, 15, 16, 20)
	if th, err := table.TrimmedThrough(ctx, db); th != 15 || err != nil {
		t.Errorf("TrimmedThrough = %d, %v; want 15", th, err)
	}
	_, err := recvErr(t, table.ToStream(db), "10")
	wantTrimmed(t, err, 10, 15)
}

// TestFillBelowMarkTrimmed: the filler leaves an ID below a marker that
// MarkTrimmed put above rows it kept alone, and ends: with rows below the
// marker, TrimmedThrough is 0, so the filler goes on above the marker it
// found, not above TrimmedThrough.
func TestFillBelowMarkTrimmed(t *testing.T) {
	trimDialects(t, func(t *testing.T, env trimEnv) {
		insertN(t, env.db, env.table, 1, 20)
		if _, err := env.db.ExecContext(t.Context(), "DELETE FROM "+env.table.Name()+" WHERE id = 19"); err != nil {
			t.Fatal(err)
		}
		env.setArchived(t, 20)
		if r, err := env.trimmer(t, time.Hour).MarkTrimmed(t.Context(), 19); err != nil || r.Through != 20 {
			t.Fatalf("MarkTrimmed(19) = %+v, %v; want the marker on 20", r, err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), guard)
		defer cancel()
		rsql.FillGap(ctx, env.table, env.db, rsql.Gap{Prev: 18, Next: 20})
		if ctx.Err() != nil {
			t.Fatal("the filler did not end")
		}
		var want []int64
		for id := int64(1); id <= 20; id++ {
			if id != 19 {
				want = append(want, id)
			}
		}
		if got := env.rowIDs(t); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rows %v, want 1..18 and 20", got)
		}
	})
}
