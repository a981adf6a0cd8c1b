package rsqltest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/pgtest"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest"
)

func databases(t *testing.T) map[string]*sql.DB {
	return map[string]*sql.DB{"mysql": dbtest.Open(t), "postgres": pgtest.Open(t, dbtest.PGURI(t)), "sqlite": sqlitetest.Open(t)}
}

func dialect(name string) rsql.Dialect {
	switch name {
	case "sqlite":
		return rsql.SQLite
	case "postgres":
		return rsql.PostgreSQL
	}
	return rsql.MySQL
}

func TestSchemaChecksPass(t *testing.T) {
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			d := dialect(name)
			tables := rsqltest.Tables{Dialect: d}
			tables.CreateEventsTable(t, db, "events")
			tables.CreateEventsTable(t, db, "int_events")
			tables.CreateEventsTable(t, db, "id_events")
			tables.CreateCursorsTable(t, db, "cursors")
			rsqltest.TestEventsTable(t, db, rsql.NewEventsTable("events", rsql.WithEventsDialect(d)))
			rsqltest.TestEventsTableInt(t, db, rsql.NewEventsTableInt("int_events", rsql.WithEventsDialect(d)))
			rsqltest.TestEventsTableWithID(t, db, rsql.NewEventsTable("id_events", rsql.WithEventsDialect(d)), "user-7")
			rsqltest.TestCursorsTable(t, db, rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(d), rsql.WithCursorAsyncDisabled()))

			id, err := rsqltest.GetLatestIDForTesting(context.Background(), t, db, "events", "id")
			if err != nil || id != 3 {
				t.Errorf("GetLatestIDForTesting = %d, %v; want 3", id, err)
			}
			evs, err := rsqltest.GetNextEventsForTesting(context.Background(), t, db, rsql.NewEventsTable("events", rsql.WithEventsDialect(d)), 1, 0)
			if err != nil || len(evs) != 2 || evs[0].ID != "2" {
				t.Errorf("GetNextEventsForTesting after 1 = %v, %v; want events 2 and 3", evs, err)
			}
			if _, err := rsqltest.GetLatestIDForTesting(context.Background(), t, db, "events; DROP TABLE x", "id"); err == nil {
				t.Error("GetLatestIDForTesting accepted an invalid table name")
			}
		})
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// run calls check with a recorder on its own goroutine (Fatalf exits it)
// and returns the recorded failures.
func run(t *testing.T, check func(tb testing.TB)) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	return r.failed
}

func TestSchemaChecksFail(t *testing.T) {
	db := dbtest.Open(t)
	// A table whose type column does not exist.
	if _, err := db.Exec("CREATE TABLE bad_events (id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, foreign_id varchar(255) NOT NULL, timestamp datetime(6) NOT NULL, kind int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if f := run(t, func(tb testing.TB) { rsqltest.TestEventsTable(tb, db, rsql.NewEventsTable("bad_events")) }); len(f) == 0 {
		t.Error("TestEventsTable passed a table without a type column")
	}
	// A cursors table that already holds the checked cursor.
	rsqltest.CreateCursorsTable(t, db, "cursors")
	ct := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncDisabled())
	if err := ct.SetCursor(context.Background(), db, "rsqltest", "20"); err != nil {
		t.Fatal(err)
	}
	if f := run(t, func(tb testing.TB) { rsqltest.TestCursorsTable(tb, db, ct) }); len(f) == 0 {
		t.Error("TestCursorsTable passed a table with an existing cursor")
	}
}

type evType int

func (t evType) ReflexType() int { return int(t) }

// insertN inserts n events with foreign IDs "1".."n".
func insertN(t *testing.T, db *sql.DB, table *rsql.EventsTable, n int) {
	t.Helper()
	evs := make([]rsql.EventToInsert, n)
	for i := range evs {
		evs[i] = rsql.EventToInsert{ForeignID: fmt.Sprint(i + 1), Type: evType(1)}
	}
	if _, err := table.InsertMany(t.Context(), db, evs); err != nil {
		t.Fatal(err)
	}
}

