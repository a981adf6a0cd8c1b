package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// cursorsPerStatement caps the rows of one flush statement, keeping it far
// below both the placeholder limit and a default max_allowed_packet.
const cursorsPerStatement = 1000

// CursorsTable stores the cursors of consumers in a SQL table, one row per
// consumer: the consumer name (primary key), its cursor and the time of the
// last write (see CursorsSchema). Use ToStore to get a [reflex.CursorStore].
//
// # Names
//
// A consumer name must be non-empty, valid UTF-8 and fit the name column
// (255 bytes with the shipped DDL); a name that breaks the rule is refused
// with an error wrapping ErrInvalidValue, never stored cut. Names compare
// byte by byte: "Orders", "orders", "é", "e" and "e " have five cursors.
// On first use the table reads its columns from the database's catalog
// and refuses (with ErrSchema) a name column whose collation would fold
// names that differ in case or accents into one row. A binary collation
// that ignores trailing spaces (MySQL's utf8mb4_bin) is accepted, but
// names that end in a space are then refused.
//
// # Writes
//
// A cursor only moves forward: a write of a cursor that is not strictly
// greater than the stored one fails (synchronous mode) or is ignored
// (asynchronous flush). Int cursors compare as integers, string cursors
// (WithCursorStrings) byte by byte. A cursor that does not fit the cursor
// column is refused with ErrInvalidValue.
//
// In asynchronous mode (the default) SetCursor only records the latest
// cursor of each consumer in memory; the first SetCursor starts one
// background goroutine, owned by the table, that flushes the buffer every
// period until Close. GetCursor returns what the table will write: the
// buffered cursor if there is one, else the stored one. A crash loses at
// most one period of progress, which is replayed (at-least-once delivery).
// Call Close when done with the table: it stops the goroutine and writes
// the buffer, within the flush timeout (WithCursorFlushTimeout).
//
// # Two writers of one name
//
// An asynchronous table remembers, for each consumer, the cursor it last
// read or wrote, and writes a cursor only over that one. If another
// writer changed it meanwhile (a second process running the same consumer
// name), the flush reports ErrConcurrentWriter: Flush and Close return
// it, a background flush makes the consumer's next SetCursor return it, so
// that reflex.Run stops instead of processing every event twice. A
// synchronous table refuses a cursor not greater than the stored one,
// which two writers of one name soon meet.
//
// An asynchronous table keeps a few words per consumer name it has seen.
// A CursorsTable is safe for concurrent use. Unlike luno/reflex, whose
// NewCursorsTable returns an interface, it is a concrete type.
type CursorsTable struct {
	name string
	opts []CursorsOption
	cfg  cursorsConfig
	d    dialect
	// quoted names of the table and its columns
	table, idCol, curCol, timeCol string
	cols                          *columns
	meta                          lazy[cursorsMeta]

	counter    func()
	flushError func()
	conflicts  func()

	// sem serialises flushes, and in asynchronous mode GetCursor with
	// them; a channel so that waiting for it honours a context. Lock
	// order: sem, then the catalog locks (meta, cols), then mu.
	sem chan struct{}
	// batch is the rows of the current flush, reused; owned by the holder
	// of sem.
	batch []flushRow

	mu sync.Mutex // protects the following fields
	// entries holds what the table knows of each consumer it has seen.
	entries map[string]*cursorEntry
	// dirty lists the entries with a buffered cursor (an entry whose
	// cursor was dropped since may appear, and one may appear twice).
	dirty []*cursorEntry
	// dbc is the handle of the latest buffered SetCursor; flushes use it.
	dbc     DBC
	started bool
	closed  bool
	stop    context.CancelFunc
	// stores are the tables that ToStore cloned with options; Close
	// closes them.
	stores []*CursorsTable

	wg        sync.WaitGroup // the flush loop
	closeOnce sync.Once
	closeErr  error
}

// cursorsMeta is what the table's columns accept, read from the catalog
// on first use.
type cursorsMeta struct {
	key     nameKey
	cur     column
	curWhat string // table.column of cursors, for messages
}

// storedState is what an asynchronous table knows of a consumer's row.
type storedState uint8

const (
	stateUnknown storedState = iota // never read nor written by the table
	stateAbsent                     // read: no row
	stateKnown                      // read or written: the stored cursor
)

