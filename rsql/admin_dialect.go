package rsql

import (
	"context"
	"fmt"
	"time"
)

// adminDialect is the SQL of the operators' functions (the admin_*.go,
// audit.go and redrive.go files: cursor moves and their audit, consumer
// errors, gaps, the database clock) that differs between engines,
// embedded in dialect. Everything else those functions run is standard
// SQL (LIMIT, scalar subqueries, the LEAD window function).
type adminDialect interface {
	// lockRows is the clause that ends a SELECT so that the rows it reads
	// stay locked against writers until the transaction ends; "" where
	// the engine serialises writers (the transaction's first write then
	// fails if another writer committed since its reads).
	lockRows() string
	// returningID writes the clause that ends an INSERT so that
	// execInsertID returns the new row's id (column idCol); "" where the
	// driver reports the last insert id itself.
	returningID(s *sqlStmt, idCol string)
	// clock returns the database's current time, as the driver returns
	// the values the dialect's now() writes.
	clock(ctx context.Context, dbc DBC) (time.Time, error)
}

var (
	_ adminDialect = mysqlDialect{}
	_ adminDialect = sqliteDialect{}
)

func (mysqlDialect) lockRows() string { return " FOR UPDATE" }

func (mysqlDialect) returningID(*sqlStmt, string) {}

func (mysqlDialect) clock(ctx context.Context, dbc DBC) (time.Time, error) {
	var now time.Time
	err := dbc.QueryRowContext(ctx, "SELECT now(6)").Scan(&now)
	return now, err
}

func (sqliteDialect) lockRows() string { return "" }

func (sqliteDialect) returningID(s *sqlStmt, idCol string) { s.sql(" RETURNING ", idCol) }

// sqliteTimeLayout is the text of sqliteDialect.now().
const sqliteTimeLayout = "2006-01-02 15:04:05.000"

// clock reads now() as text (an expression has no declared type, so the
// driver does not parse it) and parses it as UTC, as the driver parses
// the same text in a DATETIME column.
func (d sqliteDialect) clock(ctx context.Context, dbc DBC) (time.Time, error) {
	var s string
	if err := dbc.QueryRowContext(ctx, "SELECT "+d.now()).Scan(&s); err != nil {
		return time.Time{}, err
	}
	t, err := time.ParseInLocation(sqliteTimeLayout, s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse the database time %q: %w", s, err)
	}
	return t, nil
}

var _ adminDialect = pgDialect{}

func (pgDialect) lockRows() string { return " FOR UPDATE" }

func (pgDialect) returningID(s *sqlStmt, idCol string) { s.sql(" RETURNING ", idCol) }

// clock reads statement_timestamp(), what pgDialect.now() writes.
func (d pgDialect) clock(ctx context.Context, dbc DBC) (time.Time, error) {
	var now time.Time
	err := dbc.QueryRowContext(ctx, "SELECT "+d.now()).Scan(&now)
	return now, err
}
