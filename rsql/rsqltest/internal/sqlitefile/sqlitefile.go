// Package sqlitefile opens the SQLite test databases of rsqltest and
// sqlitetest. It links no driver: the caller registers "sqlite".
package sqlitefile

import (
	"database/sql"
	"net/url"
	"path/filepath"
	"testing"
)

// Open returns a connection pool to a new SQLite database in a temporary
// file, with a 5 s busy timeout, write-ahead logging (readers and the
// single writer do not block each other) and transactions that take the
// write lock when they begin (BEGIN IMMEDIATE: a transaction that reads
// before it writes cannot fail at its first write because another writer
// committed meanwhile), closed when the test ends. It fails tb on error.
func Open(tb testing.TB) *sql.DB {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "rsql.db")
	u := url.URL{Scheme: "file", Path: path, RawQuery: "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		tb.Fatalf("rsqltest: open SQLite %s: %v", path, err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	if err := db.Ping(); err != nil {
		tb.Fatalf("rsqltest: open SQLite %s: %v", path, err)
	}
	return db
}