// TestGetNextEventsOneQuery: GetNextEventsForTesting is one query bounded
// by the table's lookup limit, past gaps and noops, whatever the table's
// cache holds.
func TestGetNextEventsOneQuery(t *testing.T) {
	db := dbtest.Open(t)
	rsqltest.CreateEventsTable(t, db, "events")
	table := rsql.NewEventsTable("events", rsql.WithEventLookupLimit(10))
	insertN(t, db, table, 1000)
	if _, err := db.Exec("DELETE FROM events WHERE id = 3"); err != nil {
		t.Fatal(err)
	}
	got, err := rsqltest.GetNextEventsForTesting(t.Context(), t, db, table, 0, 0)
	if err != nil || len(got) != 10 || got[0].ID != "1" || got[2].ID != "4" || got[9].ID != "11" {
		t.Fatalf("GetNextEventsForTesting = %d events (%v), want 10: 1, 2, 4..11", len(got), err)
	}
	got, err = rsqltest.GetNextEventsForTesting(t.Context(), t, db, table, 995, 0)
	if err != nil || len(got) != 5 || got[0].ID != "996" {
		t.Fatalf("GetNextEventsForTesting after 995 = %d events (%v), want 996..1000", len(got), err)
	}
	if got, err := rsqltest.GetNextEventsForTesting(t.Context(), t, db, table, 0, time.Hour); err != nil || len(got) != 0 {
		t.Fatalf("GetNextEventsForTesting with a lag of an hour = %d events (%v), want none", len(got), err)
	}
	if id, err := rsqltest.GetLatestIDForTesting(t.Context(), t, db, "events", "id"); err != nil || id != 1000 {
		t.Fatalf("GetLatestIDForTesting = %d, %v; want 1000", id, err)
	}
	rsqltest.CreateEventsTable(t, db, "empty")
	if id, err := rsqltest.GetLatestIDForTesting(t.Context(), t, db, "empty", "id"); err != nil || id != 0 {
		t.Fatalf("GetLatestIDForTesting of an empty table = %d, %v; want 0", id, err)
	}
}

// TestGetNextEventsAsLoader: a table's loader may call
// GetNextEventsForTesting with the table itself (as luno/reflex's lag
// tests do), without recursing into or waiting for the table's streams.
func TestGetNextEventsAsLoader(t *testing.T) {
	db := dbtest.Open(t)
	rsqltest.CreateEventsTable(t, db, "events")
	var (
		table *rsql.EventsTable
		calls int
	)
	loader := func(ctx context.Context, dbc *sql.DB, prev int64, lag time.Duration) ([]*reflex.Event, error) {
		calls++
		return rsqltest.GetNextEventsForTesting(ctx, t, dbc, table, prev, lag)
	}
	table = rsql.NewEventsTable("events", rsql.WithEventsLoader(loader), rsql.WithEventLookupLimit(7))
	insertN(t, db, table, 20)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // hang guard
	defer cancel()
	cl, err := table.ToStream(db, reflex.WithStreamToHead())(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(interface{ Close() error }).Close()
	var n int
	for {
		e, err := cl.Recv()
		if errors.Is(err, reflex.ErrHeadReached) {
			break
		}
		if err != nil {
			t.Fatalf("Recv after %d events: %v", n, err)
		}
		if n++; e.ID != fmt.Sprint(n) {
			t.Fatalf("event %d has ID %s", n, e.ID)
		}
	}
	if n != 20 || calls < 3 {
		t.Fatalf("streamed %d events with %d loads, want 20 in batches of at most 7", n, calls)
	}
}

// TestTablesDialect: Tables takes the dialect as a parameter (whatever
// the driver, for instance a wrapped one), its zero value is MySQL, and
// the package-level functions are MySQL's.
func TestTablesDialect(t *testing.T) {
	if (rsqltest.Tables{}).Dialect.String() != "mysql" {
		t.Error("the zero Tables is not MySQL")
	}
	db := sqlitetest.Open(t)
	sqlitetest.Tables.CreateEventsTable(t, db, "events")
	rsqltest.Tables{Dialect: rsql.SQLite}.CreateErrorsTables(t, db)
	if f := run(t, func(tb testing.TB) { rsqltest.CreateErrorsTables(tb, db) }); len(f) == 0 {
		t.Error("CreateErrorsTables ran MySQL's DDL on SQLite without error: the dialect was guessed from the driver")
	}
	// A database of the deprecated OpenSQLite keeps its SQLite dialect.
	old := rsqltest.OpenSQLite(t)
	rsqltest.CreateErrorsTables(t, old)
	rsqltest.CreateStringCursorsTable(t, old, "string_cursors")
}

// TestNoSQLiteDriver: rsqltest does not link the SQLite driver; sqlitetest
// does.
func TestNoSQLiteDriver(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	for pkg, want := range map[string]bool{
		"github.com/seed-e488ba2e/reflex/rsql/rsqltest":            false,
		"github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest": true,
	} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		if got := strings.Contains(string(out), "modernc.org/sqlite\n"); got != want {
			t.Errorf("%s links modernc.org/sqlite: %v, want %v", pkg, got, want)
		}
	}
}
