package rsqltest

import (
	"database/sql"
	"net/url"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// OpenSQLite returns a connection pool to a new SQLite database in a
// temporary file (modernc.org/sqlite, driver name "sqlite") with a 5 s
// busy timeout and write-ahead logging, so that readers and the single
// writer do not block each other. The pool is closed and the file removed
// when the test ends. Use it with rsql.WithEventsDialect(rsql.SQLite) (and
// the cursors and errors equivalents).
func OpenSQLite(tb testing.TB) *sql.DB {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "rsql.db")
	u := url.URL{Scheme: "file", Path: path, RawQuery: "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"}
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
