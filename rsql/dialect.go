package rsql

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Dialect selects the SQL engine of a table (see WithEventsDialect). The
// zero value is MySQL. Dialects are comparable values; use the variables
// MySQL, PostgreSQL and SQLite.
//
// The dialect is never guessed from the database: a table is often used
// through a *sql.Tx, whose driver cannot be seen, and one table may serve
// several databases. Give the dialect option of each table (the only
// line besides the DSN that differs between engines); a table whose
// dialect is not its database's fails at its first statement with an
// error wrapping ErrWrongDialect.
type Dialect struct{ d dialect }

var (
	// MySQL is the dialect of MySQL and MariaDB (driver
	// github.com/go-sql-driver/mysql, DSN with parseTime=true). It is the
	// default.
	MySQL = Dialect{}

	// SQLite is the dialect of SQLite through modernc.org/sqlite (driver
	// name "sqlite"). rsql does not import the driver; the program does.
	// SQLite serialises writers, so gaps in event IDs come only from rolled
	// back transactions and deleted rows. Open the database with
	// "_txlock=immediate" (and a busy timeout) when several goroutines or
	// processes write: a deferred transaction that reads before it writes
	// — an insert's first use of a table reads the catalog — fails at
	// once with SQLITE_BUSY ("database is locked") when another writer
	// committed since its read, whatever the busy timeout.
	SQLite = Dialect{sqliteDialect{}}

	// PostgreSQL is the dialect of PostgreSQL 15 and later through pgx's
	// database/sql driver (driver name "pgx"): rsql does not register the
	// driver; the program imports github.com/jackc/pgx/v5/stdlib. Its
	// identity IDs are taken when a row is inserted, not when it commits,
	// so event IDs commit out of order: see the package documentation for
	// how streams and FillGaps never skip one, and for the LISTEN/NOTIFY
	// wake-ups of streams in other processes. Schema files are under
	// schema/postgres.
	PostgreSQL = Dialect{pgDialect{}}
)

// impl returns the dialect implementation; the zero Dialect is MySQL.
func (d Dialect) impl() dialect {
	if d.d == nil {
		return mysqlDialect{}
	}
	return d.d
}

// String returns the dialect's name: "mysql", "postgres" or "sqlite".
func (d Dialect) String() string { return d.impl().name() }

// dialect hides every difference between SQL engines. Callers build
// queries through it and never branch on the engine. Implementations are
// stateless values.
type dialect interface {
	// name is the dialect's name, also the directory of its schema files.
	name() string
	// quote returns a validated identifier quoted for the engine.
	quote(ident string) string
	// isDuplicateKey reports whether err is a unique-key violation.
	isDuplicateKey(err error) bool

	// placeholder returns the n-th (1-based) bind parameter marker.
	placeholder(n int) string
	// now returns an expression for the current time with microseconds.
	now() string
	// olderThan writes a condition true when column col is older than now
	// minus a number of microseconds given as a parameter when the
	// statement runs (an arg of s).
	olderThan(s *sqlStmt, col string)
	// maxParams is the largest number of bind parameters in one statement.
	maxParams() int

	// uncommittedTx returns the options of a transaction that sees rows of
	// transactions that have not committed yet (nil where the engine has
	// no such level, because its writers are serialised).
	uncommittedTx() *sql.TxOptions
	// literal returns v (a string or []byte) as an SQL literal, and true,
	// if the dialect prefers literals to bind parameters for inserts. With
	// go-sql-driver/mysql a statement without parameters is one round trip
	// (text protocol) while one with parameters needs a prepare and an
	// execute.
	literal(v any) (string, bool)
	// columns reads the columns of table (unquoted name or schema.name)
	// from the catalog, by lower-case name, with the limits that the
	// library must check because the engine would cut a value that does
	// not fit (see columns.go). A missing table gives an empty map.
	columns(ctx context.Context, dbc DBC, table string) (map[string]column, error)

	// cursorsDialect is the SQL of cursors and errors tables (see
	// cursors_dialect.go).
	cursorsDialect
	leasesDialect // the SQL of leases tables and fenced cursor writes (leases_dialect.go)
	eventsDialect // how events tables fill gaps and wake other processes (events_dialect.go)
	trimDialect   // the SQL of trimming events tables (trim_sql.go)
	adminDialect  // the SQL of the operators' functions (admin_dialect.go)
}

