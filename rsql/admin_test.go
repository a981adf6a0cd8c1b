package rsql_test

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/pgtest"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest"
)

// opsDB is a database of one dialect for the tests of the operators'
// functions.
type opsDB struct {
	name   string
	db     *sql.DB
	d      rsql.Dialect
	tables rsqltest.Tables
}

// engines returns a fresh MariaDB database, a fresh PostgreSQL one and
// a fresh SQLite one.
func engines(t *testing.T) []opsDB {
	return []opsDB{
		{"mysql", dbtest.Open(t), rsql.MySQL, rsqltest.Tables{Dialect: rsql.MySQL}},
		{"postgres", dbtest.OpenPG(t), rsql.PostgreSQL, pgtest.Tables},
		{"sqlite", sqlitetest.Open(t), rsql.SQLite, sqlitetest.Tables},
	}
}

// each runs f for each engine in a subtest.
func each(t *testing.T, f func(t *testing.T, e opsDB)) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) { f(t, e) })
	}
}

// dbTime is ts as the engine's driver takes it for a DATETIME column:
// SQLite gets the text that rsql's now() writes.
func (e opsDB) dbTime(ts time.Time) any {
	if e.d == rsql.SQLite {
		return ts.UTC().Format("2006-01-02 15:04:05.000")
	}
	return ts.UTC()
}

