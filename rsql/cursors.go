package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

var (
	// ErrInvalidCursor is wrapped by the error CursorsTable.SetCursor
	// returns when a table of int cursors (the default) is given a cursor
	// that is not a canonical non-negative base-10 int64, such as "abc",
	// "-1", "007" or a value that overflows int64. The error names the
	// consumer and the cursor.
	ErrInvalidCursor = errors.New("invalid int cursor")

	// ErrCursorNotIncreasing is wrapped by the error CursorsTable.SetCursor
	// returns when the new cursor is not strictly greater than the stored
	// one (synchronous mode) or than the one still buffered for the same
	// consumer (asynchronous mode). Use errors.AsType to get the
	// *CursorConflictError with the existing value.
	ErrCursorNotIncreasing = errors.New("attempted to set cursor <= existing cursor")

	// ErrCursorsTableClosed is wrapped by the error CursorsTable.SetCursor
	// returns after CursorsTable.Close.
	ErrCursorsTableClosed = errors.New("rsql: cursors table closed")
)

// CursorConflictError describes a cursor write refused because the cursor
// does not move forward. It wraps ErrCursorNotIncreasing.
type CursorConflictError struct {
	// Table is the cursors table.
	Table string
	// Consumer is the consumer whose cursor was being set.
	Consumer string
	// Cursor is the refused cursor.
	Cursor string
	// Existing is the stored (or buffered) cursor, "" if it could not be
	// read.
	Existing string
	// UpdatedAt is when Existing was stored; zero when it is only buffered
	// or could not be read.
	UpdatedAt time.Time
	// Buffered reports whether Existing is an unflushed value buffered in
	// this process (asynchronous mode) rather than the stored one.
	Buffered bool
}