type mysqlDialect struct{}

func (mysqlDialect) name() string { return "mysql" }

func (mysqlDialect) quote(ident string) string {
	parts := strings.Split(unquote(ident), ".")
	for i, p := range parts {
		parts[i] = "`" + p + "`"
	}
	return strings.Join(parts, ".")
}

// mysqlErrDupEntry is ER_DUP_ENTRY.
const mysqlErrDupEntry = 1062

func (mysqlDialect) isDuplicateKey(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == mysqlErrDupEntry
}

func (mysqlDialect) placeholder(int) string { return "?" }

func (mysqlDialect) now() string { return "now(6)" }

func (mysqlDialect) olderThan(s *sqlStmt, col string) {
	s.sql(col, " < now(6) - INTERVAL ")
	s.arg()
	s.sql(" MICROSECOND")
}

// maxParams is the protocol limit on placeholders per prepared statement.
func (mysqlDialect) maxParams() int { return 65535 }

func (mysqlDialect) uncommittedTx() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadUncommitted, ReadOnly: true}
}

// literal encodes strings and bytes as hexadecimal literals, which need no
// escaping and so cannot inject SQL whatever the server's SQL mode.
// Strings get the utf8mb4 introducer so that they convert to the column's
// character set like a bound string parameter does.
func (mysqlDialect) literal(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return "_utf8mb4 X'" + hex.EncodeToString([]byte(v)) + "'", true
	case []byte:
		if v == nil {
			return "NULL", true
		}
		return "X'" + hex.EncodeToString(v) + "'", true
	}
	return "", false
}

func (mysqlDialect) columns(ctx context.Context, dbc DBC, table string) (map[string]column, error) {
	return mysqlColumns(ctx, dbc, table)
}

type sqliteDialect struct{}

func (sqliteDialect) columns(ctx context.Context, dbc DBC, table string) (map[string]column, error) {
	return sqliteColumns(ctx, dbc, table)
}

func (sqliteDialect) name() string { return "sqlite" }

func (sqliteDialect) quote(ident string) string {
	parts := strings.Split(unquote(ident), ".")
	for i, p := range parts {
		parts[i] = `"` + p + `"`
	}
	return strings.Join(parts, ".")
}

// SQLite extended result codes of unique-key violations.
const (
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// isDuplicateKey matches modernc.org/sqlite's *Error by its Code method,
// so that rsql need not import the driver.
func (sqliteDialect) isDuplicateKey(err error) bool {
	var ce interface{ Code() int }
	if !errors.As(err, &ce) {
		return false
	}
	c := ce.Code()
	return c == sqliteConstraintPrimaryKey || c == sqliteConstraintUnique
}

func (sqliteDialect) placeholder(int) string { return "?" }

// now is the current UTC time as text that modernc.org/sqlite parses into
// a time.Time for DATETIME columns and that sorts chronologically.
func (sqliteDialect) now() string { return "strftime('%Y-%m-%d %H:%M:%f', 'now')" }

func (sqliteDialect) olderThan(s *sqlStmt, col string) {
	s.sql(col, " < strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%.6f seconds', ")
	s.arg()
	s.sql(" / 1000000.0))")
}

// maxParams is SQLITE_MAX_VARIABLE_NUMBER's default since SQLite 3.32.
func (sqliteDialect) maxParams() int { return 32766 }

func (sqliteDialect) uncommittedTx() *sql.TxOptions { return nil }

func (sqliteDialect) literal(any) (string, bool) { return "", false }
