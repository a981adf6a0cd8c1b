package rsql

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// EventsTable is an SQL table of events: Insert adds events in the
// caller's transaction and ToStream streams them (see the package
// documentation for the schema, gaps and the head watcher).
//
// Create it with NewEventsTable, once per table, and share it: its
// read-through cache, prepared statements and gap listeners belong to the
// instance. Close it when done if it started a goroutine (ListenGaps,
// FillGaps, or Clone of a table whose gaps FillGaps fills; on PostgreSQL,
// a NotifyFunc call or a waiting stream); Close is always safe. An
// EventsTable is safe for concurrent use.
type EventsTable struct {
	// StreamOptions are the defaults of every stream of the table,
	// overridden by the options of each ToStream and Stream call. They
	// are zero unless an option written outside this package sets them
	// (as options could with luno/reflex); a new stream reads them without
	// a lock, so set them only in options.
	reflex.StreamOptions

	name     string
	opts     []EventsOption
	cfg      eventsConfig
	d        dialect
	q        eventsSQL
	notifier EventsNotifier
	notify   NotifyFunc
	limit    int  // rows per load
	adaptive bool // limit may grow while catching up
	backoff  time.Duration

	cols    *columns                      // the table's columns, read once
	insCols atomic.Pointer[insertColumns] // the inserted columns, once read
	stmts   stmtCache
	m       *metrics.EventsTable
	cache   *rcache // nil when disabled
	gaps    *gapHub
	open    *gapTracker
	channel string  // the NOTIFY channel of the table (PostgreSQL)
	pg      pgState // used by the PostgreSQL dialect only
}

// NewEventsTable returns the events table called name (optionally
// schema.name) configured by opts. It does no I/O and starts no
// goroutine. It panics, with an "rsql:" message, on an invalid table or
// column name or an invalid option (nil option, loader, inserter or
// notifier; negative backoff).
func NewEventsTable(name string, opts ...EventsOption) *EventsTable {
	t := &EventsTable{name: name, opts: slices.Clone(opts), cfg: defaultEventsConfig()}
	t.applyOptions()
	t.cfg.validate(name)
	t.build()
	return t
}

// defaultEventsConfig is the configuration before options.
func defaultEventsConfig() eventsConfig {
	return eventsConfig{
		idField:        "id",
		timeField:      "timestamp",
		typeField:      "type",
		foreignIDField: "foreign_id",
		backoff:        defaultBackoff,
	}
}

// applyOptions applies t.opts in order; a nil option panics.
func (t *EventsTable) applyOptions() {
	for i, o := range t.opts {
		if o == nil {
			panic(fmt.Sprintf("rsql: NewEventsTable(%q): option %d is nil", t.name, i))
		}
		o(t)
	}
}

// validate panics, with an "rsql:" message, if the table's name, its
// column names or its options cannot work.
func (c *eventsConfig) validate(name string) {
	if len(c.invalid) > 0 {
		panic(fmt.Sprintf("rsql: NewEventsTable(%q): %s", name, strings.Join(c.invalid, "; ")))
	}
	mustIdent("events table", name)
	mustIdent("event id column", c.idField)
	mustIdent("event time column", c.timeField)
	mustIdent("event type column", c.typeField)
	mustIdent("event foreign id column", c.foreignIDField)
	if c.metadataField != "" {
		mustIdent("event metadata column", c.metadataField)
	}
	if c.traceField != "" {
		mustIdent("event trace column", c.traceField)
	}
}

// build sets up what the validated configuration describes: the SQL, the
// notifier, the cache and the gap state.
func (t *EventsTable) build() {
	t.d = t.cfg.dialect.impl()
	t.q = newEventsSQL(t.d, t.name, &t.cfg)
	t.cols = newColumns(t.d, t.name)
	t.m = metrics.NewEventsTable(unquote(t.name))
	t.limit, t.adaptive = t.cfg.lookupLimit, t.cfg.lookupLimit == 0
	if t.adaptive {
		t.limit = defaultLookupLimit
	}
	t.backoff = t.cfg.backoff
	t.notifier = t.cfg.newNotifier()
	n, table := t.notifier, t.q.table
	t.notify = func() {
		n.Notify()
		wakeWatchers(table)
	}
	if !t.cfg.noCache {
		t.cache = newRCache(defaultCacheSize, defaultCacheBytes, t.m)
	}
	t.gaps = newGapHub(t.m)
	t.open = newGapTracker()
	t.channel = pgChannel(t.name)
}

// newNotifier returns the notifier the options chose.
func (c *eventsConfig) newNotifier() EventsNotifier {
	switch {
	case c.inMemNotifier:
		return &inMemNotifier{}
	case c.notifier != nil:
		return c.notifier
	default:
		return stubNotifier{}
	}
}

// Name returns the table name given to NewEventsTable.
func (t *EventsTable) Name() string { return t.name }

// Clone returns a new table with the options of t followed by opts. The
// clone has its own read-through cache, prepared statements, gap
// listeners and (with WithEventsInMemNotifier) notifier; an explicit
// notifier, loader or inserter is shared. If FillGaps is filling the gaps
// of t, it also fills those of the clone, on a goroutine of the clone:
// close the clone (or StopFillingGaps on it) to stop it. Listeners added
// with ListenGaps are not carried. Clone panics like NewEventsTable on
// invalid options.
func (t *EventsTable) Clone(opts ...EventsOption) *EventsTable {
	all := append(slices.Clone(t.opts), opts...)
	c := NewEventsTable(t.name, all...)
	if db := t.gaps.fillDB(); db != nil {
		// Only fails if the clone's listeners are stopped, which a new
		// table's are not.
		_ = FillGaps(db, c)
	}
	return c
}

