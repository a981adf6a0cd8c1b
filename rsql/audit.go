package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

var (
	// ErrConsumerRunning is wrapped by the error of
	// CursorAuditTable.MoveCursor when a lease shows the consumer running
	// (see RunningLease) and the move is not forced. Nothing was changed.
	ErrConsumerRunning = errors.New("rsql: consumer is running")

	// ErrCursorNotFound is wrapped by the error of
	// CursorAuditTable.MoveCursor when the cursors table has no row for
	// the consumer. Nothing was changed.
	ErrCursorNotFound = errors.New("rsql: consumer has no cursor")

	// ErrCursorChanged is wrapped by the error of
	// CursorAuditTable.MoveCursor when the stored cursor is not the one
	// the move starts from (CursorMove.From): it moved since it was read.
	// Nothing was changed.
	ErrCursorChanged = errors.New("rsql: cursor changed since it was read")
)

// testHookMoveLocked, if set, is called by MoveCursor inside its
// transaction, after the lease check.
var testHookMoveLocked atomic.Pointer[func()]

// CursorAuditSchema returns the DDL (CREATE TABLE IF NOT EXISTS) of a
// cursor audit table named table in dialect d: columns id
// (auto-increment), consumer (compared byte by byte, as the id of
// CursorsSchema), from_cursor and to_cursor (varchar(255)), reason
// (varchar(1024) in MySQL), forced (0 or 1) and created_at. The file
// schema/<dialect>/cursor_audit.sql holds the same DDL with the default
// name "cursor_audit", for migration tools. It panics with an "rsql:"
// message if table is not a valid identifier.
func CursorAuditSchema(d Dialect, table string) string {
	return schemaDDL(d, "cursor_audit.sql", "cursor_audit", table)
}

// CursorAuditTable records the cursor moves that operators make with
// MoveCursor (the reflex command's `cursor set` and `cursor reset`): one
// row per move with the consumer, the cursor before and after, the
// reason (who and why), whether a held lease was overridden, and the
// database's time. It must be in the database of the cursors table: a
// move and its row are written in one transaction.
//
// A CursorAuditTable is safe for concurrent use and owns no goroutine.
type CursorAuditTable struct {
	name string
	d    dialect
	// quoted names of the table and its columns
	table, id, consumer, from, to, reason, forced, created string
	cols                                                   *columns
	meta                                                   lazy[auditMeta]
}

// auditMeta is what the audit table's columns accept, read on first use.
type auditMeta struct {
	consumer               nameKey
	from, to, reason       column
	fromWhat, toWhat, rWhy string
}

// CursorAuditOption configures a CursorAuditTable; see
// NewCursorAuditTable.
type CursorAuditOption func(*auditConfig)

type auditConfig struct {
	dialect Dialect
}

// WithCursorAuditDialect selects the SQL dialect of the table. Default
// MySQL.
func WithCursorAuditDialect(d Dialect) CursorAuditOption {
	return func(c *auditConfig) { c.dialect = d }
}

// NewCursorAuditTable returns the cursor audit table named name, with the
// columns of CursorAuditSchema. Default dialect: MySQL. It does no I/O:
// the table reads its columns from the catalog on first use. It panics
// with an "rsql:" message if name is not a valid identifier or an option
// is nil: these are programming errors.
func NewCursorAuditTable(name string, opts ...CursorAuditOption) *CursorAuditTable {
	var cfg auditConfig
	for _, o := range opts {
		if o == nil {
			panic("rsql: NewCursorAuditTable: nil option")
		}
		o(&cfg)
	}
	mustIdent("cursor audit table", name)
	d := cfg.dialect.impl()
	q := d.quote
	return &CursorAuditTable{
		name: name, d: d, cols: newColumns(d, name),
		table: q(name), id: q("id"), consumer: q("consumer"), from: q("from_cursor"), to: q("to_cursor"),
		reason: q("reason"), forced: q("forced"), created: q("created_at"),
	}
}

// Name returns the table name given to NewCursorAuditTable.
func (a *CursorAuditTable) Name() string { return a.name }