// cursorEntry is what an asynchronous table knows of one consumer.
type cursorEntry struct {
	name string
	// pending is the buffered cursor, if dirty.
	pending cursorVal
	dirty   bool
	// stored is the cursor last read or written, if state is stateKnown.
	stored cursorVal
	state  storedState
	// checked reports whether name was checked against the catalog.
	checked bool
	// err is a flush error to return from the next SetCursor.
	err error
	// fence is the lease that fences the pending cursor (nil: none);
	// errFence the one whose loss err reports (nil for other errors).
	fence, errFence *fence
}

// NewCursorsTable returns a table of cursors named name. Defaults: columns
// id, last_event_id, updated_at; int cursors; asynchronous writes every 5 s,
// each flush bounded by 10 s; MySQL dialect; the set counter increments
// reflex_cursors_table_set_total.
//
// NewCursorsTable does no I/O: the table reads its columns from the
// catalog on first use. It panics with an "rsql:" message if name or a
// column name is not a valid identifier, if the async period is negative
// or the flush timeout not positive, or an option is nil: these are
// programming errors.
func NewCursorsTable(name string, opts ...CursorsOption) *CursorsTable {
	cfg := defaultCursorsConfig()
	for _, o := range opts {
		if o == nil {
			panic("rsql: NewCursorsTable: nil option")
		}
		o(&cfg)
	}
	mustIdent("cursors table", name)
	mustIdent("cursor id column", cfg.idField)
	mustIdent("cursor column", cfg.cursorField)
	mustIdent("cursor time column", cfg.timeField)
	if cfg.period < 0 {
		panic(fmt.Sprintf("rsql: NewCursorsTable(%q): negative async period %v", name, cfg.period))
	}
	if cfg.flushTimeout <= 0 {
		panic(fmt.Sprintf("rsql: NewCursorsTable(%q): flush timeout %v is not positive", name, cfg.flushTimeout))
	}
	d := cfg.dialect.impl()

	label := unquote(name)
	t := &CursorsTable{
		name:       name,
		opts:       slices.Clone(opts),
		cfg:        cfg,
		d:          d,
		table:      d.quote(name),
		cols:       newColumns(d, name),
		counter:    cfg.counter,
		flushError: metrics.CursorsTableFlushErrors(label).Inc,
		conflicts:  metrics.CursorsTableConcurrentWriters(label).Inc,
		sem:        make(chan struct{}, 1),
		entries:    make(map[string]*cursorEntry),
	}
	if !cfg.counterSet {
		t.counter = metrics.CursorsTableSet(label).Inc
	}
	t.idCol, t.curCol, t.timeCol = d.quote(cfg.idField), d.quote(cfg.cursorField), d.quote(cfg.timeField)
	return t
}

// Name returns the table name given to NewCursorsTable.
func (t *CursorsTable) Name() string { return t.name }

// GetCursor returns the cursor of consumerName, or "" if it has none. In
// asynchronous mode that is the cursor the table will write: the one
// buffered for the consumer if any (also after a failed flush), else the
// stored one; GetCursor also forgets an error a background flush kept for
// the consumer's next SetCursor, and adopts the stored cursor as the one
// the next flush writes over (see ErrConcurrentWriter). It waits for a
// flush in progress.
//
// It returns an error wrapping ErrInvalidValue for a name that breaks the
// rule for names (see CursorsTable), ErrSchema if the table's columns do
// not fit, and the database's errors. It is safe for concurrent use.
func (t *CursorsTable) GetCursor(ctx context.Context, dbc DBC, consumerName string) (string, error) {
	return t.getCursor(ctx, dbc, consumerName, nil)
}