// Close stops the goroutine the table started to serve its gap listeners
// (ListenGaps, FillGaps, Clone of a filled table), aborting a gap filler
// that waits for a transaction, waits for it to exit, and closes the
// table's prepared statements. On PostgreSQL it also releases the notify
// connections that the table's inserts and streams used, stopping each
// that no other table uses (after it sent the NOTIFYs asked for, within a
// second) and waiting for it; streams of the table still running fall
// back to polling. A listener that blocks delays Close.
//
// Close does not end the table's streams (close each client) and does not
// stop inserts: after it, inserts work as before, streams load without
// prepared statements, and ListenGaps and FillGaps fail with
// ErrGapListenerStopped. Close is idempotent, safe for concurrent use, and
// returns nil.
func (t *EventsTable) Close() error {
	_ = t.gaps.stop(context.Background()) // waits: never returns an error
	t.stmts.close()
	t.pg.releaseHubs()
	return nil
}

// LoadEvents reads the events after prev with one query, in ID order: at
// most the table's lookup limit (WithEventLookupLimit, default 1000) of
// them, with lag > 0 only those older than lag by the database's clock. It
// is the table's base SQL loader alone: without the gap detector (it
// returns events past a missing ID), the read-through cache and the noop
// filter (it returns noop events), and it reads the SQL table even if the
// table has a WithEventsLoader loader, so that such a loader may wrap it.
// Database errors are returned wrapped with the table name.
func (t *EventsTable) LoadEvents(ctx context.Context, dbc *sql.DB, prev int64, lag time.Duration) ([]*reflex.Event, error) {
	if dbc == nil {
		return nil, fmt.Errorf("rsql: load events from %s: nil *sql.DB", t.name)
	}
	b, err := t.loadSQL(ctx, dbc, prev, max(lag, 0), t.limit)
	return b.events, err
}

// Head returns the largest event ID in the table, 0 if it is empty: where
// a stream with reflex.WithStreamFromHead starts. The database error is
// returned wrapped with the table name.
func (t *EventsTable) Head(ctx context.Context, dbc DBC) (int64, error) {
	if isNilDBC(dbc) {
		return 0, fmt.Errorf("rsql: head of events table %s: nil DBC", t.name)
	}
	var h sql.NullInt64
	if err := dbc.QueryRowContext(ctx, t.q.head).Scan(&h); err != nil {
		return 0, fmt.Errorf("rsql: head of events table %s: %w", t.name, checkEngine(t.d, err))
	}
	return h.Int64, nil
}

// stmtCache holds a table's prepared load statements, one per *sql.DB and
// statement text, until closed.
type stmtCache struct {
	mu     sync.RWMutex // protects the following fields
	m      map[stmtKey]*sql.Stmt
	closed bool
}

// stmtKey identifies a prepared load statement of a table.
type stmtKey struct {
	db   *sql.DB
	text string
}

// query runs text with args on db through its prepared statement,
// preparing it on first use (database/sql prepares it again on each
// connection that runs it); after close it runs text unprepared.
func (c *stmtCache) query(ctx context.Context, db *sql.DB, text string, args ...any) (*sql.Rows, error) {
	key := stmtKey{db: db, text: text}
	for {
		c.mu.RLock()
		if s, ok := c.m[key]; ok {
			// Held while the query starts, so that close does not close
			// the statement under it.
			defer c.mu.RUnlock()
			return s.QueryContext(ctx, args...)
		}
		closed := c.closed
		c.mu.RUnlock()
		if closed {
			return db.QueryContext(ctx, text, args...)
		}
		s, err := db.PrepareContext(ctx, text)
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		c.mu.Lock()
		if _, ok := c.m[key]; ok || c.closed {
			_ = s.Close()
		} else {
			if c.m == nil {
				c.m = make(map[stmtKey]*sql.Stmt)
			}
			c.m[key] = s
		}
		c.mu.Unlock()
	}
}

// close closes the statements; later queries run unprepared.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, s := range c.m {
		_ = s.Close()
	}
	c.m = nil
}

// EventsTableInt is an EventsTable whose foreign IDs are int64s (stored in
// a bigint column). It has every method of EventsTable; Insert and
// InsertWithMetadata take the foreign ID as an int64, and Clone returns an
// EventsTableInt.
type EventsTableInt struct {
	*EventsTable
}

// NewEventsTableInt is NewEventsTable for int64 foreign IDs.
func NewEventsTableInt(name string, opts ...EventsOption) *EventsTableInt {
	return &EventsTableInt{NewEventsTable(name, opts...)}
}

// Insert is EventsTable.Insert with an int64 foreign ID.
func (t *EventsTableInt) Insert(ctx context.Context, dbc DBC, foreignID int64, typ reflex.EventType) (NotifyFunc, error) {
	return t.EventsTable.Insert(ctx, dbc, strconv.FormatInt(foreignID, 10), typ)
}

// InsertWithMetadata is EventsTable.InsertWithMetadata with an int64
// foreign ID.
func (t *EventsTableInt) InsertWithMetadata(ctx context.Context, dbc DBC, foreignID int64, typ reflex.EventType, metadata []byte) (NotifyFunc, error) {
	return t.EventsTable.InsertWithMetadata(ctx, dbc, strconv.FormatInt(foreignID, 10), typ, metadata)
}

// Clone is EventsTable.Clone returning an EventsTableInt.
func (t *EventsTableInt) Clone(opts ...EventsOption) *EventsTableInt {
	return &EventsTableInt{t.EventsTable.Clone(opts...)}
}
