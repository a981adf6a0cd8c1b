package rsqltest

import (
	"database/sql"
	"slices"
	"testing"

	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/internal/sqlitefile"
)

// OpenSQLite returns a connection pool to a new SQLite database in a
// temporary file, like sqlitetest.Open, and makes this package's Create
// functions use the SQLite dialect for it until the test ends. It needs
// the "sqlite" driver registered, which this package no longer links:
// import package sqlitetest (or modernc.org/sqlite); without it OpenSQLite
// fails tb saying so. It is kept for existing callers: new code uses
// sqlitetest.Open, and sqlitetest.Tables to create the tables.
func OpenSQLite(tb testing.TB) *sql.DB {
	tb.Helper()
	if !slices.Contains(sql.Drivers(), "sqlite") {
		tb.Fatalf("rsqltest: OpenSQLite: no \"sqlite\" driver registered: import github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest (and use sqlitetest.Open)")
	}
	db := sqlitefile.Open(tb)
	sqliteDBs.Store(db, struct{}{})
	tb.Cleanup(func() { sqliteDBs.Delete(db) })
	return db
}