// getCursor is GetCursor through a store fenced by f (nil: not fenced): a
// cursor buffered for the consumer under another lease is written under
// f from now on.
func (t *CursorsTable) getCursor(ctx context.Context, dbc DBC, consumerName string, f *fence) (string, error) {
	const op = "get cursor"
	if isNilDBC(dbc) {
		return "", t.opErr(op, consumerName, errors.New("nil DBC"))
	}
	m, err := t.loadMeta(ctx, dbc)
	if err != nil {
		return "", t.opErr(op, consumerName, err)
	}
	if err := m.key.check(consumerName); err != nil {
		return "", t.opErr(op, consumerName, err)
	}
	if t.cfg.period <= 0 {
		s, _, err := t.read(ctx, dbc, consumerName)
		if err != nil {
			return "", t.opErr(op, consumerName, err)
		}
		return s, nil
	}

	if err := t.acquire(ctx); err != nil {
		return "", t.opErr(op, consumerName, err)
	}
	defer t.release()
	s, found, err := t.read(ctx, dbc, consumerName)
	if err != nil {
		return "", t.opErr(op, consumerName, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entryLocked(consumerName)
	e.checked, e.err, e.errFence = true, nil, nil
	switch v, ok := t.parseStored(s); {
	case !found:
		e.state = stateAbsent
	case ok:
		e.state, e.stored = stateKnown, v
	default:
		e.state = stateUnknown
	}
	if e.dirty {
		if e.state != stateKnown || t.less(e.stored, e.pending) {
			if f != nil {
				e.fence = f
			}
			return e.pending.s, nil
		}
		e.dirty = false // the stored cursor is ahead: never write it back
	}
	return s, nil
}

// read returns the stored cursor of name and whether its row exists.
func (t *CursorsTable) read(ctx context.Context, dbc DBC, name string) (string, bool, error) {
	q := t.stmt()
	q.sql("SELECT ", t.curCol, " FROM ", t.table, " WHERE ", t.idCol, " = ")
	q.val(name)
	var cur sql.NullString
	err := dbc.QueryRowContext(ctx, q.String(), q.args...).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return cur.String, true, nil
}

// SetCursor sets the cursor of consumerName. The cursor must be valid for
// the table: a canonical non-negative int64 by default (else the error
// wraps ErrInvalidCursor), any non-empty string with WithCursorStrings;
// and it must fit the cursor column (else ErrInvalidValue). The name must
// follow the rule for names (see CursorsTable; else ErrInvalidValue); a
// table whose columns do not fit gives ErrSchema.
//
// In synchronous mode it updates the row if the stored cursor is strictly
// less than cursor, else inserts it; if the row exists (the stored cursor
// is equal or greater) the error is a *CursorConflictError wrapping
// ErrCursorNotIncreasing. On success the set counter is called.
//
// In asynchronous mode it does no I/O: it buffers cursor as the
// consumer's latest, refusing (with a *CursorConflictError) a cursor not
// greater than the one buffered or last read or written for the consumer,
// and remembers dbc for the next flush. A flush runs later, so dbc must
// outlive the call: a *sql.Tx is refused (use a *sql.DB, or synchronous
// mode to write within a transaction). The first call starts the
// background flush. If a background flush could not write the consumer's
// cursor for good (ErrConcurrentWriter, or a row the database refused),
// the next SetCursor of the consumer returns that error once, without
// buffering cursor. Names are checked against the catalog once it has
// been read (by GetCursor or a flush); until then a flush checks them.
//
// After Close it returns an error wrapping ErrCursorsTableClosed; a nil
// dbc is an error too.
//
// SetCursor is safe for concurrent use.
func (t *CursorsTable) SetCursor(ctx context.Context, dbc DBC, consumerName, cursor string) error {
	return t.setCursor(ctx, dbc, consumerName, cursor, nil)
}

// setCursor is SetCursor through a store fenced by f (nil: not fenced).
func (t *CursorsTable) setCursor(ctx context.Context, dbc DBC, consumerName, cursor string, f *fence) error {
	const op = "set cursor"
	c, err := t.parse(consumerName, cursor)
	if err != nil {
		return err
	}
	if isNilDBC(dbc) {
		return t.opErr(op, consumerName, errors.New("nil DBC"))
	}
	if t.cfg.period <= 0 {
		return t.setSync(ctx, dbc, consumerName, c, f)
	}
	if _, ok := dbc.(*sql.Tx); ok {
		return t.opErr(op, consumerName, errors.New("a *sql.Tx cannot be used with an asynchronous table, which writes later, "+
			"after the transaction has ended: pass a *sql.DB, or use WithCursorAsyncDisabled to write within the transaction"))
	}
	m := t.meta.p.Load()

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return t.opErr(op, consumerName, ErrCursorsTableClosed)
	}
	e := t.entries[consumerName]
	if e == nil || (!e.checked && m != nil) {
		if err := t.checkName(m, consumerName); err != nil {
			return t.opErr(op, consumerName, err)
		}
		if e == nil {
			e = t.entryLocked(consumerName)
		}
		e.checked = m != nil
	}
	if e.err != nil {
		// A lease lost by an earlier holder is not this writer's error.
		err, ef := e.err, e.errFence
		e.err, e.errFence = nil, nil
		if ef == nil || ef == f {
			return err
		}
	}
	if m != nil {
		if err := m.checkCursor(c); err != nil {
			return t.opErr(op, consumerName, err)
		}
	}
	switch {
	case e.dirty:
		if !t.less(e.pending, c) {
			return &CursorConflictError{Table: t.name, Consumer: consumerName, Cursor: cursor, Existing: e.pending.s, Buffered: true}
		}
	case e.state == stateKnown:
		if !t.less(e.stored, c) {
			return &CursorConflictError{Table: t.name, Consumer: consumerName, Cursor: cursor, Existing: e.stored.s}
		}
	}
	e.pending, e.fence = c, f
	if !e.dirty {
		e.dirty = true
		t.dirty = append(t.dirty, e)
	}
	t.dbc = dbc
	if !t.started {
		t.startLocked()
	}
	return nil
}

// entryLocked returns the entry of name, adding it if missing.
func (t *CursorsTable) entryLocked(name string) *cursorEntry {
	e := t.entries[name]
	if e == nil {
		e = &cursorEntry{name: name}
		t.entries[name] = e
	}
	return e
}

// checkName checks name against m, or only what holds for every table if
// the catalog is not read yet (m nil).
func (t *CursorsTable) checkName(m *cursorsMeta, name string) error {
	if m == nil {
		return checkNameStatic(unquote(t.name)+"."+unquote(t.cfg.idField), name)
	}
	return m.key.check(name)
}

// checkCursor returns an error wrapping ErrInvalidValue if c does not fit
// the cursor column.
func (m *cursorsMeta) checkCursor(c cursorVal) error {
	if c.isInt {
		return m.cur.checkInt(m.curWhat, c.n)
	}
	return m.cur.checkString(m.curWhat, c.s)
}

// loadMeta reads the table's columns from the catalog through dbc on first
// use.
func (t *CursorsTable) loadMeta(ctx context.Context, dbc DBC) (*cursorsMeta, error) {
	return t.meta.get(func() (*cursorsMeta, error) {
		cols, err := t.cols.lookup(ctx, dbc, t.cfg.idField, t.cfg.cursorField, t.cfg.timeField)
		if err != nil {
			return nil, err
		}
		table := unquote(t.name)
		key, err := loadNameKey(ctx, t.d, dbc, table, unquote(t.cfg.idField), cols[0])
		if err != nil {
			return nil, err
		}
		return &cursorsMeta{key: key, cur: cols[1], curWhat: table + "." + unquote(t.cfg.cursorField)}, nil
	})
}

// setSync is the synchronous SetCursor, fenced by f if not nil.
func (t *CursorsTable) setSync(ctx context.Context, dbc DBC, name string, c cursorVal, f *fence) error {
	const op = "set cursor"
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return t.opErr(op, name, ErrCursorsTableClosed)
	}
	m, err := t.loadMeta(ctx, dbc)
	if err != nil {
		return t.opErr(op, name, err)
	}
	if err := m.key.check(name); err != nil {
		return t.opErr(op, name, err)
	}
	if err := m.checkCursor(c); err != nil {
		return t.opErr(op, name, err)
	}
	return t.write(ctx, dbc, name, c, f)
}

