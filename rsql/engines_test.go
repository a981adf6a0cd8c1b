package rsql_test

import (
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// engine is a database server engine that the conformance tests run on.
type engine struct {
	name   string // of the subtest
	d      rsql.Dialect
	driver string
	// open returns a fresh database and its DSN (see dbtest).
	open func(tb testing.TB) (*sql.DB, string)
	// lastID is the query of the ID of the session's last insert.
	lastID string
}

var (
	mariaDB  = engine{"MariaDB", rsql.MySQL, "mysql", dbtest.OpenDSN, "SELECT LAST_INSERT_ID()"}
	postgres = engine{"PostgreSQL", rsql.PostgreSQL, "pgx", dbtest.OpenPGDSN, "SELECT lastval()"}
)

// serverEngines are the engines with a server: the suites that MariaDB
// passes run on PostgreSQL too.
func serverEngines() []engine { return []engine{mariaDB, postgres} }

// engineByName returns the engine named name (for child processes).
func engineByName(name string) engine {
	for _, e := range serverEngines() {
		if e.name == name {
			return e
		}
	}
	panic("no engine " + name)
}

// openDB opens a fresh database of e.
func (e engine) openDB(tb testing.TB) *sql.DB {
	tb.Helper()
	db, _ := e.open(tb)
	return db
}

// q rewrites a query written with ? markers for e ($1, $2, ... on
// PostgreSQL).
func (e engine) q(query string) string {
	if e.d != rsql.PostgreSQL {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// now is e's expression of the current time with microseconds.
func (e engine) now() string {
	if e.d == rsql.PostgreSQL {
		return "statement_timestamp()"
	}
	return "now(6)"
}

// engineOf returns the engine of db, by its driver.
func engineOf(db *sql.DB) engine {
	if _, ok := db.Driver().(*stdlib.Driver); ok {
		return postgres
	}
	return mariaDB
}

// newEngineTable creates a fresh events table (with metadata and trace
// columns) in db of engine e and returns it configured with opts, closed
// at the end of the test.
func newEngineTable(t testing.TB, e engine, db *sql.DB, opts ...rsql.EventsOption) *rsql.EventsTable {
	t.Helper()
	name := fmt.Sprintf("events_%d", tableSeq.Add(1))
	if _, err := db.ExecContext(t.Context(), rsql.EventsSchema(e.d, name)); err != nil {
		t.Fatal(err)
	}
	all := append([]rsql.EventsOption{rsql.WithEventsDialect(e.d), rsql.WithEventMetadataField("metadata"), rsql.WithEventTraceField("trace")}, opts...)
	table := rsql.NewEventsTable(name, all...)
	t.Cleanup(func() { table.Close() })
	return table
}

// newEngineCursorsTable creates a fresh int cursors table in db of engine
// e and returns a CursorsTable for it, closed at the end of the test.
func newEngineCursorsTable(t testing.TB, e engine, db *sql.DB, opts ...rsql.CursorsOption) *rsql.CursorsTable {
	t.Helper()
	name := fmt.Sprintf("cursors_%d", curSeq.Add(1))
	if _, err := db.ExecContext(t.Context(), rsql.CursorsSchema(e.d, name)); err != nil {
		t.Fatal(err)
	}
	ct := rsql.NewCursorsTable(name, append([]rsql.CursorsOption{rsql.WithCursorsDialect(e.d)}, opts...)...)
	t.Cleanup(func() { ct.Close() })
	return ct
}

// forEngines runs f as a subtest on each server engine.
func forEngines(t *testing.T, f func(t *testing.T, e engine)) {
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) { f(t, e) })
	}
}
