package rsqltest

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/rsql"
)

// Tables creates the tables of package rsql with the DDL of rsql's schema
// functions in one SQL dialect. The zero value is MySQL. Each method
// creates its table if missing and fails tb on error; methods are safe for
// concurrent use.
type Tables struct {
	// Dialect is the dialect of the DDL.
	Dialect rsql.Dialect
}

// CreateEventsTable creates an events table named name with
// rsql.EventsSchema (default column names, with metadata and trace
// columns).
func (c Tables) CreateEventsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	execDDL(tb, db, rsql.EventsSchema(c.Dialect, name))
}

// CreateCursorsTable creates a cursors table for int cursors named name
// with rsql.CursorsSchema.
func (c Tables) CreateCursorsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	execDDL(tb, db, rsql.CursorsSchema(c.Dialect, name))
}

// CreateStringCursorsTable creates a cursors table for string cursors
// (rsql.WithCursorStrings) named name with rsql.StringCursorsSchema.
func (c Tables) CreateStringCursorsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	execDDL(tb, db, rsql.StringCursorsSchema(c.Dialect, name))
}

// CreateErrorsTables creates the default tables of rsql.NewErrorsTable:
// consumer_errors (rsql.ErrorsSchema) and its events table
// consumer_errors_events with a metadata column (rsql.EventsSchema).
func (c Tables) CreateErrorsTables(tb testing.TB, db *sql.DB) {
	tb.Helper()
	execDDL(tb, db, rsql.ErrorsSchema(c.Dialect, "consumer_errors"))
	execDDL(tb, db, rsql.EventsSchema(c.Dialect, "consumer_errors_events"))
}

// CreateEventsTable creates (if missing) an events table named name in db
// with rsql.EventsSchema (default column names, with metadata and trace
// columns) in MySQL (in SQLite for a database that OpenSQLite opened). It
// fails tb on error. Tables creates tables in other dialects.
func CreateEventsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	tablesFor(db).CreateEventsTable(tb, db, name)
}

// CreateCursorsTable creates (if missing) a cursors table for int cursors
// named name in db, with rsql.CursorsSchema in MySQL (in SQLite for a
// database that OpenSQLite opened). It fails tb on error.
func CreateCursorsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	tablesFor(db).CreateCursorsTable(tb, db, name)
}

// CreateStringCursorsTable is CreateCursorsTable for string cursors
// (rsql.WithCursorStrings), with rsql.StringCursorsSchema.
func CreateStringCursorsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	tablesFor(db).CreateStringCursorsTable(tb, db, name)
}

// CreateErrorsTables creates (if missing) the default tables of
// rsql.NewErrorsTable in db: consumer_errors (rsql.ErrorsSchema) and its
// events table consumer_errors_events with a metadata column
// (rsql.EventsSchema), in MySQL (in SQLite for a database that OpenSQLite
// opened). It fails tb on error.
func CreateErrorsTables(tb testing.TB, db *sql.DB) {
	tb.Helper()
	tablesFor(db).CreateErrorsTables(tb, db)
}

// sqliteDBs holds the databases OpenSQLite opened, until their test ends.
var sqliteDBs sync.Map // *sql.DB -> struct{}

// tablesFor returns the Tables of the package-level functions for db.
func tablesFor(db *sql.DB) Tables {
	if _, ok := sqliteDBs.Load(db); ok {
		return Tables{Dialect: rsql.SQLite}
	}
	return Tables{Dialect: rsql.MySQL}
}

// execDDL runs one DDL statement, failing tb on error.
func execDDL(tb testing.TB, db *sql.DB, ddl string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		tb.Fatalf("rsqltest: %v\n%s", err, ddl)
	}
}
