package rsql

import (
	"context"
	"database/sql"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// Defaults of an EventsTable.
const (
	// defaultLookupLimit is the number of rows per load unless
	// WithEventLookupLimit sets another.
	defaultLookupLimit = 1000
	// maxCatchUpLimit bounds the rows per load of a stream that is far
	// behind the head and whose table has the default lookup limit: loads
	// that return a full batch double the next load's limit up to it.
	maxCatchUpLimit = 5000
	// maxCatchUpBytes bounds the memory of one such load, as measured on
	// the previous one: a stream holds at most two (the batch being
	// consumed and the one read ahead), so a consumer that stops reading
	// (a stalled gRPC client) pins about 2 MiB of events whatever their
	// size.
	maxCatchUpBytes = 1 << 20
	// defaultBackoff is the poll interval of the shared head watcher.
	defaultBackoff = 50 * time.Millisecond
	// defaultCacheSize is the number of head events the read-through cache
	// holds at most.
	defaultCacheSize = 10000
	// defaultCacheBytes bounds the memory of the events the read-through
	// cache holds (events with large metadata reach it before the count).
	defaultCacheBytes = 4 << 20
)

// Loader loads the events after prev (exclusive) in ascending ID order:
// at most a table-defined number of them, only those older than lag when
// lag > 0. It returns an empty slice when there are none. Event IDs must
// be base-10 int64s, ascending. WithEventsLoader replaces the SQL loader of
// a table with one; the gap detector, read-through cache and noop filter
// still run above it. EventsTable.LoadEvents is the SQL loader, for a
// Loader that wraps it.
type Loader func(ctx context.Context, dbc *sql.DB, prev int64, lag time.Duration) ([]*reflex.Event, error)

// Inserter inserts one event with the given foreign ID, type (possibly
// nil) and metadata (nil for none) through dbc. WithEventsInserter
// replaces the SQL inserter of a table with one; the Insert methods still
// reject noop events first.
type Inserter func(ctx context.Context, dbc DBC, foreignID string, typ reflex.EventType, metadata []byte) error

// EventsOption configures an EventsTable; pass options to NewEventsTable
// or Clone, which apply them in order to the table being built, before it
// is validated and used.
//
// As in luno/reflex, an option is a function of the table, so an option
// written outside this package compiles: such an option may set the
// table's StreamOptions fields (Lag, StreamFromHead, StreamToHead), the
// defaults of every stream of the table. It must not call the table's
// methods, which are not ready while options run.
type EventsOption func(*EventsTable)

// eventsConfig is what the options of this package set; NewEventsTable
// applies defaults and validates it.
type eventsConfig struct {
	idField, timeField, typeField, foreignIDField string
	metadataField, traceField                     string

	lookupLimit   int // 0: default, adaptive
	notifier      EventsNotifier
	inMemNotifier bool
	backoff       time.Duration
	noCache       bool
	includeNoops  bool
	loader        Loader
	inserter      Inserter
	dialect       Dialect

	invalid []string // what options were given that cannot work
}

// WithEventIDField sets the name of the ID column: a bigint auto-increment
// primary key, the stream cursor. Default "id".
func WithEventIDField(field string) EventsOption {
	return func(t *EventsTable) { t.cfg.idField = field }
}

// WithEventTimeField sets the name of the timestamp column, set to the
// database's current time on insert. Default "timestamp".
func WithEventTimeField(field string) EventsOption {
	return func(t *EventsTable) { t.cfg.timeField = field }
}

// WithEventTypeField sets the name of the int event type column. Default
// "type".
func WithEventTypeField(field string) EventsOption {
	return func(t *EventsTable) { t.cfg.typeField = field }
}

// WithEventForeignIDField sets the name of the foreign ID column (varchar,
// or bigint for EventsTableInt). Default "foreign_id".
func WithEventForeignIDField(field string) EventsOption {
	return func(t *EventsTable) { t.cfg.foreignIDField = field }
}

// WithEventMetadataField enables event metadata, stored in the named
// nullable blob column. By default metadata is disabled, and inserting
// non-nil metadata fails with ErrMetadataNotEnabled.
func WithEventMetadataField(field string) EventsOption {
	return func(t *EventsTable) { t.cfg.metadataField = field }
}

// WithEventTraceField enables trace persistence in the named nullable
// blob column: an insert whose context has a valid OpenTelemetry span
// stores its encoded span context, which streams return as Event.Trace.
// Default disabled.
func WithEventTraceField(field string) EventsOption {
	return func(t *EventsTable) { t.cfg.traceField = field }
}

// WithEventLookupLimit sets the number of rows one load reads. n <= 0
// means the default, 1000; with the default, a stream far behind the head
// reads bigger batches (up to 5000 rows) to catch up faster, while an
// explicit limit is used for every load.
func WithEventLookupLimit(n int) EventsOption {
	return func(t *EventsTable) { t.cfg.lookupLimit = max(n, 0) }
}

// WithEventsNotifier adds n as a wake-up source: a stream at the head
// also returns to loading when n's channel fires, and the NotifyFunc of an
// insert calls n.Notify. The shared head watcher and in-process inserts
// wake streams regardless. It replaces WithEventsInMemNotifier; the last
// of the two wins. A nil n panics at construction.
func WithEventsNotifier(n EventsNotifier) EventsOption {
	return func(t *EventsTable) {
		c := &t.cfg
		c.notifier = n
		c.inMemNotifier = false
		if n == nil {
			c.invalid = append(c.invalid, "WithEventsNotifier: nil notifier")
		}
	}
}

// WithEventsInMemNotifier gives the table its own in-process notifier
// (each Clone gets a new one). In-process inserts wake the streams of every
// table of the same name anyway; the option is kept for compatibility. It
// replaces WithEventsNotifier; the last of the two wins.
func WithEventsInMemNotifier() EventsOption {
	return func(t *EventsTable) {
		c := &t.cfg
		c.notifier = nil
		c.inMemNotifier = true
	}
}

// WithEventsBackoff sets the poll interval of streams at the head: the
// shared head watcher of the table checks for new rows this often while
// any stream waits (the shortest interval of the waiting streams wins).
// d == 0 makes streams poll the table without waiting (busy polling, for
// tests). A negative d panics at construction.
//
// The default is 50 ms rather than luno/reflex's 10 s: all streams of a
// table in a process share one watcher, so the idle cost is one cheap
// query per interval per table whatever the number of consumers, and a
// writer in another process is seen within 100 ms (on PostgreSQL, at
// once when it calls its inserts' NotifyFunc).
func WithEventsBackoff(d time.Duration) EventsOption {
	return func(t *EventsTable) {
		c := &t.cfg
		c.backoff = d
		if d < 0 {
			c.invalid = append(c.invalid, "WithEventsBackoff: negative backoff "+d.String())
		}
	}
}

// WithoutEventsCache disables the table's read-through cache: every load
// queries the database. Default: cache enabled.
func WithoutEventsCache() EventsOption {
	return func(t *EventsTable) { t.cfg.noCache = true }
}

// WithEventsCacheEnabled enables the read-through cache, undoing an
// earlier WithoutEventsCache.
//
// Deprecated: the cache is enabled by default.
func WithEventsCacheEnabled() EventsOption {
	return func(t *EventsTable) { t.cfg.noCache = false }
}

// WithIncludeNoopEvents makes streams return the noop events that FillGaps
// inserts (foreign ID "0", type 0). Default: noops are skipped.
func WithIncludeNoopEvents() EventsOption {
	return func(t *EventsTable) { t.cfg.includeNoops = true }
}

// WithEventsLoader replaces the base SQL loader (only it: gap detection,
// the cache and the noop filter still apply). The head watcher still polls
// the table's SQL table, and streams also reload every backoff interval at
// the head. A nil loader panics at construction.
func WithEventsLoader(l Loader) EventsOption {
	return func(t *EventsTable) {
		c := &t.cfg
		c.loader = l
		if l == nil {
			c.invalid = append(c.invalid, "WithEventsLoader: nil loader")
		}
	}
}

// WithEventsInserter replaces the SQL inserter. Insert, InsertWithMetadata
// and InsertMany (one call per event) call it after rejecting noop events
// only: as with luno/reflex, it receives a nil event type and values that
// the table's columns could not hold, and checks what it needs to itself.
// A nil inserter panics at construction.
func WithEventsInserter(i Inserter) EventsOption {
	return func(t *EventsTable) {
		c := &t.cfg
		c.inserter = i
		if i == nil {
			c.invalid = append(c.invalid, "WithEventsInserter: nil inserter")
		}
	}
}

// WithEventsDialect sets the SQL dialect: MySQL (the default), PostgreSQL
// or SQLite. On PostgreSQL, the NotifyFuncs of inserts also wake the
// streams of other processes (see the package documentation).
func WithEventsDialect(d Dialect) EventsOption {
	return func(t *EventsTable) { t.cfg.dialect = d }
}