// opErr wraps err with the operation, the consumer and the table.
func (t *CursorsTable) opErr(op, name string, err error) error {
	return fmt.Errorf("rsql: %s of consumer %s in table %s: %w", op, bounded.Quote(name), t.name, err)
}

// stmt returns a new statement builder.
func (t *CursorsTable) stmt() *sqlStmt {
	s := &sqlStmt{d: t.d}
	s.b.Grow(256)
	return s
}

// write is the synchronous SetCursor: update if strictly less, else
// insert; a row that exists then is a conflict. With a fence it writes
// with writeFenced.
func (t *CursorsTable) write(ctx context.Context, dbc DBC, name string, c cursorVal, f *fence) error {
	if f != nil {
		return t.writeSyncFenced(ctx, dbc, name, c, f)
	}
	r := []*flushRow{{e: &cursorEntry{name: name}, v: c, state: stateUnknown}}
	n, err := t.update(ctx, dbc, r)
	if err == nil && n == 0 {
		n, err = t.insert(ctx, dbc, r, false)
		if err == nil && n == 0 {
			return t.conflict(ctx, dbc, name, c.s)
		}
	}
	if err != nil {
		return fmt.Errorf("rsql: set cursor of consumer %s to %s in table %s: %w", bounded.Quote(name), bounded.Quote(c.s), t.name, err)
	}
	if t.counter != nil {
		t.counter()
	}
	return nil
}

// conflict builds the error of a refused synchronous write, reading the
// existing row on a best-effort basis.
func (t *CursorsTable) conflict(ctx context.Context, dbc DBC, name, cursor string) error {
	e := &CursorConflictError{Table: t.name, Consumer: name, Cursor: cursor}
	var (
		cur sql.NullString
		ts  any
	)
	q := t.stmt()
	q.sql("SELECT ", t.curCol, ", ", t.timeCol, " FROM ", t.table, " WHERE ", t.idCol, " = ")
	q.val(name)
	if err := dbc.QueryRowContext(ctx, q.String(), q.args...).Scan(&cur, &ts); err == nil {
		e.Existing = cur.String
		if tm, ok := ts.(time.Time); ok {
			e.UpdatedAt = tm
		}
	}
	return e
}

