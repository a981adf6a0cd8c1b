// Package pgtest opens PostgreSQL databases for the tests of package rsql
// users, through pgx's database/sql driver (driver name "pgx"), which
// importing this package registers. It is apart from rsqltest so that the
// test binaries of MySQL users do not register the driver.
package pgtest

import (
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// Tables creates the tables of package rsql in PostgreSQL.
var Tables = rsqltest.Tables{Dialect: rsql.PostgreSQL}

// Open creates a uniquely named database on the PostgreSQL server of dsn
// (a pgx URL of an existing database, for example
// "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable") and
// returns a connection pool to it, with the session time zone UTC; the
// pool is closed and the database dropped when the test ends. It fails
// tb if the server cannot be reached or the database cannot be created
// (the user of dsn needs the CREATEDB privilege). Use it with Tables and
// rsql.WithEventsDialect(rsql.PostgreSQL) (and the cursors, errors and
// leases equivalents).
func Open(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	db, _, err := dbtest.OpenPGDSNAt(tb, dsn)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return db
}
