// Package sqlitetest opens SQLite databases for the tests of package rsql
// users, through the modernc.org/sqlite driver (driver name "sqlite"),
// which importing this package registers. It is apart from rsqltest so
// that MySQL users' test binaries do not link SQLite.
package sqlitetest

import (
	"database/sql"
	"testing"

	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/internal/sqlitefile"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Tables creates the tables of package rsql in SQLite.
var Tables = rsqltest.Tables{Dialect: rsql.SQLite}

// Open returns a connection pool to a new SQLite database in a temporary
// file with a 5 s busy timeout, write-ahead logging, so that readers and
// the single writer do not block each other, and BEGIN IMMEDIATE
// transactions (_txlock=immediate), so that concurrent writers wait for
// each other instead of failing. The pool is closed and the
// file removed when the test ends; Open fails tb on error. Use it with
// Tables and rsql.WithEventsDialect(rsql.SQLite) (and the cursors and
// errors equivalents).
func Open(tb testing.TB) *sql.DB {
	tb.Helper()
	return sqlitefile.Open(tb)
}