// seedEvents creates an events table and inserts one event per
// timestamp, with IDs 1, 2, ... (foreign ID "f<i>", type 1).
func (e opsDB) seedEvents(t *testing.T, times ...time.Time) *rsql.EventsTable {
	t.Helper()
	name := fmt.Sprintf("events_%d", tableSeq.Add(1))
	e.tables.CreateEventsTable(t, e.db, name)
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for i := 0; i < len(times); i += 500 {
		chunk := times[i:min(i+500, len(times))]
		q := "INSERT INTO " + name + " (foreign_id, timestamp, type) VALUES " + strings.Repeat("(?, ?, 1), ", len(chunk)-1) + "(?, ?, 1)"
		var args []any
		for j, ts := range chunk {
			args = append(args, fmt.Sprintf("f%d", i+j+1), e.dbTime(ts))
		}
		if _, err := tx.Exec(e.q(q), args...); err != nil {
			t.Fatalf("insert events %d-%d: %v", i+1, i+len(chunk), err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return rsql.NewEventsTable(name, rsql.WithEventsDialect(e.d))
}

// exec runs a statement, failing t.
func (e opsDB) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := e.db.Exec(e.q(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// q rewrites a query written with ? markers for e's dialect.
func (e opsDB) q(query string) string {
	if e.d != rsql.PostgreSQL {
		return query
	}
	return postgres.q(query)
}

var base = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

// minutes returns base + m minutes for each m.
func minutes(ms ...int) []time.Time {
	out := make([]time.Time, len(ms))
	for i, m := range ms {
		out[i] = base.Add(time.Duration(m) * time.Minute)
	}
	return out
}

func TestCursorAt(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		empty := e.seedEvents(t)
		if got, err := empty.CursorAt(ctx, e.db, base); err != nil || got != 0 {
			t.Errorf("CursorAt on an empty table = %d, %v; want 0", got, err)
		}
		// 100 events one minute apart, then IDs 101-150 deleted, then 50
		// more: the search must cross the hole.
		ms := make([]int, 200)
		for i := range ms {
			ms[i] = i
		}
		table := e.seedEvents(t, minutes(ms...)...)
		e.exec(t, "DELETE FROM "+table.Name()+" WHERE id > 100 AND id <= 150")
		for _, tc := range []struct {
			at   time.Time
			want int64
		}{
			{base.Add(-time.Hour), 0},          // before every event: from the first
			{base, 0},                          // at the first event
			{base.Add(30 * time.Second), 1},    // between events 1 and 2
			{base.Add(41 * time.Minute), 41},   // event 42 is at minute 41
			{base.Add(99 * time.Minute), 99},   // event 100
			{base.Add(120 * time.Minute), 100}, // in the deleted range: from event 151
			{base.Add(150 * time.Minute), 100}, // event 151 is the first after the hole
			{base.Add(199 * time.Minute), 199}, // the last event
			{base.Add(200 * time.Minute), 200}, // after every event: the head
			{base.Add(199*time.Minute + time.Second), 200},
		} {
			if got, err := table.CursorAt(ctx, e.db, tc.at); err != nil || got != tc.want {
				t.Errorf("CursorAt(%s) = %d, %v; want %d", tc.at.Format(time.TimeOnly), got, err, tc.want)
			}
		}
	})
}

func TestNextEventsAndCount(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		table := e.seedEvents(t, minutes(0, 1, 2, 3, 4, 5)...)
		e.exec(t, "DELETE FROM "+table.Name()+" WHERE id = 3")
		got, err := table.NextEvents(ctx, e.db, []int64{0, 2, 2, 5, 6, 100})
		if err != nil {
			t.Fatal(err)
		}
		want := []rsql.EventTime{{1, base}, {4, base.Add(3 * time.Minute)}, {4, base.Add(3 * time.Minute)},
			{6, base.Add(5 * time.Minute)}, {}, {}}
		for i := range want {
			if got[i].ID != want[i].ID || !got[i].Timestamp.Equal(want[i].Timestamp) {
				t.Errorf("NextEvents[%d] = %+v, want %+v", i, got[i], want[i])
			}
		}
		// More cursors than one statement holds.
		many := make([]int64, 1200)
		for i := range many {
			many[i] = int64(i % 7)
		}
		got, err = table.NextEvents(ctx, e.db, many)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range many {
			wantID := map[int64]int64{0: 1, 1: 2, 2: 4, 3: 4, 4: 5, 5: 6, 6: 0}[c]
			if got[i].ID != wantID {
				t.Fatalf("NextEvents(%d) = %d, want %d", c, got[i].ID, wantID)
			}
		}
		for _, tc := range []struct{ after, upTo, want int64 }{{0, 6, 5}, {2, 4, 1}, {4, 2, 0}, {6, 100, 0}} {
			if n, err := table.CountEvents(ctx, e.db, tc.after, tc.upTo); err != nil || n != tc.want {
				t.Errorf("CountEvents(%d, %d) = %d, %v; want %d", tc.after, tc.upTo, n, err, tc.want)
			}
		}
	})
}

func TestOpenGaps(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		table := e.seedEvents(t, minutes(0, 1, 2, 3, 4, 5, 6, 7)...)
		e.exec(t, "DELETE FROM "+table.Name()+" WHERE id IN (3, 5, 6)")
		gaps, err := table.OpenGaps(ctx, e.db, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprint(gaps)
		want := fmt.Sprint([]rsql.OpenGap{
			{Gap: rsql.Gap{Prev: 2, Next: 4}, NextTime: base.Add(3 * time.Minute)},
			{Gap: rsql.Gap{Prev: 4, Next: 7}, NextTime: base.Add(6 * time.Minute)},
		})
		if got != want {
			t.Errorf("OpenGaps = %s\nwant %s", got, want)
		}
		if gaps[1].Missing() != 2 {
			t.Errorf("Missing = %d, want 2", gaps[1].Missing())
		}
		if gaps, err := table.OpenGaps(ctx, e.db, 4, 1); err != nil || len(gaps) != 1 || gaps[0].Prev != 4 {
			t.Errorf("OpenGaps(from 4, limit 1) = %v, %v; want the gap after 4", gaps, err)
		}
	})
}