// Error implements error.
func (e *CursorConflictError) Error() string {
	what := "existing cursor"
	if e.Buffered {
		what = "existing buffered cursor"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rsql: set cursor of consumer %q to %q in table %s: %s %q",
		e.Consumer, e.Cursor, e.Table, ErrCursorNotIncreasing, e.Existing)
	b.WriteString(" (" + what)
	if !e.UpdatedAt.IsZero() {
		b.WriteString(" updated at " + e.UpdatedAt.UTC().Format(time.RFC3339Nano))
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap returns ErrCursorNotIncreasing.
func (e *CursorConflictError) Unwrap() error { return ErrCursorNotIncreasing }

// defaultCursorsAsyncPeriod is how often an asynchronous cursors table
// flushes by default.
const defaultCursorsAsyncPeriod = 5 * time.Second

// cursorsPerStatement caps the rows of one flush statement, keeping it far
// below both the placeholder limit and a default max_allowed_packet.
const cursorsPerStatement = 1000

// CursorsOption configures a CursorsTable; see NewCursorsTable.
type CursorsOption func(*cursorsConfig)

type cursorsConfig struct {
	idField     string
	cursorField string
	timeField   string
	period      time.Duration
	counter     func()
	counterSet  bool
	strings     bool
	dialect     Dialect
}

// WithCursorCursorField sets the column holding the cursor. Default
// "last_event_id". Names that are SQL keywords may be given `quoted`.
func WithCursorCursorField(field string) CursorsOption {
	return func(c *cursorsConfig) { c.cursorField = field }
}

// WithCursorIDField sets the column holding the consumer name (the primary
// key). Default "id".
func WithCursorIDField(field string) CursorsOption {
	return func(c *cursorsConfig) { c.idField = field }
}

// WithCursorTimeField sets the column holding the time of the last write.
// Default "updated_at".
func WithCursorTimeField(field string) CursorsOption {
	return func(c *cursorsConfig) { c.timeField = field }
}

// WithCursorAsyncPeriod makes SetCursor buffer cursors in memory and a
// background goroutine write them every d (asynchronous mode, the default,
// with d = 5 s). d = 0 means synchronous writes, as
// WithCursorAsyncDisabled; a negative d makes NewCursorsTable panic. The
// last of the two options wins.
func WithCursorAsyncPeriod(d time.Duration) CursorsOption {
	return func(c *cursorsConfig) { c.period = d }
}

// WithCursorAsyncDisabled makes every SetCursor write to the database
// before it returns (synchronous mode). Default: asynchronous, every 5 s.
func WithCursorAsyncDisabled() CursorsOption {
	return func(c *cursorsConfig) { c.period = 0 }
}

// WithCursorSetCounter sets a function called once per cursor written to
// the database: once per successful synchronous SetCursor, once per row of a
// successful flush. It must be safe for concurrent use. nil disables
// counting. Default: increment the Prometheus counter
// reflex_cursors_table_set_total{table="<name>"}.
func WithCursorSetCounter(f func()) CursorsOption {
	return func(c *cursorsConfig) { c.counter, c.counterSet = f, true }
}

// WithCursorStrings makes the table hold string cursors compared
// lexicographically (by the column's collation) instead of int cursors
// (the default), for streams whose event IDs are not integers. Any
// non-empty cursor is accepted. Use it with a varchar cursor column (see
// StringCursorsSchema).
func WithCursorStrings() CursorsOption {
	return func(c *cursorsConfig) { c.strings = true }
}

// WithCursorsDialect selects the SQL dialect of the table. Default MySQL.
func WithCursorsDialect(d Dialect) CursorsOption {
	return func(c *cursorsConfig) { c.dialect = d }
}

// CursorsTable stores the cursors of consumers in a SQL table, one row per
// consumer: the consumer name (primary key), its cursor and the time of the
// last write (see CursorsSchema). Use ToStore to get a [reflex.CursorStore].
//
// A cursor only moves forward: a write of a cursor that is not strictly
// greater than the stored one fails (synchronous mode) or is ignored
// (asynchronous flush). Int cursors compare as integers, string cursors
// (WithCursorStrings) as strings.
//
// In asynchronous mode (the default) SetCursor only records the latest
// cursor of each consumer in memory; the first SetCursor starts one
// background goroutine that flushes the buffer every period, until Close.
// A crash loses at most one period of progress, which is replayed
// (at-least-once delivery). Call Close when done with the table.
//
// A CursorsTable is safe for concurrent use.
type CursorsTable struct {
	name string
	opts []CursorsOption
	cfg  cursorsConfig
	d    dialect
	// quoted names of the table and its columns
	table, idCol, curCol, timeCol string

	counter    func()
	flushError func()

	// flushMu serialises flushes. Lock order: flushMu before mu.
	flushMu sync.Mutex

	mu sync.Mutex // protects the following fields
	// buf holds the latest unflushed cursor of each consumer.
	buf map[string]cursorVal
	// spare is an empty map for the next flush to swap with buf, or nil.
	spare map[string]cursorVal
	// dbc is the handle of the latest buffered SetCursor; flushes use it.
	dbc     DBC
	started bool
	closed  bool
	stop    context.CancelFunc

	wg        sync.WaitGroup // the flush loop
	closeOnce sync.Once
	closeErr  error
}

// NewCursorsTable returns a table of cursors named name. Defaults: columns
// id, last_event_id, updated_at; int cursors; asynchronous writes every 5 s;
// MySQL dialect; the set counter increments reflex_cursors_table_set_total.
//
// NewCursorsTable does no I/O. It panics with an "rsql:" message if name or
// a column name is not a valid identifier, or if the async period is
// negative: these are programming errors.
func NewCursorsTable(name string, opts ...CursorsOption) *CursorsTable {
	cfg := cursorsConfig{
		idField:     "id",
		cursorField: "last_event_id",
		timeField:   "updated_at",
		period:      defaultCursorsAsyncPeriod,
	}
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
	d := cfg.dialect.impl()

	t := &CursorsTable{
		name:       name,
		opts:       slices.Clone(opts),
		cfg:        cfg,
		d:          d,
		table:      d.quote(name),
		counter:    cfg.counter,
		flushError: metrics.CursorsTableFlushErrors(unquote(name)).Inc,
		buf:        make(map[string]cursorVal),
	}
	if !cfg.counterSet {
		t.counter = metrics.CursorsTableSet(unquote(name)).Inc
	}
	t.idCol, t.curCol, t.timeCol = d.quote(cfg.idField), d.quote(cfg.cursorField), d.quote(cfg.timeField)
	return t
}

// Name returns the table name given to NewCursorsTable.
func (t *CursorsTable) Name() string { return t.name }

// GetCursor returns the stored cursor of consumerName, or "" if it has
// none. It reads the database only: cursors still buffered in asynchronous
// mode are not seen (call Flush first). It is safe for concurrent use.
func (t *CursorsTable) GetCursor(ctx context.Context, dbc DBC, consumerName string) (string, error) {
	if isNilDBC(dbc) {
		return "", fmt.Errorf("rsql: get cursor of consumer %q in table %s: nil DBC", consumerName, t.name)
	}
	q := t.stmt()
	q.sql("SELECT ", t.curCol, " FROM ", t.table, " WHERE ", t.idCol, " = ")
	q.val(consumerName)
	var cur sql.NullString
	err := dbc.QueryRowContext(ctx, q.String(), q.args...).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("rsql: get cursor of consumer %q in table %s: %w", consumerName, t.name, err)
	}
	return cur.String, nil
}

// SetCursor sets the cursor of consumerName. The cursor must be valid for
// the table: a canonical non-negative int64 by default (else the error
// wraps ErrInvalidCursor), any non-empty string with WithCursorStrings.
//
// In synchronous mode it updates the row if the stored cursor is strictly
// less than cursor, else inserts it; if the row exists (the stored cursor
// is equal or greater) the error is a *CursorConflictError wrapping
// ErrCursorNotIncreasing. On success the set counter is called.
//
// In asynchronous mode it only buffers cursor as the consumer's latest
// (refusing, with ErrCursorNotIncreasing, a cursor not greater than one
// still buffered for it) and remembers dbc for the next flush, so dbc must
// outlive the call: pass a *sql.DB, not a transaction. The first call
// starts the background flush.
//
// After Close it returns an error wrapping ErrCursorsTableClosed; a nil
// dbc is an error too.
//
// SetCursor is safe for concurrent use.
func (t *CursorsTable) SetCursor(ctx context.Context, dbc DBC, consumerName, cursor string) error {
	c, err := t.parse(consumerName, cursor)
	if err != nil {
		return err
	}
	if isNilDBC(dbc) {
		return fmt.Errorf("rsql: set cursor of consumer %q in table %s: nil DBC", consumerName, t.name)
	}
	if t.cfg.period <= 0 {
		t.mu.Lock()
		closed := t.closed
		t.mu.Unlock()
		if closed {
			return fmt.Errorf("rsql: set cursor of consumer %q in table %s: %w", consumerName, t.name, ErrCursorsTableClosed)
		}
		return t.write(ctx, dbc, consumerName, c)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("rsql: set cursor of consumer %q in table %s: %w", consumerName, t.name, ErrCursorsTableClosed)
	}
	if prev, ok := t.buf[consumerName]; ok && !t.less(prev, c) {
		return &CursorConflictError{Table: t.name, Consumer: consumerName, Cursor: cursor, Existing: prev.s, Buffered: true}
	}
	t.buf[consumerName] = c
	t.dbc = dbc
	if !t.started {
		t.startLocked()
	}
	return nil
}

// startLocked starts the flush loop, owned by t and stopped by Close.
func (t *CursorsTable) startLocked() {
	t.started = true
	ctx, cancel := context.WithCancel(context.Background()) // the table's lifetime
	t.stop = cancel
	t.wg.Go(func() { t.flushLoop(ctx) })
}

// flushLoop flushes every period until ctx is done. Errors are counted in
// reflex_cursors_table_flush_errors_total; the failed cursors stay buffered
// for the next flush.
func (t *CursorsTable) flushLoop(ctx context.Context) {
	tk := time.NewTicker(t.cfg.period)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			_ = t.Flush(ctx)
		}
	}
}