// CheckSchema reads the table's columns from the catalog (once per table
// value) and returns an error wrapping ErrSchema if the table does not
// exist, lacks one of its columns or has a consumer column that folds
// names, or the database's error.
func (a *CursorAuditTable) CheckSchema(ctx context.Context, dbc DBC) error {
	if isNilDBC(dbc) {
		return fmt.Errorf("rsql: cursor audit table %s: nil DBC", a.name)
	}
	_, err := a.loadMeta(ctx, dbc)
	return err
}

func (a *CursorAuditTable) loadMeta(ctx context.Context, dbc DBC) (*auditMeta, error) {
	return a.meta.get(func() (*auditMeta, error) {
		cols, err := a.cols.lookup(ctx, dbc, "id", "consumer", "from_cursor", "to_cursor", "reason", "forced", "created_at")
		if err != nil {
			return nil, err
		}
		table := unquote(a.name)
		key, err := loadNameKey(ctx, a.d, dbc, table, "consumer", cols[1])
		if err != nil {
			return nil, err
		}
		return &auditMeta{
			consumer: key, from: cols[2], to: cols[3], reason: cols[4],
			fromWhat: table + ".from_cursor", toWhat: table + ".to_cursor", rWhy: table + ".reason",
		}, nil
	})
}

// CursorMove is an operator's change of a consumer's cursor; see
// CursorAuditTable.MoveCursor.
type CursorMove struct {
	// Consumer is the name of the consumer whose cursor moves.
	Consumer string
	// From is the cursor the operator read: the move fails with
	// ErrCursorChanged if the stored cursor is another.
	From string
	// To is the new cursor, before or after From ("0" replays every
	// event in a table of int cursors).
	To string
	// Reason says who moves the cursor and why. It is required.
	Reason string
	// Force moves the cursor even while a lease shows the consumer
	// running; the audit row records it.
	Force bool
}

// CursorAudit is a row of a cursor audit table: a cursor move.
type CursorAudit struct {
	ID        int64
	Consumer  string
	From, To  string
	Reason    string
	Forced    bool
	CreatedAt time.Time
}

// MoveCursor moves the cursor of m.Consumer in cursors from m.From to
// m.To, backwards or forwards, and records the move in the audit table,
// in one transaction of db, the database of both tables (and of leases),
// then returns the audit row. It blocks for the transaction and is safe
// for concurrent use.
//
// If leases is not nil, the transaction first reads (and, except with
// SQLite, whose writers are serialised, locks against claims until it
// ends) the leases that show the consumer running (see RunningLease); if
// one is held and m.Force is not set, MoveCursor returns an error
// wrapping ErrConsumerRunning that names the lease and its owner. With
// leases nil, or forced, a consumer that is running with an asynchronous
// CursorsTable or a TxConsumer finds at its next flush or commit that
// its cursor changed (ErrConcurrentWriter) and restarts from the moved
// cursor; one with a synchronous table may write over the move: stop
// consumers before moving their cursors unless leases say they are
// stopped.
//
// Errors, with nothing changed: ErrCursorNotFound (no row for the
// consumer), ErrCursorChanged (the stored cursor is not m.From),
// ErrConsumerRunning, ErrInvalidValue or ErrInvalidCursor (a name, cursor
// or reason that the tables cannot hold: an empty reason, a cursor that
// is not a canonical int in a table of int cursors), ErrSchema (a table
// without its columns), and the database's errors; all wrapped with the
// consumer's name.
func (a *CursorAuditTable) MoveCursor(ctx context.Context, db *sql.DB, cursors *CursorsTable, leases *LeasesTable, m CursorMove) (CursorAudit, error) {
	rec, err := a.move(ctx, db, cursors, leases, m)
	if err != nil {
		return CursorAudit{}, fmt.Errorf("rsql: move the cursor of consumer %s in %s from %s to %s: %w",
			bounded.Quote(m.Consumer), cursorsName(cursors), bounded.Quote(m.From), bounded.Quote(m.To), err)
	}
	return rec, nil
}

func cursorsName(t *CursorsTable) string {
	if t == nil {
		return "<nil>"
	}
	return t.name
}