// TestOpenGapsInFlight holds a transaction that wrote an event while a
// later one commits: the gap is in flight, then missing once rolled back.
func TestOpenGapsInFlight(t *testing.T) {
	db := dbtest.Open(t)
	ctx := t.Context()
	table := newTable(t, db)
	insertN(t, db, table, 1, 2)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := table.Insert(ctx, tx, "held", testType(1)); err != nil {
		t.Fatal(err)
	}
	insertN(t, db, table, 4, 1)
	gaps, err := table.OpenGaps(ctx, db, 0, 0)
	if err != nil || len(gaps) != 1 || gaps[0].Prev != 2 || gaps[0].Next != 4 || gaps[0].InFlight != 1 {
		t.Fatalf("OpenGaps with a held transaction = %+v, %v; want 2..4 with 1 in flight", gaps, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	gaps, err = table.OpenGaps(ctx, db, 0, 0)
	if err != nil || len(gaps) != 1 || gaps[0].InFlight != 0 {
		t.Fatalf("OpenGaps after the rollback = %+v, %v; want 2..4, none in flight", gaps, err)
	}
}

func TestListCursorsAndLeases(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		e.tables.CreateCursorsTable(t, e.db, "cursors")
		cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(e.d), rsql.WithCursorAsyncDisabled())
		for name, c := range map[string]string{"b": "7", "a": "3", "c": "0"} {
			if err := cursors.SetCursor(ctx, e.db, name, c); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := cursors.ListCursors(ctx, e.db)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			if r.UpdatedAt.IsZero() {
				t.Errorf("row %s has no update time", r.Consumer)
			}
			got = append(got, r.Consumer+"="+r.Cursor)
		}
		if fmt.Sprint(got) != "[a=3 b=7 c=0]" {
			t.Errorf("ListCursors = %v", got)
		}
		if rows, err := cursors.ListCursors(ctx, e.db, "c", "zz", "a"); err != nil || len(rows) != 2 || rows[0].Consumer != "a" {
			t.Errorf("ListCursors(c, zz, a) = %v, %v", rows, err)
		}
		if err := rsql.NewCursorsTable("nope", rsql.WithCursorsDialect(e.d)).CheckSchema(ctx, e.db); !errors.Is(err, rsql.ErrSchema) {
			t.Errorf("CheckSchema of a missing table = %v, want ErrSchema", err)
		}

		createLeases(t, e)
		lt := rsql.NewLeasesTable("leases", rsql.WithLeasesDialect(e.d))
		store := lt.ToStore(e.db)
		for _, l := range []rpatterns.Lease{{Name: "a", Shard: 0, Shards: 1, Owner: "p1"}, {Name: "s", Shard: 1, Shards: 4, Owner: "p2"},
			{Name: "s", Shard: -1, Shards: 4, Owner: "p2"}, {Name: "gone", Shard: 0, Shards: 1, Owner: "p3"}} {
			if _, err := store.ClaimLease(ctx, l, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := store.ReleaseLeases(ctx, []rpatterns.Lease{{Name: "gone", Shard: 0, Shards: 1, Owner: "p3", Epoch: 1}}); err != nil {
			t.Fatal(err)
		}
		leases, err := lt.ListLeases(ctx, e.db)
		if err != nil || len(leases) != 4 {
			t.Fatalf("ListLeases = %v, %v; want 4 leases", leases, err)
		}
		for name, want := range map[string]string{"a": "p1", "s_2_of_4": "p2", "s_1_of_4": "", "s_2_of_5": "", "gone": "", "b": "", "s": ""} {
			l, ok := rsql.RunningLease(name, leases)
			if ok != (want != "") || l.Owner != want {
				t.Errorf("RunningLease(%q) = %+v, %v; want owner %q", name, l, ok, want)
			}
		}
	})
}

// createLeases creates the table "leases".
func createLeases(t *testing.T, e opsDB) {
	t.Helper()
	e.exec(t, rsql.LeasesSchema(e.d, "leases"))
}

// moveFixture is a cursors table with consumer "c" at 5, an audit table
// and a leases table.
type moveFixture struct {
	opsDB
	cursors *rsql.CursorsTable
	audit   *rsql.CursorAuditTable
	leases  *rsql.LeasesTable
}

func newMoveFixture(t *testing.T, e opsDB) *moveFixture {
	t.Helper()
	e.tables.CreateCursorsTable(t, e.db, "cursors")
	e.exec(t, rsql.CursorAuditSchema(e.d, "cursor_audit"))
	createLeases(t, e)
	f := &moveFixture{opsDB: e,
		cursors: rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(e.d), rsql.WithCursorAsyncDisabled()),
		audit:   rsql.NewCursorAuditTable("cursor_audit", rsql.WithCursorAuditDialect(e.d)),
		leases:  rsql.NewLeasesTable("leases", rsql.WithLeasesDialect(e.d)),
	}
	if err := f.cursors.SetCursor(t.Context(), e.db, "c", "5"); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *moveFixture) cursor(t *testing.T) string {
	t.Helper()
	rows, err := f.cursors.ListCursors(t.Context(), f.db, "c")
	if err != nil || len(rows) != 1 {
		t.Fatalf("ListCursors = %v, %v", rows, err)
	}
	return rows[0].Cursor
}

