package rsql_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// TestPGSchemaFiles runs every shipped PostgreSQL .sql file as a
// migration tool would, twice (the DDL is idempotent), then uses the
// tables with their default names.
func TestPGSchemaFiles(t *testing.T) {
	db := postgres.openDB(t)
	files, err := filepath.Glob("schema/postgres/*.sql")
	if err != nil || len(files) < 6 {
		t.Fatalf("schema files %v, %v", files, err)
	}
	for range 2 {
		for _, f := range files {
			if strings.HasSuffix(f, "string_cursors.sql") || strings.HasSuffix(f, "events_partitioned.sql") {
				continue // the same table names as cursors.sql and events.sql (TestTrimPartitioned applies it)
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(string(b)); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
	ctx := t.Context()
	events := rsql.NewEventsTable("events", rsql.WithEventsDialect(rsql.PostgreSQL),
		rsql.WithEventMetadataField("metadata"), rsql.WithEventTraceField("trace"))
	defer events.Close()
	if _, err := events.InsertWithMetadata(ctx, db, "1", testType(1), []byte("m")); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, events.ToStream(db), ""); len(got) != 1 || string(got[0].MetaData) != "m" {
		t.Fatalf("streamed %v", ids(got))
	}
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(rsql.PostgreSQL), rsql.WithCursorAsyncDisabled())
	if err := cursors.SetCursor(ctx, db, "c", "5"); err != nil {
		t.Fatal(err)
	}
	if err := rsql.NewErrorsTable(rsql.WithErrorsDialect(rsql.PostgreSQL), rsql.WithErrorEventsTable(events)).
		ToErrorInsertFunc(db)(ctx, "c", "1", "boom"); err != nil {
		t.Fatal(err)
	}
	if _, err := rsql.NewLeasesTable("leases", rsql.WithLeasesDialect(rsql.PostgreSQL)).ToStore(db).ScanLeases(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []func(rsql.Dialect, string) string{rsql.EventsSchema, rsql.CursorsSchema, rsql.StringCursorsSchema, rsql.ErrorsSchema, rsql.LeasesSchema} {
		if ddl := d(rsql.PostgreSQL, "other"); !strings.Contains(ddl, `CREATE TABLE IF NOT EXISTS "other"`) {
			t.Errorf("schema function renamed no table:\n%s", ddl)
		}
	}
}

// TestPGNotifyTrigger: the opt-in trigger of the shipped file notifies the
// table's channel from the writer's own transaction: a row inserted with
// plain SQL wakes a stream that polls once an hour.
func TestPGNotifyTrigger(t *testing.T) {
	db := postgres.openDB(t)
	nc := countNotified(t)
	table := newEngineTable(t, postgres, db, rsql.WithEventsBackoff(time.Hour))
	b, err := os.ReadFile("schema/postgres/events_notify_trigger.sql")
	if err != nil {
		t.Fatal(err)
	}
	ddl := strings.Replace(string(b), `ON "events"`, "ON "+table.QuotedName(), 1)
	if _, err := db.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	got := tailing(t, db, table)
	pgNotifyConn(t, db, 1)
	rawInsert(t, db, table.Name(), 1)
	if id := recvID(t, got, "row inserted with plain SQL"); id != "1" {
		t.Fatalf("received %s, want 1", id)
	}
	if nc.get(table.Channel()) == 0 {
		t.Error("no notification woke the stream")
	}
}

// TestPGSchemaRefused: a table without a configured column, an ID whose
// sequence caches values, and a name column that folds names are refused
// with ErrSchema naming the problem.
func TestPGSchemaRefused(t *testing.T) {
	db := postgres.openDB(t)
	ctx := t.Context()
	for _, q := range []string{
		`CREATE TABLE no_type (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, foreign_id varchar(255) NOT NULL, "timestamp" timestamptz NOT NULL, kind int NOT NULL)`,
		`CREATE TABLE cached (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 20) PRIMARY KEY, foreign_id varchar(255) NOT NULL, "timestamp" timestamptz NOT NULL, type int NOT NULL)`,
		`CREATE TABLE no_time_cursors (id varchar(255) COLLATE "C" PRIMARY KEY, last_event_id bigint NOT NULL)`,
		`CREATE COLLATION IF NOT EXISTS folding (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`,
		`CREATE TABLE folding_cursors (id varchar(255) COLLATE folding PRIMARY KEY, last_event_id bigint NOT NULL, updated_at timestamptz NOT NULL)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	pg := rsql.WithEventsDialect(rsql.PostgreSQL)
	_, err := rsql.NewEventsTable("no_type", pg).Insert(ctx, db, "1", testType(1))
	if !errors.Is(err, rsql.ErrSchema) || !strings.Contains(err.Error(), "no column type") {
		t.Errorf("insert without a type column: %v, want ErrSchema naming the column", err)
	}
	_, err = rsql.NewEventsTable("cached", pg).Insert(ctx, db, "1", testType(1))
	if !errors.Is(err, rsql.ErrSchema) || !strings.Contains(err.Error(), "CACHE 1") {
		t.Errorf("insert into a table whose ID sequence caches 20: %v, want ErrSchema asking for CACHE 1", err)
	}
	err = rsql.NewCursorsTable("no_time_cursors", rsql.WithCursorsDialect(rsql.PostgreSQL), rsql.WithCursorAsyncDisabled()).SetCursor(ctx, db, "c", "1")
	if !errors.Is(err, rsql.ErrSchema) || !strings.Contains(err.Error(), "updated_at") {
		t.Errorf("cursor write without a time column: %v, want ErrSchema naming updated_at", err)
	}
	err = rsql.NewCursorsTable("folding_cursors", rsql.WithCursorsDialect(rsql.PostgreSQL), rsql.WithCursorAsyncDisabled()).SetCursor(ctx, db, "c", "1")
	if !errors.Is(err, rsql.ErrSchema) || !strings.Contains(err.Error(), "nondeterministic collation folding") {
		t.Errorf("cursor write with a folding name column: %v, want ErrSchema naming the collation", err)
	}
}

// TestPGValuesRefused: values that PostgreSQL's columns cannot hold are
// refused with ErrInvalidValue before anything is written: a NUL
// character, a name longer than the column, an int foreign ID that is not
// an integer or out of the column's range. Names that differ only in case
// or trailing spaces are different consumers.
func TestPGValuesRefused(t *testing.T) {
	db := postgres.openDB(t)
	ctx := t.Context()
	table := newEngineTable(t, postgres, db)
	for _, fid := range []string{"a\x00b", strings.Repeat("x", 256)} {
		if _, err := table.Insert(ctx, db, fid, testType(1)); !errors.Is(err, rsql.ErrInvalidValue) {
			t.Errorf("Insert(%.20q) = %v, want ErrInvalidValue", fid, err)
		}
	}
	if _, err := table.Insert(ctx, db, "x", testType(math.MaxInt32+1)); !errors.Is(err, rsql.ErrInvalidValue) {
		t.Errorf("Insert of a type beyond int = %v, want ErrInvalidValue", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE int_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, foreign_id integer NOT NULL, "timestamp" timestamptz NOT NULL, type integer NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	ints := rsql.NewEventsTableInt("int_events", rsql.WithEventsDialect(rsql.PostgreSQL))
	defer ints.Close()
	if _, err := ints.Insert(ctx, db, math.MaxInt32+1, testType(1)); !errors.Is(err, rsql.ErrInvalidValue) {
		t.Errorf("int foreign ID beyond the integer column = %v, want ErrInvalidValue", err)
	}
	if _, err := ints.Insert(ctx, db, 7, testType(1)); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, ints.ToStream(db), ""); len(got) != 1 || got[0].ForeignID != "7" {
		t.Errorf("int events table streamed %v", got)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table.QuotedName()).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows written by refused inserts (%v)", n, err)
	}

	ct := newEngineCursorsTable(t, postgres, db, rsql.WithCursorAsyncDisabled())
	for _, name := range []string{"a\x00b", strings.Repeat("é", 256)} {
		if err := ct.SetCursor(ctx, db, name, "1"); !errors.Is(err, rsql.ErrInvalidValue) {
			t.Errorf("SetCursor(%.20q) = %v, want ErrInvalidValue", name, err)
		}
	}
	for i, name := range []string{"Orders", "orders", "orders ", "é", "e"} {
		curSet(t, ct, db, name, strconv.Itoa(i+1))
	}
	for i, name := range []string{"Orders", "orders", "orders ", "é", "e"} {
		curWant(t, ct, db, name, strconv.Itoa(i+1))
	}
}

// TestWrongDialect: a table of one engine's dialect used on a database of
// the other fails at its first statement with ErrWrongDialect naming the
// database's engine, for inserts, streams and cursors.
func TestWrongDialect(t *testing.T) {
	pgDB, myDB := postgres.openDB(t), mariaDB.openDB(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		d, real rsql.Dialect
		want    string
	}{
		{"MySQL table on PostgreSQL", rsql.MySQL, rsql.PostgreSQL, "the database is postgres"},
		{"PostgreSQL table on MariaDB", rsql.PostgreSQL, rsql.MySQL, "the database is mysql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := pgDB
			if tc.real == rsql.MySQL {
				db = myDB
			}
			if _, err := db.ExecContext(ctx, rsql.EventsSchema(tc.real, "events")); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, rsql.CursorsSchema(tc.real, "cursors")); err != nil {
				t.Fatal(err)
			}
			events := rsql.NewEventsTable("events", rsql.WithEventsDialect(tc.d))
			defer events.Close()
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, rsql.ErrWrongDialect) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v, want ErrWrongDialect saying %q", what, err, tc.want)
				}
			}
			_, err := events.Insert(ctx, db, "1", testType(1))
			check("Insert", err)
			_, err = events.ToStream(db)(ctx, "", reflex.WithStreamFromHead())
			check("ToStream from head", err)
			_, err = events.LoadEvents(ctx, db, 0, 0)
			check("LoadEvents", err)
			err = rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(tc.d), rsql.WithCursorAsyncDisabled()).SetCursor(ctx, db, "c", "1")
			check("SetCursor", err)
		})
	}
}

// TestPGIDsBeyondInt64: the identity sequence ends at the largest int64,
// which streams; the insert after it fails with the database's error.
// An ID column that holds a larger value (numeric) gives a load error,
// and cursors beyond int64 are refused (see the stream suite).
func TestPGIDsBeyondInt64(t *testing.T) {
	db := postgres.openDB(t)
	ctx := t.Context()
	table := newEngineTable(t, postgres, db)
	if _, err := db.ExecContext(ctx, "ALTER TABLE "+table.QuotedName()+" ALTER COLUMN id RESTART WITH 9223372036854775806"); err != nil {
		t.Fatal(err)
	}
	insertN(t, db, table, 1, 2)
	if got := drain(t, table.ToStream(db), "9223372036854775805"); !equal(ids(got), []string{"9223372036854775806", "9223372036854775807"}) {
		t.Fatalf("streamed %v, want the two largest int64s", ids(got))
	}
	if _, err := table.Insert(ctx, db, "3", testType(1)); err == nil || !strings.Contains(err.Error(), "maximum value") {
		t.Errorf("insert after the largest ID: %v, want the sequence's error", err)
	}

	if _, err := db.ExecContext(ctx, `CREATE TABLE huge (id numeric PRIMARY KEY, foreign_id varchar(255) NOT NULL, "timestamp" timestamptz NOT NULL, type integer NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO huge VALUES (9223372036854775808, 'x', now(), 1)`); err != nil {
		t.Fatal(err)
	}
	huge := rsql.NewEventsTable("huge", rsql.WithEventsDialect(rsql.PostgreSQL))
	defer huge.Close()
	if evs, err := huge.LoadEvents(ctx, db, 0, 0); err == nil {
		t.Errorf("LoadEvents of an ID beyond int64 = %v, want an error", ids(evs))
	}
}
