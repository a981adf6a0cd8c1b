package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

// ErrLeaseLost is wrapped by the errors of cursor writes through a cursor
// store fenced by a lease (LeaseStore.FenceCursorStore) that its holder no
// longer holds: the lease expired, or another member claimed it (a new
// epoch). Nothing was written. It is rpatterns.ErrLeaseLost, so that the
// runners of package rpatterns recognise it. A background flush that
// meets it drops the consumer's buffered cursor and returns the error
// from the consumer's next SetCursor with the same lease.
var ErrLeaseLost = rpatterns.ErrLeaseLost

// LeasesSchema returns the DDL (CREATE TABLE IF NOT EXISTS) of a leases
// table named table in dialect d: columns name (the consumer name,
// varbinary(255) in MySQL, text with the binary collation in SQLite, so
// that names compare byte by byte), shard (int), shards (int), owner
// (compared like name), epoch (bigint) and expires_at (datetime), with
// primary key (name, shard). The file schema/<dialect>/leases.sql holds
// the same DDL with the default name "leases", for migration tools. It
// panics with an "rsql:" message if table is not a valid identifier.
func LeasesSchema(d Dialect, table string) string {
	return schemaDDL(d, "leases.sql", "leases", table)
}

// LeasesTable keeps the leases with which processes share the shards of a
// consumer (see package rpatterns: RunSharded, RunLeased, HoldLease): one
// row per (name, shard) with its owner, its epoch (the fencing token,
// incremented by every claim) and its expiry, computed and compared by the
// database's clock, never by the processes'. Every statement is a short
// autocommit statement, so the table works through connection poolers.
// Use ToStore for an rpatterns.LeaseStore.
//
// The table must be in the database of the cursors table whose writes it
// fences: a fenced write is one statement over both tables. Names and
// owners follow the rule for consumer names of CursorsTable (non-empty,
// valid UTF-8, at most 255 bytes, compared byte by byte); on first use the
// table reads its columns from the catalog and refuses, with ErrSchema, a
// table without one of its columns or whose name column would fold names.
//
// A LeasesTable is safe for concurrent use and owns no goroutine.
type LeasesTable struct {
	name string
	d    dialect
	lc   leaseCols
	cols *columns
	meta lazy[leasesMeta]
}

// leasesMeta is what the table's columns accept, read on first use.
type leasesMeta struct {
	name, owner nameKey
}

// LeasesOption configures a LeasesTable; see NewLeasesTable.
type LeasesOption func(*leasesConfig)

type leasesConfig struct {
	dialect Dialect
}

// WithLeasesDialect selects the SQL dialect of the table: MySQL (the
// default), PostgreSQL or SQLite.
func WithLeasesDialect(d Dialect) LeasesOption {
	return func(c *leasesConfig) { c.dialect = d }
}

// NewLeasesTable returns the leases table named name, with the columns of
// LeasesSchema. Default dialect: MySQL. It does no I/O. It panics with an
// "rsql:" message if name is not a valid identifier or an option is nil:
// these are programming errors.
func NewLeasesTable(name string, opts ...LeasesOption) *LeasesTable {
	var cfg leasesConfig
	for _, o := range opts {
		if o == nil {
			panic("rsql: NewLeasesTable: nil option")
		}
		o(&cfg)
	}
	mustIdent("leases table", name)
	d := cfg.dialect.impl()
	return &LeasesTable{
		name: name,
		d:    d,
		cols: newColumns(d, name),
		lc: leaseCols{
			table: d.quote(name), name: d.quote("name"), shard: d.quote("shard"), shards: d.quote("shards"),
			owner: d.quote("owner"), epoch: d.quote("epoch"), expires: d.quote("expires_at"),
		},
	}
}

// Name returns the table name given to NewLeasesTable.
func (t *LeasesTable) Name() string { return t.name }