func (f *moveFixture) moves(t *testing.T) []rsql.CursorAudit {
	t.Helper()
	moves, err := f.audit.List(t.Context(), f.db, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return moves
}

func TestMoveCursor(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		f := newMoveFixture(t, e)
		rec, err := f.audit.MoveCursor(ctx, e.db, f.cursors, f.leases, rsql.CursorMove{Consumer: "c", From: "5", To: "2", Reason: "alice: replay"})
		if err != nil {
			t.Fatal(err)
		}
		if rec.ID == 0 || rec.Consumer != "c" || rec.From != "5" || rec.To != "2" || rec.Reason != "alice: replay" || rec.Forced || rec.CreatedAt.IsZero() {
			t.Errorf("audit row = %+v", rec)
		}
		if got := f.cursor(t); got != "2" {
			t.Errorf("cursor after the move = %s, want 2", got)
		}
		// Forward, then the stale From of the first move is refused.
		if _, err := f.audit.MoveCursor(ctx, e.db, f.cursors, nil, rsql.CursorMove{Consumer: "c", From: "2", To: "9", Reason: "bob"}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			m    rsql.CursorMove
			want error
		}{
			{"moved meanwhile", rsql.CursorMove{Consumer: "c", From: "5", To: "1", Reason: "x"}, rsql.ErrCursorChanged},
			{"unknown consumer", rsql.CursorMove{Consumer: "nobody", From: "5", To: "1", Reason: "x"}, rsql.ErrCursorNotFound},
			{"no reason", rsql.CursorMove{Consumer: "c", From: "9", To: "1"}, rsql.ErrInvalidValue},
			{"bad cursor", rsql.CursorMove{Consumer: "c", From: "9", To: "-1", Reason: "x"}, rsql.ErrInvalidCursor},
			{"long reason", rsql.CursorMove{Consumer: "c", From: "9", To: "1", Reason: strings.Repeat("r", 2000)}, nil},
		} {
			_, err := f.audit.MoveCursor(ctx, e.db, f.cursors, f.leases, tc.m)
			if tc.want == nil {
				// SQLite holds any text; MySQL's column holds 1024 characters.
				if e.d == rsql.MySQL && !errors.Is(err, rsql.ErrInvalidValue) {
					t.Errorf("%s: MoveCursor = %v, want ErrInvalidValue", tc.name, err)
				}
				if e.d == rsql.SQLite && err != nil {
					t.Errorf("%s: MoveCursor = %v", tc.name, err)
				}
				continue
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: MoveCursor = %v, want %v", tc.name, err, tc.want)
			}
		}
		moves := f.moves(t)
		want := 2
		if e.d == rsql.SQLite {
			want = 3 // the long reason
		}
		if len(moves) != want || moves[len(moves)-1].To != "2" || moves[len(moves)-2].To != "9" {
			t.Errorf("audit rows = %+v, want %d (newest first)", moves, want)
		}
	})
}

