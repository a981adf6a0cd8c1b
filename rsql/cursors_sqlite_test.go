package rsql_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

func TestCursorsSQLiteConformance(t *testing.T) {
	db := rsqltest.OpenSQLite(t)
	for _, m := range []struct {
		name string
		opt  rsql.CursorsOption
	}{
		{"Sync", rsql.WithCursorAsyncDisabled()},
		{"AsyncFlushOnly", rsql.WithCursorAsyncPeriod(time.Hour)},
		{"AsyncBackground", rsql.WithCursorAsyncPeriod(time.Millisecond)},
	} {
		t.Run(m.name, func(t *testing.T) {
			reflextest.TestCursorStore(t, func(t *testing.T) reflex.CursorStore {
				return newCursorsTable(t, db, m.opt, rsql.WithCursorsDialect(rsql.SQLite)).ToStore(db)
			})
		})
	}
}

func TestCursorsSQLiteWriteRule(t *testing.T) {
	db := rsqltest.OpenSQLite(t)
	sqlite := rsql.WithCursorsDialect(rsql.SQLite)
	ct := newCursorsTable(t, db, sqlite, rsql.WithCursorAsyncDisabled())
	curSet(t, ct, db, "c", "10")
	for _, cur := range []string{"10", "9"} {
		err := ct.SetCursor(t.Context(), db, "c", cur)
		ce, ok := errors.AsType[*rsql.CursorConflictError](err)
		if !ok || ce.Existing != "10" || ce.UpdatedAt.IsZero() {
			t.Errorf("SetCursor(c, %s) after 10 = %v, want a conflict with the stored row", cur, err)
		}
	}
	curSet(t, ct, db, "c", "11")
	curWant(t, ct, db, "c", "11")

	// Int cursors in a text column compare as integers.
	name := fmt.Sprintf("strcursors_%d", curSeq.Add(1))
	rsqltest.CreateStringCursorsTable(t, db, name)
	for _, opt := range []rsql.CursorsOption{rsql.WithCursorAsyncDisabled(), rsql.WithCursorAsyncPeriod(time.Hour)} {
		it := rsql.NewCursorsTable(name, sqlite, opt)
		consumer := fmt.Sprint("n", curSeq.Add(1))
		curSet(t, it, db, consumer, "9")
		curFlush(t, it)
		curSet(t, it, db, consumer, "10")
		curFlush(t, it)
		curWant(t, it, db, consumer, "10")
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		back := rsql.NewCursorsTable(name, sqlite, rsql.WithCursorAsyncPeriod(time.Hour))
		curSet(t, back, db, consumer, "9")
		if err := back.Close(); err != nil { // the flush ignores the lower cursor
			t.Fatal(err)
		}
		curWant(t, it, db, consumer, "10")
	}

	// String cursors compare as strings.
	st := rsql.NewCursorsTable(name, sqlite, rsql.WithCursorStrings(), rsql.WithCursorAsyncPeriod(time.Hour))
	curSet(t, st, db, "s", "abcd")
	curFlush(t, st)
	curSet(t, rsql.NewCursorsTable(name, sqlite, rsql.WithCursorStrings(), rsql.WithCursorAsyncDisabled()), db, "s", "abce")
	curSet(t, st, db, "s", "abcz")
	curFlush(t, st)
	curWant(t, st, db, "s", "abcz")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsTableSQLite(t *testing.T) {
	db := rsqltest.OpenSQLite(t)
	rsqltest.CreateErrorsTables(t, db)
	f := rsql.NewErrorsTable(rsql.WithErrorsDialect(rsql.SQLite)).ToErrorInsertFunc(db)
	for _, c := range []struct{ consumer, event string }{{"a", "1"}, {"a", "1"}, {"b", "1"}} {
		if err := f(t.Context(), c.consumer, c.event, "msg"); err != nil {
			t.Fatalf("insert %v: %v", c, err)
		}
	}
	rows := errRows(t, db, "consumer_errors")
	if len(rows) != 2 || rows[0].consumer != "a" || rows[1].consumer != "b" || rows[0].eventID != 1 || rows[0].status != 1 {
		t.Fatalf("rows = %+v", rows)
	}
	evs := errEvents(t, db, "consumer_errors_events")
	want := []errEvent{
		{fmt.Sprint(rows[0].id), 1, "a"}, {fmt.Sprint(rows[0].id), 1, "a"}, {fmt.Sprint(rows[1].id), 1, "b"},
	}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Errorf("events = %+v, want %+v", evs, want)
	}

	q := "INSERT INTO consumer_errors (consumer, event_id, error_msg, created_at, updated_at, error_status) VALUES ('a', 1, '', 0, 0, 1)"
	if _, err := db.ExecContext(t.Context(), q); !rsql.IsDuplicateErrorInsertion(err) {
		t.Errorf("IsDuplicateErrorInsertion(%v) = false", err)
	}
}