func (a *CursorAuditTable) move(ctx context.Context, db *sql.DB, cursors *CursorsTable, leases *LeasesTable, m CursorMove) (CursorAudit, error) {
	if db == nil || cursors == nil {
		return CursorAudit{}, errors.New("nil *sql.DB or cursors table")
	}
	from, err := cursors.parseAny(m.From)
	if err != nil {
		return CursorAudit{}, fmt.Errorf("from: %w", err)
	}
	to, err := cursors.parseAny(m.To)
	if err != nil {
		return CursorAudit{}, fmt.Errorf("to: %w", err)
	}
	if err := a.check(ctx, db, cursors, leases, m); err != nil {
		return CursorAudit{}, err
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return CursorAudit{}, err
	}
	defer tx.Rollback()
	if leases != nil {
		if err := a.checkLeases(ctx, tx, leases, m); err != nil {
			return CursorAudit{}, err
		}
	}
	if h := testHookMoveLocked.Load(); h != nil {
		(*h)()
	}
	// Read and lock the cursor row.
	c := cursors
	q := c.stmt()
	q.sql("SELECT ", c.curCol, " FROM ", c.table, " WHERE ", c.idCol, " = ")
	q.val(m.Consumer)
	q.sql(a.d.lockRows())
	var stored sql.NullString
	switch err := tx.QueryRowContext(ctx, q.String(), q.args...).Scan(&stored); {
	case errors.Is(err, sql.ErrNoRows):
		return CursorAudit{}, ErrCursorNotFound
	case err != nil:
		return CursorAudit{}, err
	}
	if cur, ok := c.parseStored(stored.String); !ok || cur != from {
		return CursorAudit{}, fmt.Errorf("%w: the stored cursor is %s", ErrCursorChanged, bounded.Quote(stored.String))
	}

	q = c.stmt()
	q.sql("UPDATE ", c.table, " SET ", c.curCol, " = ")
	c.cursorVal(q, to)
	q.sql(", ", c.timeCol, " = ", c.d.now(), " WHERE ", c.idCol, " = ")
	q.val(m.Consumer)
	q.sql(" AND ")
	c.d.cursorCmp(q, c.curCol, "=", !c.cfg.strings, func() { c.cursorVal(q, from) })
	res, err := tx.ExecContext(ctx, q.String(), q.args...)
	if err != nil {
		return CursorAudit{}, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return CursorAudit{}, err
	} else if n != 1 {
		return CursorAudit{}, fmt.Errorf("%w: the update changed %d rows", ErrCursorChanged, n)
	}

	q = &sqlStmt{d: a.d}
	q.sql("INSERT INTO ", a.table, " (", a.consumer, ", ", a.from, ", ", a.to, ", ", a.reason, ", ", a.forced, ", ", a.created, ") VALUES (")
	q.val(m.Consumer)
	q.sql(", ")
	q.val(from.s)
	q.sql(", ")
	q.val(to.s)
	q.sql(", ")
	q.val(m.Reason)
	q.sql(", ")
	q.val(boolInt(m.Force))
	q.sql(", ", a.d.now(), ")")
	a.d.returningID(q, a.id)
	id, err := a.d.execInsertID(ctx, tx, q)
	if err != nil {
		return CursorAudit{}, fmt.Errorf("insert into %s: %w", a.name, err)
	}
	rec, err := a.get(ctx, tx, id)
	if err != nil {
		return CursorAudit{}, err
	}
	if err := tx.Commit(); err != nil {
		return CursorAudit{}, err
	}
	return rec, nil
}

// check validates m against the tables' columns before the transaction.
func (a *CursorAuditTable) check(ctx context.Context, db *sql.DB, cursors *CursorsTable, leases *LeasesTable, m CursorMove) error {
	if m.Reason == "" {
		return fmt.Errorf("%w: %s: empty reason (say who moves the cursor and why)", ErrInvalidValue, unquote(a.name)+".reason")
	}
	cm, err := cursors.loadMeta(ctx, db)
	if err != nil {
		return err
	}
	if err := cm.key.check(m.Consumer); err != nil {
		return err
	}
	am, err := a.loadMeta(ctx, db)
	if err != nil {
		return err
	}
	if err := am.consumer.check(m.Consumer); err != nil {
		return err
	}
	for _, c := range []struct {
		col     column
		what, s string
	}{{am.from, am.fromWhat, m.From}, {am.to, am.toWhat, m.To}, {am.reason, am.rWhy, m.Reason}} {
		if err := c.col.checkString(c.what, c.s); err != nil {
			return err
		}
	}
	if leases != nil {
		if _, err := leases.loadMeta(ctx, db); err != nil {
			return err
		}
	}
	return nil
}