func TestMoveCursorRefusedWhileLeased(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		f := newMoveFixture(t, e)
		store := f.leases.ToStore(e.db)
		l, err := store.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shards: 1, Owner: "host-1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		m := rsql.CursorMove{Consumer: "c", From: "5", To: "1", Reason: "alice"}
		if _, err := f.audit.MoveCursor(ctx, e.db, f.cursors, f.leases, m); !errors.Is(err, rsql.ErrConsumerRunning) || !strings.Contains(err.Error(), "host-1") {
			t.Fatalf("MoveCursor of a leased consumer = %v, want ErrConsumerRunning naming host-1", err)
		}
		if got, moves := f.cursor(t), f.moves(t); got != "5" || len(moves) != 0 {
			t.Fatalf("after a refused move: cursor %s, %d audit rows; want 5 and none", got, len(moves))
		}
		m.Force = true
		rec, err := f.audit.MoveCursor(ctx, e.db, f.cursors, f.leases, m)
		if err != nil || !rec.Forced {
			t.Fatalf("forced MoveCursor = %+v, %v", rec, err)
		}
		// Released: not running.
		if err := store.ReleaseLeases(ctx, []rpatterns.Lease{l}); err != nil {
			t.Fatal(err)
		}
		m = rsql.CursorMove{Consumer: "c", From: "1", To: "3", Reason: "alice"}
		if _, err := f.audit.MoveCursor(ctx, e.db, f.cursors, f.leases, m); err != nil {
			t.Fatalf("MoveCursor after the release = %v", err)
		}
	})
}

// TestMoveCursorLocksLeases checks (MySQL) that a move locks the lease
// rows it read until it commits: a claim made meanwhile waits for it, so
// a consumer cannot start between the check and the move. The claim
// during the move runs in a session whose lock wait timeout is 1 s: it
// must fail with a lock wait timeout (it waited for the move's lock), and
// a claim after the move must succeed.
func TestMoveCursorLocksLeases(t *testing.T) {
	db, dsn := dbtest.OpenDSN(t)
	e := opsDB{"mysql", db, rsql.MySQL, rsqltest.Tables{}}
	f := newMoveFixture(t, e)
	ctx := t.Context()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Params["innodb_lock_wait_timeout"] = "1"
	impatient, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { impatient.Close() })

	store := f.leases.ToStore(db)
	l, err := store.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shards: 1, Owner: "old"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ReleaseLeases(ctx, []rpatterns.Lease{l}); err != nil {
		t.Fatal(err)
	}
	next := rpatterns.Lease{Name: "c", Shards: 1, Owner: "new", Epoch: l.Epoch}
	hooked := false
	rsql.SetMoveHook(func() {
		// Inside the move's transaction, after its lease check.
		hooked = true
		_, err := f.leases.ToStore(impatient).ClaimLease(ctx, next, time.Hour)
		if me, ok := errors.AsType[*mysql.MySQLError](err); !ok || me.Number != 1205 {
			t.Errorf("claim during the move = %v; want it to wait for the move's lock (error 1205 after 1 s)", err)
		}
	})
	t.Cleanup(func() { rsql.SetMoveHook(nil) })
	if _, err := f.audit.MoveCursor(ctx, db, f.cursors, f.leases, rsql.CursorMove{Consumer: "c", From: "5", To: "1", Reason: "alice"}); err != nil {
		t.Fatalf("MoveCursor = %v", err)
	}
	if !hooked {
		t.Fatal("the move hook did not run")
	}
	if _, err := store.ClaimLease(ctx, next, time.Hour); err != nil {
		t.Fatalf("claim after the move = %v", err)
	}
}

func TestCursorAuditSchemaFile(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ddl := rsql.CursorAuditSchema(e.d, "moves")
		if strings.Contains(ddl, "cursor_audit") || !strings.Contains(ddl, "moves") {
			t.Errorf("schema still names the default table:\n%s", ddl)
		}
		e.exec(t, ddl)
		e.exec(t, ddl) // idempotent
		if err := rsql.NewCursorAuditTable("moves", rsql.WithCursorAuditDialect(e.d)).CheckSchema(t.Context(), e.db); err != nil {
			t.Errorf("CheckSchema = %v", err)
		}
	})
}
