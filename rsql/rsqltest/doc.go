// Package rsqltest creates the tables of package rsql in tests and checks
// a service's own tables against rsql, as luno/reflex's rsql.TestEventsTable
// and friends do (they live here so that rsql never imports testing).
//
// It registers no database driver. Tables creates tables in any dialect;
// the package-level Create functions use MySQL. For SQLite, package
// sqlitetest opens a database (linking the modernc.org/sqlite driver only
// into the tests that import it) and holds its Tables; for PostgreSQL,
// package pgtest creates a database on a server (registering pgx's
// database/sql driver only in the tests that import it) and holds its
// Tables.
package rsqltest