// Flush writes the buffered cursors (asynchronous mode) to the database in
// as few statements as possible, using the handle of the latest buffered
// SetCursor: per 1000 consumers, one UPDATE when they all have rows, plus
// one upsert when some do not. A buffered cursor not greater
// than the stored one is skipped: a flush never moves a cursor backwards.
// It returns nil at once in synchronous mode or when nothing is buffered.
//
// Flushes are serialised. If a statement fails Flush returns its error and
// keeps the cursors it did not write buffered (unless newer ones were set
// meanwhile), so the next flush retries them; nothing is lost. It is safe
// for concurrent use, also after Close.
func (t *CursorsTable) Flush(ctx context.Context) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()

	t.mu.Lock()
	if len(t.buf) == 0 {
		t.mu.Unlock()
		return nil
	}
	batch, dbc := t.buf, t.dbc
	t.buf, t.spare = t.spare, nil
	if t.buf == nil {
		t.buf = make(map[string]cursorVal, len(batch))
	}
	t.mu.Unlock()

	names := make([]string, 0, len(batch))
	for n := range batch {
		names = append(names, n)
	}
	// A fixed row order keeps concurrent flushes of several processes from
	// deadlocking on each other's row locks.
	slices.Sort(names)

	for len(names) > 0 {
		n := min(len(names), cursorsPerStatement, t.d.maxParams()/2)
		chunk := names[:n]
		if err := t.writeBatch(ctx, dbc, chunk, batch); err != nil {
			t.requeue(names, batch)
			if ctx.Err() == nil {
				t.flushError()
			}
			return fmt.Errorf("rsql: flush cursors table %s: %w", t.name, err)
		}
		if t.counter != nil {
			for range chunk {
				t.counter()
			}
		}
		names = names[n:]
	}
	clear(batch)
	t.mu.Lock()
	t.spare = batch // reused by the next flush
	t.mu.Unlock()
	return nil
}

