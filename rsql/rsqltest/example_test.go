package rsqltest_test

import (
	"database/sql"
	"os"
	"testing"

	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/pgtest"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest"
)

// Create the tables of a test in the database's dialect: MySQL with the
// package-level functions, any dialect with Tables (sqlitetest and pgtest
// hold those of SQLite and PostgreSQL and open their databases).
func ExampleTables() {
	var t *testing.T // the test's
	var mysqlDB *sql.DB
	rsqltest.CreateEventsTable(t, mysqlDB, "user_events")

	db := sqlitetest.Open(t)
	sqlitetest.Tables.CreateEventsTable(t, db, "user_events")
	rsqltest.Tables{Dialect: rsql.SQLite}.CreateCursorsTable(t, db, "cursors")
	_ = rsql.NewEventsTable("user_events", rsql.WithEventsDialect(rsql.SQLite))

	pg := pgtest.Open(t, os.Getenv("TEST_POSTGRES_URL")) // a fresh database on that server
	pgtest.Tables.CreateEventsTable(t, pg, "user_events")
	_ = rsql.NewEventsTable("user_events", rsql.WithEventsDialect(rsql.PostgreSQL))
}
