package rsqltest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/rsql"
)

// CreateCursorsTable creates (if missing) a cursors table for int cursors
// named name in db, with rsql.CursorsSchema in the dialect of db's driver
// (SQLite for a driver named like sqlite, else MySQL). It fails tb on error.
func CreateCursorsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	execDDL(tb, db, rsql.CursorsSchema(driverDialect(db), name))
}

// CreateStringCursorsTable is CreateCursorsTable for string cursors
// (rsql.WithCursorStrings), with rsql.StringCursorsSchema.
func CreateStringCursorsTable(tb testing.TB, db *sql.DB, name string) {
	tb.Helper()
	execDDL(tb, db, rsql.StringCursorsSchema(driverDialect(db), name))
}

// CreateErrorsTables creates (if missing) the default tables of
// rsql.NewErrorsTable in db: consumer_errors (rsql.ErrorsSchema) and its
// events table consumer_errors_events with a metadata column
// (rsql.EventsSchema). It fails tb on error.
func CreateErrorsTables(tb testing.TB, db *sql.DB) {
	tb.Helper()
	d := driverDialect(db)
	execDDL(tb, db, rsql.ErrorsSchema(d, "consumer_errors"))
	execDDL(tb, db, rsql.EventsSchema(d, "consumer_errors_events"))
}

// driverDialect returns the rsql dialect matching db's driver.
func driverDialect(db *sql.DB) rsql.Dialect {
	if strings.Contains(strings.ToLower(fmt.Sprintf("%T", db.Driver())), "sqlite") {
		return rsql.SQLite
	}
	return rsql.MySQL
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