// requeue puts the unwritten cursors of names back into the buffer, unless
// a greater cursor was buffered for the consumer since.
func (t *CursorsTable) requeue(names []string, batch map[string]cursorVal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range names {
		if cur, ok := t.buf[n]; !ok || t.less(cur, batch[n]) {
			t.buf[n] = batch[n]
		}
	}
}

// writeBatch writes the cursors of names: one conditional UPDATE, which
// is all it takes when every consumer has a row already (the steady
// state), then, if some row was not updated (missing, or its cursor was not
// less), one upsert of the whole batch that inserts the missing rows and
// leaves the others as they are.
func (t *CursorsTable) writeBatch(ctx context.Context, dbc DBC, names []string, batch map[string]cursorVal) error {
	q := t.stmt()
	q.sql("UPDATE ", t.table, " SET ", t.curCol, " = ")
	t.writeCase(q, names, batch)
	q.sql(", ", t.timeCol, " = ", t.d.now(), " WHERE ")
	if len(names) == 1 {
		q.sql(t.idCol, " = ")
		q.val(names[0])
	} else {
		q.sql(t.idCol, " IN (")
		for i, n := range names {
			if i > 0 {
				q.sql(", ")
			}
			q.val(n)
		}
		q.sql(")")
	}
	q.sql(" AND ")
	t.d.cursorLess(q, t.curCol, !t.cfg.strings, func() { t.writeCase(q, names, batch) })
	res, err := dbc.ExecContext(ctx, q.String(), q.args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err == nil && n == int64(len(names)) {
		return nil
	}

	rows := make([]cursorRow, len(names))
	for i, n := range names {
		rows[i] = cursorRow{name: n, cursor: t.arg(batch[n])}
	}
	q = t.stmt()
	t.d.upsertCursors(q, t.table, t.idCol, t.curCol, t.timeCol, rows, !t.cfg.strings)
	_, err = dbc.ExecContext(ctx, q.String(), q.args...)
	return err
}

// writeCase writes the new cursor of the row: the value itself for one
// consumer, else a CASE on the consumer column.
func (t *CursorsTable) writeCase(q *sqlStmt, names []string, batch map[string]cursorVal) {
	if len(names) == 1 {
		q.val(t.arg(batch[names[0]]))
		return
	}
	q.sql("CASE ", t.idCol)
	for _, n := range names {
		q.sql(" WHEN ")
		q.val(n)
		q.sql(" THEN ")
		q.val(t.arg(batch[n]))
	}
	q.sql(" END")
}

// stmt returns a new statement builder.
func (t *CursorsTable) stmt() *sqlStmt {
	s := &sqlStmt{d: t.d}
	s.b.Grow(256)
	return s
}

// write is the synchronous SetCursor: update if strictly less, else insert.
func (t *CursorsTable) write(ctx context.Context, dbc DBC, name string, c cursorVal) error {
	cursor, arg := c.s, t.arg(c)
	q := t.stmt()
	q.sql("UPDATE ", t.table, " SET ", t.curCol, " = ")
	q.val(arg)
	q.sql(", ", t.timeCol, " = ", t.d.now(), " WHERE ", t.idCol, " = ")
	q.val(name)
	q.sql(" AND ")
	t.d.cursorLess(q, t.curCol, !t.cfg.strings, func() { q.val(arg) })
	res, err := dbc.ExecContext(ctx, q.String(), q.args...)
	if err != nil {
		return fmt.Errorf("rsql: set cursor of consumer %q to %q in table %s: %w", name, cursor, t.name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("rsql: set cursor of consumer %q to %q in table %s: %w", name, cursor, t.name, err)
	}
	if n == 0 {
		q := t.stmt()
		q.sql("INSERT INTO ", t.table, " (", t.idCol, ", ", t.curCol, ", ", t.timeCol, ") VALUES (")
		q.val(name)
		q.sql(", ")
		q.val(arg)
		q.sql(", ", t.d.now(), ")")
		_, err = dbc.ExecContext(ctx, q.String(), q.args...)
		if t.d.isDuplicateKey(err) {
			return t.conflict(ctx, dbc, name, cursor)
		}
		if err != nil {
			return fmt.Errorf("rsql: set cursor of consumer %q to %q in table %s: %w", name, cursor, t.name, err)
		}
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
// cursors.
type cursorVal struct {
	s string
	n int64
}

// parse validates cursor for the table.
func (t *CursorsTable) parse(name, cursor string) (cursorVal, error) {
	if t.cfg.strings {
		if cursor == "" {
			return cursorVal{}, fmt.Errorf("rsql: set cursor of consumer %q in table %s: empty cursor", name, t.name)
		}
		return cursorVal{s: cursor}, nil
	}
	v, err := parseCursor(cursor)
	if err != nil {
		return cursorVal{}, fmt.Errorf("rsql: set cursor of consumer %q in table %s: %w", name, t.name, err)
	}
	return cursorVal{s: cursor, n: v}, nil
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
		return 0, fmt.Errorf("%w %q: out of int64 range", ErrInvalidCursor, cursor)
	case err != nil:
		return 0, fmt.Errorf("%w %q: not a base-10 integer", ErrInvalidCursor, cursor)
	case v < 0:
		return 0, fmt.Errorf("%w %q: negative", ErrInvalidCursor, cursor)
	case cursor[0] == '+' || cursor[0] == '-' || (cursor[0] == '0' && len(cursor) > 1):
		return 0, fmt.Errorf("%w %q: not in canonical form (%d)", ErrInvalidCursor, cursor, v)
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
// buffered cursors with a context that is never cancelled and returns that
// flush's error (the cursors stay buffered; Flush may retry them). Later
// SetCursor calls fail with ErrCursorsTableClosed; GetCursor and Flush keep
// working. Close is idempotent and safe for concurrent use: every call
// returns the first call's result once it is done.
func (t *CursorsTable) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		stop := t.stop
		t.mu.Unlock()
		if stop != nil {
			stop()
		}
		t.wg.Wait()
		t.closeErr = t.Flush(context.Background())
	})
	return t.closeErr
}

// Clone returns a new table with the options of t followed by opts. The
// clone has its own (empty) buffer and its own background flush, and must
// be closed on its own. It panics like NewCursorsTable on invalid options.
func (t *CursorsTable) Clone(opts ...CursorsOption) *CursorsTable {
	return NewCursorsTable(t.name, append(slices.Clone(t.opts), opts...)...)
}

// ToStore returns a [reflex.CursorStore] reading and writing the cursors of
// t through dbc. With opts it writes through a clone of t with those
// options added (see Clone). The store also implements io.Closer: Close
// closes that clone, or, without opts, only flushes t (t's owner closes t).
func (t *CursorsTable) ToStore(dbc DBC, opts ...CursorsOption) reflex.CursorStore {
	s := &cursorStore{t: t, dbc: dbc}
	if len(opts) > 0 {
		s.t, s.owned = t.Clone(opts...), true
	}
	return s
}

type cursorStore struct {
	t     *CursorsTable
	dbc   DBC
	owned bool
}

var _ reflex.CursorStore = (*cursorStore)(nil)

func (s *cursorStore) GetCursor(ctx context.Context, name string) (string, error) {
	return s.t.GetCursor(ctx, s.dbc, name)
}

func (s *cursorStore) SetCursor(ctx context.Context, name, cursor string) error {
	return s.t.SetCursor(ctx, s.dbc, name, cursor)
}

func (s *cursorStore) Flush(ctx context.Context) error {
	return s.t.Flush(ctx)
}

func (s *cursorStore) Close() error {
	if s.owned {
		return s.t.Close()
	}
	return s.t.Flush(context.Background())
}
