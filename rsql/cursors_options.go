package rsql

import "time"

const (
	// defaultCursorsAsyncPeriod is how often an asynchronous cursors table
	// flushes by default.
	defaultCursorsAsyncPeriod = 5 * time.Second

	// defaultCursorsFlushTimeout bounds each flush the table starts itself
	// (background flushes and the final flush of Close): long enough for a
	// slow database, short enough for a shutdown within a typical
	// termination grace period.
	defaultCursorsFlushTimeout = 10 * time.Second
)

// CursorsOption configures a CursorsTable; see NewCursorsTable.
type CursorsOption func(*cursorsConfig)

type cursorsConfig struct {
	idField      string
	cursorField  string
	timeField    string
	period       time.Duration
	flushTimeout time.Duration
	counter      func()
	counterSet   bool
	strings      bool
	dialect      Dialect
}

// defaultCursorsConfig returns the configuration of a table without
// options.
func defaultCursorsConfig() cursorsConfig {
	return cursorsConfig{
		idField:      "id",
		cursorField:  "last_event_id",
		timeField:    "updated_at",
		period:       defaultCursorsAsyncPeriod,
		flushTimeout: defaultCursorsFlushTimeout,
	}
}

// WithCursorCursorField sets the column holding the cursor. Default
// "last_event_id". Names that are SQL keywords may be given `quoted`.
func WithCursorCursorField(field string) CursorsOption {
	return func(c *cursorsConfig) { c.cursorField = field }
}

// WithCursorIDField sets the column holding the consumer name (the primary
// key). Default "id". The column must compare names byte by byte (see
// CursorsTable).
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

// WithCursorFlushTimeout bounds each flush that an asynchronous table
// starts itself: the background flushes and the final flush of Close (and
// of CursorStore.Close), so that Close returns within about d even when
// the database does not answer. Default 10 s. A d of zero or less makes
// NewCursorsTable panic. Flush itself is bounded by its caller's context
// only. A cursor whose flush timed out stays buffered for the next flush;
// if the process ends first, its events are delivered again after the
// restart (at-least-once).
func WithCursorFlushTimeout(d time.Duration) CursorsOption {
	return func(c *cursorsConfig) { c.flushTimeout = d }
}

// WithCursorSetCounter sets a function called once per cursor written to
// the database: once per successful synchronous SetCursor, once per row of a
// successful flush. It must be safe for concurrent use. nil disables
// counting. Default: increment the Prometheus counter
// reflex_cursors_table_set_total{table="<name>"}.
func WithCursorSetCounter(f func()) CursorsOption {
	return func(c *cursorsConfig) { c.counter, c.counterSet = f, true }
}

// WithCursorStrings makes the table hold string cursors instead of int
// cursors (the default), for streams whose event IDs are not integers. Any
// non-empty cursor that fits the cursor column is accepted; cursors
// compare byte by byte (as Go compares strings), whatever the column's
// collation. Use it with a varchar cursor column (see
// StringCursorsSchema).
func WithCursorStrings() CursorsOption {
	return func(c *cursorsConfig) { c.strings = true }
}

// WithCursorsDialect selects the SQL dialect of the table: MySQL (the
// default), PostgreSQL or SQLite.
func WithCursorsDialect(d Dialect) CursorsOption {
	return func(c *cursorsConfig) { c.dialect = d }
}