// ToStore returns the rpatterns.LeaseStore of the table through dbc,
// usually a *sql.DB. It panics with an "rsql:" message for a nil dbc or a
// *sql.Tx: leases need autocommit statements that other members see at
// once.
func (t *LeasesTable) ToStore(dbc DBC) *LeaseStore {
	if isNilDBC(dbc) {
		panic("rsql: LeasesTable.ToStore: nil DBC")
	}
	if _, ok := dbc.(*sql.Tx); ok {
		panic("rsql: LeasesTable.ToStore: a *sql.Tx cannot hold leases: pass a *sql.DB")
	}
	return &LeaseStore{t: t, dbc: dbc}
}

// loadMeta reads the table's columns from the catalog on first use.
func (t *LeasesTable) loadMeta(ctx context.Context, dbc DBC) (*leasesMeta, error) {
	return t.meta.get(func() (*leasesMeta, error) {
		cols, err := t.cols.lookup(ctx, dbc, "name", "shard", "shards", "owner", "epoch", "expires_at")
		if err != nil {
			return nil, err
		}
		table := unquote(t.name)
		name, err := loadNameKey(ctx, t.d, dbc, table, "name", cols[0])
		if err != nil {
			return nil, err
		}
		owner, err := loadNameKey(ctx, t.d, dbc, table, "owner", cols[3])
		if err != nil {
			return nil, err
		}
		return &leasesMeta{name: name, owner: owner}, nil
	})
}

// stmt returns a new statement builder.
func (t *LeasesTable) stmt() *sqlStmt {
	s := &sqlStmt{d: t.d}
	s.b.Grow(256)
	return s
}

// LeaseStore is the rpatterns.LeaseStore of a LeasesTable through a
// database handle, returned by LeasesTable.ToStore. Each method is one
// autocommit statement (ClaimLease of a lease the table does not have yet
// is an INSERT, else an UPDATE), plus on first use the catalog reads of
// the table (see LeasesTable). It is safe for concurrent use.
//
// Errors: ErrSchema (the table's columns) and ErrInvalidValue (a name or
// owner the columns cannot hold) are wrapped together with
// rpatterns.ErrInvalidLease, which the runners do not retry; other errors
// are the database's.
type LeaseStore struct {
	t   *LeasesTable
	dbc DBC
}

var _ rpatterns.LeaseStore = (*LeaseStore)(nil)

// check loads the catalog and checks the lease's name and owner.
func (s *LeaseStore) check(ctx context.Context, name, owner string) error {
	m, err := s.t.loadMeta(ctx, s.dbc)
	if err == nil {
		err = m.name.check(name)
	}
	if err == nil && owner != "" {
		err = m.owner.check(owner)
	}
	return err
}

// wrap returns err wrapped with the operation and the table, and with
// rpatterns.ErrInvalidLease if retrying cannot fix it.
func (s *LeaseStore) wrap(op, name string, err error) error {
	if errors.Is(err, ErrSchema) || errors.Is(err, ErrInvalidValue) {
		return fmt.Errorf("rsql: %s lease %s in table %s: %w: %w", op, bounded.Quote(name), s.t.name, rpatterns.ErrInvalidLease, err)
	}
	return fmt.Errorf("rsql: %s lease %s in table %s: %w", op, bounded.Quote(name), s.t.name, err)
}

// ScanLeases returns every lease named name, with the time left until
// its expiry measured by the database's clock. It implements
// rpatterns.LeaseStore.
func (s *LeaseStore) ScanLeases(ctx context.Context, name string) ([]rpatterns.LeaseState, error) {
	if err := s.check(ctx, name, ""); err != nil {
		return nil, s.wrap("scan", name, err)
	}
	t := s.t
	q := t.stmt()
	q.sql("SELECT ", t.lc.shard, ", ", t.lc.shards, ", ", t.lc.owner, ", ", t.lc.epoch, ", ")
	t.d.leaseLeft(q, t.lc.expires)
	q.sql(" FROM ", t.lc.table, " WHERE ", t.lc.name, " = ")
	q.val(name)
	rows, err := s.dbc.QueryContext(ctx, q.String(), q.args...)
	if err != nil {
		return nil, s.wrap("scan", name, err)
	}
	defer rows.Close()
	var out []rpatterns.LeaseState
	for rows.Next() {
		var (
			st   rpatterns.LeaseState
			left int64
		)
		if err := rows.Scan(&st.Shard, &st.Shards, &st.Owner, &st.Epoch, &left); err != nil {
			return nil, s.wrap("scan", name, err)
		}
		st.Name, st.Left = name, time.Duration(left)*time.Microsecond
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("scan", name, err)
	}
	return out, nil
}

