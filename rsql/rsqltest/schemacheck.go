package rsqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// These helpers check a service's own schema against rsql, as
// luno/reflex's rsql.TestEventsTable and friends do; they live here so that
// rsql never imports testing. Switching from luno/reflex means calling
// rsqltest.TestEventsTable instead of rsql.TestEventsTable.

type checkType int

func (t checkType) ReflexType() int { return int(t) }

// TestEventsTable inserts three events (types 1, 2 and 3, foreign ID
// "fid") in one transaction and checks that they stream from the start of
// table, in order, with their types and foreign ID. The table must be
// empty. It fails t on any error.
func TestEventsTable(t testing.TB, dbc *sql.DB, table *rsql.EventsTable) {
	t.Helper()
	TestEventsTableWithID(t, dbc, table, "fid")
}

// TestEventsTableInt is TestEventsTable for an int foreign-ID table
// (foreign ID 9999).
func TestEventsTableInt(t testing.TB, dbc *sql.DB, table *rsql.EventsTableInt) {
	t.Helper()
	ctx := context.Background()
	tx, err := dbc.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("rsqltest: begin: %v", err)
	}
	defer tx.Rollback()
	for typ := 1; typ <= 3; typ++ {
		if _, err := table.Insert(ctx, tx, 9999, checkType(typ)); err != nil {
			t.Fatalf("rsqltest: insert event of type %d into %s: %v", typ, table.Name(), err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("rsqltest: commit: %v", err)
	}
	checkThree(t, dbc, table.EventsTable, "9999")
}

// TestEventsTableWithID is TestEventsTable with the given foreign ID.
func TestEventsTableWithID(t testing.TB, dbc *sql.DB, table *rsql.EventsTable, foreignID string) {
	t.Helper()
	ctx := context.Background()
	tx, err := dbc.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("rsqltest: begin: %v", err)
	}
	defer tx.Rollback()
	for typ := 1; typ <= 3; typ++ {
		if _, err := table.Insert(ctx, tx, foreignID, checkType(typ)); err != nil {
			t.Fatalf("rsqltest: insert event of type %d into %s: %v", typ, table.Name(), err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("rsqltest: commit: %v", err)
	}
	checkThree(t, dbc, table, foreignID)
}

// checkThree streams table from the start to its head and checks that it
// holds the three events that the Test functions inserted.
func checkThree(t testing.TB, dbc *sql.DB, table *rsql.EventsTable, foreignID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := table.ToStream(dbc, reflex.WithStreamToHead())(ctx, "")
	if err != nil {
		t.Fatalf("rsqltest: stream %s: %v", table.Name(), err)
	}
	if c, ok := cl.(interface{ Close() error }); ok {
		defer c.Close()
	}
	var got []*reflex.Event
	for {
		e, err := cl.Recv()
		if errors.Is(err, reflex.ErrHeadReached) {
			break
		} else if err != nil {
			t.Fatalf("rsqltest: stream %s: %v", table.Name(), err)
		}
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("rsqltest: %s streamed %d events, want 3", table.Name(), len(got))
	}
	for i, e := range got {
		if !reflex.IsType(e.Type, checkType(i+1)) || e.ForeignID != foreignID {
			t.Errorf("rsqltest: %s event %d = type %v, foreign ID %q; want type %d, foreign ID %q",
				table.Name(), i, e.Type, e.ForeignID, i+1, foreignID)
		}
	}
}

// TestCursorsTable checks a cursors table: no cursor at first, then "10"
// after setting and flushing it. It fails t on any error.
func TestCursorsTable(t testing.TB, dbc *sql.DB, table *rsql.CursorsTable) {
	t.Helper()
	ctx := context.Background()
	const name = "rsqltest"
	if c, err := table.GetCursor(ctx, dbc, name); err != nil || c != "" {
		t.Fatalf("rsqltest: GetCursor(%q) from %s = %q, %v; want \"\", nil", name, table.Name(), c, err)
	}
	if err := table.SetCursor(ctx, dbc, name, "10"); err != nil {
		t.Fatalf("rsqltest: SetCursor(%q, \"10\") on %s: %v", name, table.Name(), err)
	}
	if err := table.Flush(ctx); err != nil {
		t.Fatalf("rsqltest: Flush %s: %v", table.Name(), err)
	}
	if c, err := table.GetCursor(ctx, dbc, name); err != nil || c != "10" {
		t.Fatalf("rsqltest: GetCursor(%q) from %s = %q, %v; want \"10\", nil", name, table.Name(), c, err)
	}
}

// GetNextEventsForTesting returns the events of table after the event ID
// after, with lag > 0 only those older than lag: one query of at most the
// table's lookup limit of rows (rsql.WithEventLookupLimit, default 1000),
// noops and events past a missing ID included. It is table.LoadEvents: it
// reads the SQL table whatever the table's loader, cache or streams, so a
// rsql.WithEventsLoader loader of the same table may call it.
func GetNextEventsForTesting(ctx context.Context, _ testing.TB, dbc *sql.DB, table *rsql.EventsTable, after int64, lag time.Duration) ([]*reflex.Event, error) {
	return table.LoadEvents(ctx, dbc, after, lag)
}

// GetLatestIDForTesting returns the largest value of the ID column idField
// of eventTable, 0 for an empty table: rsql.EventsTable.Head, with names
// quoted for MySQL (SQLite accepts them too), or for PostgreSQL on a
// PostgreSQL database (where the MySQL query fails with
// rsql.ErrWrongDialect). An invalid name (see rsql.CheckName) is an
// error.
func GetLatestIDForTesting(ctx context.Context, _ testing.TB, dbc *sql.DB, eventTable, idField string) (int64, error) {
	for _, name := range []string{eventTable, idField} {
		if err := rsql.CheckName(name); err != nil {
			return 0, fmt.Errorf("rsqltest: GetLatestIDForTesting: %w", err)
		}
	}
	id, err := rsql.NewEventsTable(eventTable, rsql.WithEventIDField(idField)).Head(ctx, dbc)
	if errors.Is(err, rsql.ErrWrongDialect) {
		id, err = rsql.NewEventsTable(eventTable, rsql.WithEventIDField(idField), rsql.WithEventsDialect(rsql.PostgreSQL)).Head(ctx, dbc)
	}
	return id, err
}
