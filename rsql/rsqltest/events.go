package rsqltest

import (
	"database/sql"
	"testing"

	"github.com/seed-e488ba2e/reflex/rsql"
)

// CreateEventsTable creates (if missing) an events table named name in db
// with rsql.EventsSchema (default column names, with metadata and trace
// columns) in the dialect of db's driver (SQLite for a driver named like
// sqlite, else MySQL). It fails tb on error.
func CreateEventsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	execDDL(tb, db, rsql.EventsSchema(driverDialect(db), name))
}