// ClaimLease gives the lease (l.Name, l.Shard) to l.Owner for ttl if it is
// free (released, or expired by the database's clock) and its epoch is
// still l.Epoch, incrementing the epoch; a lease the table does not have
// yet (l.Epoch 0) is inserted with epoch 1. It returns an error wrapping
// rpatterns.ErrLeaseTaken if another member holds the lease or claimed it
// since the caller read it. It implements rpatterns.LeaseStore.
func (s *LeaseStore) ClaimLease(ctx context.Context, l rpatterns.Lease, ttl time.Duration) (rpatterns.Lease, error) {
	if l.Owner == "" || l.Epoch < 0 || ttl <= 0 {
		return rpatterns.Lease{}, s.wrap("claim", l.Name, fmt.Errorf("%w: owner %s, epoch %d, TTL %v", rpatterns.ErrInvalidLease, bounded.Quote(l.Owner), l.Epoch, ttl))
	}
	if err := s.check(ctx, l.Name, l.Owner); err != nil {
		return rpatterns.Lease{}, s.wrap("claim", l.Name, err)
	}
	t := s.t
	q := t.stmt()
	if l.Epoch == 0 {
		q.sql("INSERT INTO ", t.lc.table, " (", t.lc.name, ", ", t.lc.shard, ", ", t.lc.shards, ", ", t.lc.owner, ", ",
			t.lc.epoch, ", ", t.lc.expires, ") VALUES (")
		q.val(l.Name)
		q.sql(", ")
		q.val(int64(l.Shard))
		q.sql(", ")
		q.val(int64(l.Shards))
		q.sql(", ")
		q.val(l.Owner)
		q.sql(", 1, ")
		t.d.leaseExpiry(q, ttl.Microseconds())
		q.sql(")")
	} else {
		q.sql("UPDATE ", t.lc.table, " SET ", t.lc.owner, " = ")
		q.val(l.Owner)
		q.sql(", ", t.lc.epoch, " = ", t.lc.epoch, " + 1, ", t.lc.shards, " = ")
		q.val(int64(l.Shards))
		q.sql(", ", t.lc.expires, " = ")
		t.d.leaseExpiry(q, ttl.Microseconds())
		q.sql(" WHERE ", t.lc.name, " = ")
		q.val(l.Name)
		q.sql(" AND ", t.lc.shard, " = ")
		q.val(int64(l.Shard))
		q.sql(" AND ", t.lc.epoch, " = ")
		q.val(l.Epoch)
		q.sql(" AND (", t.lc.owner, " = ")
		q.val("")
		q.sql(" OR ", t.lc.expires, " <= ", t.d.now(), ")")
	}
	res, err := s.dbc.ExecContext(ctx, q.String(), q.args...)
	if err != nil {
		if l.Epoch == 0 && t.d.isDuplicateKey(err) {
			return rpatterns.Lease{}, s.taken(l)
		}
		return rpatterns.Lease{}, s.wrap("claim", l.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return rpatterns.Lease{}, s.wrap("claim", l.Name, err)
	} else if n != 1 {
		return rpatterns.Lease{}, s.taken(l)
	}
	l.Epoch++
	return l, nil
}

// taken is the error of a claim that another member won.
func (s *LeaseStore) taken(l rpatterns.Lease) error {
	return fmt.Errorf("rsql: claim lease %s shard %d in table %s for %s: %w (epoch %d is held or past)",
		bounded.Quote(l.Name), l.Shard, s.t.name, bounded.Quote(l.Owner), rpatterns.ErrLeaseTaken, l.Epoch)
}

// RenewLeases makes each of ls, which must share one name and owner,
// expire ttl from now by the database's clock, if it is still held with
// its epoch and has not expired, in one UPDATE. It returns the number of
// leases renewed. It implements rpatterns.LeaseStore.
func (s *LeaseStore) RenewLeases(ctx context.Context, ls []rpatterns.Lease, ttl time.Duration) (int, error) {
	if len(ls) == 0 {
		return 0, nil
	}
	if ttl <= 0 {
		return 0, s.wrap("renew", ls[0].Name, fmt.Errorf("%w: TTL %v", rpatterns.ErrInvalidLease, ttl))
	}
	q, err := s.update(ctx, "renew", ls, func(q *sqlStmt) {
		s.t.d.leaseExpiry(q, ttl.Microseconds())
	})
	if err != nil {
		return 0, err
	}
	q.sql(" AND ", s.t.lc.expires, " > ", s.t.d.now())
	res, err := s.dbc.ExecContext(ctx, q.String(), q.args...)
	if err != nil {
		return 0, s.wrap("renew", ls[0].Name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.wrap("renew", ls[0].Name, err)
	}
	return int(n), nil
}

// ReleaseLeases frees each of ls, which must share one name and owner,
// that is still held with its epoch (empty owner, expired now), in one
// UPDATE: another member can claim it at once. It implements
// rpatterns.LeaseStore.
func (s *LeaseStore) ReleaseLeases(ctx context.Context, ls []rpatterns.Lease) error {
	if len(ls) == 0 {
		return nil
	}
	q, err := s.update(ctx, "release", ls, func(q *sqlStmt) { q.sql(s.t.d.now()) })
	if err != nil {
		return err
	}
	if _, err := s.dbc.ExecContext(ctx, q.String(), q.args...); err != nil {
		return s.wrap("release", ls[0].Name, err)
	}
	return nil
}

// update starts an UPDATE of the rows of ls setting expires_at to what
// expiry writes (and, for a release, the owner to ""), conditioned on
// their name, owner and (shard, epoch) pairs.
func (s *LeaseStore) update(ctx context.Context, op string, ls []rpatterns.Lease, expiry func(q *sqlStmt)) (*sqlStmt, error) {
	name, owner := ls[0].Name, ls[0].Owner
	for _, l := range ls[1:] {
		if l.Name != name || l.Owner != owner {
			return nil, s.wrap(op, name, fmt.Errorf("%w: leases of several names or owners in one call", rpatterns.ErrInvalidLease))
		}
	}
	if err := s.check(ctx, name, owner); err != nil {
		return nil, s.wrap(op, name, err)
	}
	t := s.t
	q := t.stmt()
	q.sql("UPDATE ", t.lc.table, " SET ", t.lc.expires, " = ")
	expiry(q)
	if op == "release" {
		q.sql(", ", t.lc.owner, " = ")
		q.val("")
	}
	q.sql(" WHERE ", t.lc.name, " = ")
	q.val(name)
	q.sql(" AND ", t.lc.owner, " = ")
	q.val(owner)
	q.sql(" AND (")
	for i, l := range ls {
		if i > 0 {
			q.sql(" OR ")
		}
		q.sql("(", t.lc.shard, " = ")
		q.val(int64(l.Shard))
		q.sql(" AND ", t.lc.epoch, " = ")
		q.val(l.Epoch)
		q.sql(")")
	}
	q.sql(")")
	return q, nil
}

// FenceCursorStore returns a view of store, which must come from
// CursorsTable.ToStore with the dialect of the leases table, whose cursor
// writes (SetCursor in synchronous mode, the flushes of an asynchronous
// table, and the writes of a TxConsumer built on it) each take effect
// only while l is held (same owner and epoch, not expired), checked in
// the same statement as the write: on MySQL/MariaDB a multi-table UPDATE
// (or INSERT ... SELECT ... FOR UPDATE) that locks the lease row, so a
// concurrent claim waits for the write's transaction; on SQLite a
// subquery, SQLite running one writer at a time. A refused write changes
// nothing and returns an error wrapping ErrLeaseLost, and lost (if not
// nil) is called. The view's Flush is bounded by the cursors table's
// flush timeout; GetCursor reads as the table does and adopts a cursor
// buffered under an earlier lease as the view's own.
//
// The cursors table must be in the database of the leases table. It
// returns an error wrapping rpatterns.ErrInvalidLease for another kind of
// store, another dialect, or a lease without name, owner or epoch. It
// implements rpatterns.LeaseStore.
func (s *LeaseStore) FenceCursorStore(store reflex.CursorStore, l rpatterns.Lease, lost func()) (reflex.CursorStore, error) {
	cs, ok := store.(*CursorStore)
	switch {
	case !ok || cs == nil:
		return nil, fmt.Errorf("%w: rsql: leases table %s fences the cursor stores of rsql cursors tables (CursorsTable.ToStore), not %T",
			rpatterns.ErrInvalidLease, s.t.name, store)
	case cs.t.d.name() != s.t.d.name():
		return nil, fmt.Errorf("%w: rsql: leases table %s (%s) cannot fence cursors table %s (%s): use one dialect and database",
			rpatterns.ErrInvalidLease, s.t.name, s.t.d.name(), cs.t.name, cs.t.d.name())
	case l.Name == "" || l.Owner == "" || l.Epoch <= 0:
		return nil, fmt.Errorf("%w: rsql: fence with lease %s shard %d epoch %d of %s: need a name, an owner and an epoch",
			rpatterns.ErrInvalidLease, bounded.Quote(l.Name), l.Shard, l.Epoch, bounded.Quote(l.Owner))
	}
	return &fencedStore{s: cs, f: &fence{lt: s.t, name: l.Name, shard: l.Shard, owner: l.Owner, epoch: l.Epoch, lost: lost}}, nil
}

// fence is a lease that conditions cursor writes.
type fence struct {
	lt    *LeasesTable
	name  string
	shard int
	owner string
	epoch int64
	lost  func() // may be nil
}

// String describes the lease for error messages.
func (f *fence) String() string {
	return fmt.Sprintf("lease %s shard %d epoch %d of %s in table %s", bounded.Quote(f.name), f.shard, f.epoch, bounded.Quote(f.owner), f.lt.name)
}

// held reports whether the lease is still held, read through dbc.
func (f *fence) held(ctx context.Context, dbc DBC) (bool, error) {
	q := f.lt.stmt()
	q.sql("SELECT 1 FROM ", f.lt.lc.table, " WHERE ")
	heldCond(q, f, "")
	var one int
	err := dbc.QueryRowContext(ctx, q.String(), q.args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// lostErr is the error of a write refused because the lease is lost; it
// calls the lease's lost function.
func (f *fence) lostErr(table, name string, cursor string) error {
	if f.lost != nil {
		f.lost()
	}
	return fmt.Errorf("rsql: set cursor of consumer %s to %s in table %s: %w: %s is no longer held", bounded.Quote(name), bounded.Quote(cursor), table, ErrLeaseLost, f)
}

// fencedStore is a CursorStore whose writes are fenced by a lease.
type fencedStore struct {
	s *CursorStore
	f *fence
}

var _ reflex.CursorStore = (*fencedStore)(nil)

// GetCursor returns the cursor of name: see CursorsTable.GetCursor. A
// cursor buffered for name under another lease is written under this
// one from now on.
func (fs *fencedStore) GetCursor(ctx context.Context, name string) (string, error) {
	return fs.s.t.getCursor(ctx, fs.s.dbc, name, fs.f)
}

// SetCursor sets the cursor of name, fenced by the lease: see
// CursorsTable.SetCursor and LeaseStore.FenceCursorStore.
func (fs *fencedStore) SetCursor(ctx context.Context, name, cursor string) error {
	return fs.s.t.setCursor(ctx, fs.s.dbc, name, cursor, fs.f)
}

// Flush writes the buffered cursors of the table (see CursorsTable.Flush),
// bounded by the table's flush timeout.
func (fs *fencedStore) Flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fs.s.t.cfg.flushTimeout)
	defer cancel()
	return fs.s.t.Flush(ctx)
}