// cursorVal is a validated cursor: n is its value in a table of int
// cursors (isInt).
type cursorVal struct {
	s     string
	n     int64
	isInt bool
}

// parse validates cursor for the table.
func (t *CursorsTable) parse(name, cursor string) (cursorVal, error) {
	if t.cfg.strings {
		if cursor == "" {
			return cursorVal{}, t.opErr("set cursor", name, errors.New("empty cursor"))
		}
		return cursorVal{s: cursor}, nil
	}
	v, err := parseCursor(cursor)
	if err != nil {
		return cursorVal{}, t.opErr("set cursor", name, err)
	}
	return cursorVal{s: cursor, n: v, isInt: true}, nil
}

// parseStored converts a cursor read from the table; ok is false for a
// value that is not a cursor of the table's type.
func (t *CursorsTable) parseStored(s string) (cursorVal, bool) {
	if t.cfg.strings {
		return cursorVal{s: s}, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return cursorVal{}, false
	}
	return cursorVal{s: strconv.FormatInt(n, 10), n: n, isInt: true}, true
}

// arg returns the value to write for c: an int64 for int tables (so that
// even a varchar column compares numerically), the string for string
// tables.
func (t *CursorsTable) arg(c cursorVal) any {
	if t.cfg.strings {
		return c.s
	}
	return c.n
}

// parseCursor parses a canonical non-negative base-10 int64 cursor: what
// strconv.FormatInt returns for a value >= 0.
func parseCursor(cursor string) (int64, error) {
	// Fast path (SetCursor is called for every consumed event): up to 19
	// digits without a leading zero fit a uint64.
	if n := len(cursor); n > 0 && n <= 19 && (cursor[0] != '0' || n == 1) {
		var u uint64
		for i := 0; i < n; i++ {
			d := cursor[i] - '0'
			if d > 9 {
				u = math.MaxUint64
				break
			}
			u = u*10 + uint64(d)
		}
		if u <= math.MaxInt64 {
			return int64(u), nil
		}
	}
	v, err := strconv.ParseInt(cursor, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("%w %s: out of int64 range", ErrInvalidCursor, bounded.Quote(cursor))
	case err != nil:
		return 0, fmt.Errorf("%w %s: not a base-10 integer", ErrInvalidCursor, bounded.Quote(cursor))
	case v < 0:
		return 0, fmt.Errorf("%w %s: negative", ErrInvalidCursor, bounded.Quote(cursor))
	case cursor[0] == '+' || cursor[0] == '-' || (cursor[0] == '0' && len(cursor) > 1):
		return 0, fmt.Errorf("%w %s: not in canonical form (%d)", ErrInvalidCursor, bounded.Quote(cursor), v)
	}
	return v, nil
}

// less reports whether a sorts before b in the table's order.
func (t *CursorsTable) less(a, b cursorVal) bool {
	if t.cfg.strings {
		return a.s < b.s
	}
	return a.n < b.n
}

// Close stops the background flush, waits for it to exit, then flushes the
// buffered cursors, bounded by the flush timeout (WithCursorFlushTimeout,
// default 10 s), and closes the tables that ToStore cloned with options.
// It returns the errors of that flush and of those tables. Cursors that
// could not be written stay buffered (Flush may retry them); if the
// process ends first, their events are delivered again after the restart
// (at-least-once). Later SetCursor calls fail with ErrCursorsTableClosed;
// GetCursor and Flush keep working. Close is idempotent and safe for
// concurrent use: every call returns the first call's result once it is
// done.
func (t *CursorsTable) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		stop, stores := t.stop, t.stores
		t.stores = nil
		t.mu.Unlock()
		if stop != nil {
			stop()
		}
		t.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.flushTimeout)
		defer cancel()
		errs := []error{t.Flush(ctx)}
		for _, s := range stores {
			errs = append(errs, s.Close())
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// Clone returns a new table with the options of t followed by opts. The
// clone has its own (empty) buffer, its own catalog read and its own
// background flush, and must be closed on its own. It panics like
// NewCursorsTable on invalid options.
func (t *CursorsTable) Clone(opts ...CursorsOption) *CursorsTable {
	return NewCursorsTable(t.name, append(slices.Clone(t.opts), opts...)...)
}