// checkLeases reads (and locks) the leases that can show m.Consumer
// running and refuses an unforced move if one is held.
func (a *CursorAuditTable) checkLeases(ctx context.Context, tx *sql.Tx, leases *LeasesTable, m CursorMove) error {
	q := leases.stmt()
	leases.leasesQuery(q)
	q.sql(" WHERE ", leases.lc.name, " IN (")
	for i, n := range leaseNames(m.Consumer) {
		if i > 0 {
			q.sql(", ")
		}
		q.val(n)
	}
	q.sql(")", a.d.lockRows())
	states, err := leases.scanLeases(ctx, tx, q)
	if err != nil {
		return fmt.Errorf("read the leases of %s: %w", leases.name, err)
	}
	if l, ok := RunningLease(m.Consumer, states); ok && !m.Force {
		return runningError(leases.name, l)
	}
	return nil
}

// runningError is the error of a move refused because of lease l.
func runningError(table string, l rpatterns.LeaseState) error {
	return fmt.Errorf("%w: lease %s shard %d of %d in table %s is held by %s for %v more (stop the consumer, or force the move)",
		ErrConsumerRunning, bounded.Quote(l.Name), l.Shard, l.Shards, table, bounded.Quote(l.Owner), l.Left.Round(time.Millisecond))
}

// get reads the audit row id.
func (a *CursorAuditTable) get(ctx context.Context, dbc DBC, id int64) (CursorAudit, error) {
	q := a.selectRows()
	q.sql(" WHERE ", a.id, " = ")
	q.val(id)
	var out []CursorAudit
	if err := a.scan(ctx, dbc, q, &out); err != nil {
		return CursorAudit{}, err
	}
	if len(out) != 1 {
		return CursorAudit{}, fmt.Errorf("read back audit row %d of %s: %d rows", id, a.name, len(out))
	}
	return out[0], nil
}

func (a *CursorAuditTable) selectRows() *sqlStmt {
	q := &sqlStmt{d: a.d}
	q.sql("SELECT ", a.id, ", ", a.consumer, ", ", a.from, ", ", a.to, ", ", a.reason, ", ", a.forced, ", ", a.created, " FROM ", a.table)
	return q
}

func (a *CursorAuditTable) scan(ctx context.Context, dbc DBC, q *sqlStmt, out *[]CursorAudit) error {
	return scanRows(ctx, dbc, q, func(rows *sql.Rows) error {
		var (
			r      CursorAudit
			forced int64
		)
		if err := rows.Scan(&r.ID, &r.Consumer, &r.From, &r.To, &r.Reason, &forced, &r.CreatedAt); err != nil {
			return err
		}
		r.Forced = forced != 0
		*out = append(*out, r)
		return nil
	})
}

// List returns the newest limit moves of consumer (of every consumer if
// consumer is ""), newest first; limit < 1 means 100. Database errors are
// returned wrapped with the table name.
func (a *CursorAuditTable) List(ctx context.Context, dbc DBC, consumer string, limit int) ([]CursorAudit, error) {
	if isNilDBC(dbc) {
		return nil, fmt.Errorf("rsql: list the moves in %s: nil DBC", a.name)
	}
	if limit < 1 {
		limit = 100
	}
	q := a.selectRows()
	if consumer != "" {
		q.sql(" WHERE ", a.consumer, " = ")
		q.val(consumer)
	}
	q.sql(" ORDER BY ", a.id, " DESC LIMIT ")
	q.val(limit)
	var out []CursorAudit
	if err := a.scan(ctx, dbc, q, &out); err != nil {
		return nil, fmt.Errorf("rsql: list the moves in %s: %w", a.name, err)
	}
	return out, nil
}

// parseAny validates a cursor of the table, without the name in errors.
func (t *CursorsTable) parseAny(cursor string) (cursorVal, error) {
	if t.cfg.strings {
		if cursor == "" {
			return cursorVal{}, fmt.Errorf("%w: empty cursor", ErrInvalidValue)
		}
		return cursorVal{s: cursor}, nil
	}
	n, err := parseCursor(cursor)
	if err != nil {
		return cursorVal{}, err
	}
	return cursorVal{s: cursor, n: n, isInt: true}, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
