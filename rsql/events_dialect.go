package rsql

import (
	"context"
	"database/sql"
)

// eventsDialect is what differs between engines in the life of an events
// table beyond the text of its statements: how an insert wakes the
// streams of other processes, how the head watcher hears of it, and how
// the gap filler and the first load tell a missing ID from one that a
// transaction is still writing. Embedded in dialect.
type eventsDialect interface {
	// execInsert runs the INSERT statement s of t through dbc and returns
	// the NotifyFunc of the insert: t.notify, unless the engine also
	// tells other processes.
	execInsert(ctx context.Context, t *EventsTable, dbc DBC, s *sqlStmt) (NotifyFunc, error)
	// listenHead starts what wakes the streams of w (w.wake) when another
	// process commits to w's table on db, and returns the function that
	// stops it and waits (called once, by the watcher's last release);
	// nil where the engine has only the watcher's poll.
	listenHead(w *watcher, db *sql.DB, t *EventsTable) (stop func())
	// fillRange fills the missing IDs in [lo, hi) of t with noop events
	// (see FillGaps), waiting for those that a transaction may still
	// commit. It gives up on the first error, or when ctx is done.
	fillRange(ctx context.Context, t *EventsTable, db *sql.DB, lo, hi int64) error
	// fillTx returns the options of the gap filler's transaction that
	// inserts noops and reads the trim marker above them (gap_trim.go),
	// nil for the default.
	fillTx() *sql.TxOptions
	// lowerInFlight reports whether an ID below id may still be
	// committed, so that a stream from the beginning must not start at id
	// yet.
	lowerInFlight(ctx context.Context, t *EventsTable, db *sql.DB, id int64) (bool, error)
}

var (
	_ eventsDialect = mysqlDialect{}
	_ eventsDialect = sqliteDialect{}
	_ eventsDialect = pgDialect{}
)

// execInsertPlain runs an INSERT statement; the table's own NotifyFunc
// wakes the streams of this process.
func execInsertPlain(ctx context.Context, t *EventsTable, dbc DBC, s *sqlStmt) (NotifyFunc, error) {
	if _, err := dbc.ExecContext(ctx, s.String(), s.args...); err != nil {
		return nil, err
	}
	return t.notify, nil
}

func (mysqlDialect) execInsert(ctx context.Context, t *EventsTable, dbc DBC, s *sqlStmt) (NotifyFunc, error) {
	return execInsertPlain(ctx, t, dbc, s)
}

func (sqliteDialect) execInsert(ctx context.Context, t *EventsTable, dbc DBC, s *sqlStmt) (NotifyFunc, error) {
	return execInsertPlain(ctx, t, dbc, s)
}

// listenHead: MySQL has no notifications; the watcher polls.
func (mysqlDialect) listenHead(*watcher, *sql.DB, *EventsTable) func() { return nil }

// listenHead: SQLite has no server; the watcher polls the file.
func (sqliteDialect) listenHead(*watcher, *sql.DB, *EventsTable) func() { return nil }

func (mysqlDialect) fillRange(ctx context.Context, t *EventsTable, db *sql.DB, lo, hi int64) error {
	return t.fillRangeUncommitted(ctx, db, lo, hi)
}

// fillRange: SQLite serialises writers, so an absent ID below a committed
// one is never being written; fillRangeUncommitted, without a
// read-uncommitted level, fills every absent ID at once.
func (sqliteDialect) fillRange(ctx context.Context, t *EventsTable, db *sql.DB, lo, hi int64) error {
	return t.fillRangeUncommitted(ctx, db, lo, hi)
}

// fillTx: READ COMMITTED, so that the filler's read of the trim marker
// after its INSERT sees every trim committed before it, and its INSERT
// locks only the rows it writes.
func (mysqlDialect) fillTx() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// fillTx: SQLite serialises writers; its default is the only level.
func (sqliteDialect) fillTx() *sql.TxOptions { return nil }

func (mysqlDialect) lowerInFlight(ctx context.Context, t *EventsTable, db *sql.DB, id int64) (bool, error) {
	return t.lowerUncommitted(ctx, db, id)
}

// lowerInFlight: SQLite serialises writers; no lower ID is in flight.
func (sqliteDialect) lowerInFlight(context.Context, *EventsTable, *sql.DB, int64) (bool, error) {
	return false, nil
}
