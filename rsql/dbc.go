package rsql

import (
	"context"
	"database/sql"
)

// DBC is what inserts need from a database handle: both *sql.DB and
// *sql.Tx implement it. Insert into a *sql.Tx to make the event part of the
// caller's transaction.
type DBC interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ DBC = (*sql.DB)(nil)
	_ DBC = (*sql.Tx)(nil)
)

// isNilDBC reports whether dbc is nil or a nil *sql.DB or *sql.Tx, which
// would panic on first use.
func isNilDBC(dbc DBC) bool {
	switch v := dbc.(type) {
	case nil:
		return true
	case *sql.DB:
		return v == nil
	case *sql.Tx:
		return v == nil
	}
	return false
}
