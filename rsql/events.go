package rsql

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/tracing"
)

// EventsTable is an SQL table of events: Insert adds events in the
// caller's transaction and ToStream streams them (see the package
// documentation for the schema, gaps and the head watcher).
//
// Create it with NewEventsTable, once per table, and share it: its
// read-through cache and gap listeners belong to the instance. An
// EventsTable is safe for concurrent use.
type EventsTable struct {
	name     string
	opts     []EventsOption
	cfg      eventsConfig
	d        dialect
	notifier EventsNotifier
	notify   NotifyFunc

	q         quotedNames
	selectSQL string // select of the stream columns up to "WHERE id > "
	insertSQL string // insert of one event up to "VALUES "
	limit     int    // rows per load
	adaptive  bool   // limit may grow while catching up
	backoff   time.Duration

	stmts sync.Map // stmtKey -> *sql.Stmt of loadSQL
	m     *metrics.EventsTable
	cache *rcache // nil when disabled
	gaps  *gapHub
	open  *gapTracker
}

// quotedNames are the table's identifiers quoted for its dialect.
type quotedNames struct {
	table, id, time, typ, foreignID, metadata, trace string
}

// NewEventsTable returns the events table called name (optionally
// schema.name) configured by opts. It does no I/O. It panics, with an
// "rsql:" message, on an invalid table or column name or an invalid
// option (nil loader, inserter or notifier; negative backoff).
func NewEventsTable(name string, opts ...EventsOption) *EventsTable {
	cfg := eventsConfig{
		idField:        "id",
		timeField:      "timestamp",
		typeField:      "type",
		foreignIDField: "foreign_id",
		backoff:        defaultBackoff,
	}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("rsql: NewEventsTable(%q): option %d is nil", name, i))
		}
		o(&cfg)
	}
	if len(cfg.invalid) > 0 {
		panic(fmt.Sprintf("rsql: NewEventsTable(%q): %s", name, strings.Join(cfg.invalid, "; ")))
	}
	mustIdent("events table", name)
	mustIdent("event id column", cfg.idField)
	mustIdent("event time column", cfg.timeField)
	mustIdent("event type column", cfg.typeField)
	mustIdent("event foreign id column", cfg.foreignIDField)
	if cfg.metadataField != "" {
		mustIdent("event metadata column", cfg.metadataField)
	}
	if cfg.traceField != "" {
		mustIdent("event trace column", cfg.traceField)
	}

	d := cfg.dialect.impl()
	m := metrics.NewEventsTable(unquote(name))
	t := &EventsTable{
		name:    name,
		opts:    append([]EventsOption(nil), opts...),
		cfg:     cfg,
		d:       d,
		limit:   cfg.lookupLimit,
		backoff: cfg.backoff,
		m:       m,
		gaps:    newGapHub(m),
		open:    newGapTracker(),
	}
	if t.limit == 0 {
		t.limit = defaultLookupLimit
		t.adaptive = true
	}
	t.q = quotedNames{
		table:     d.quote(name),
		id:        d.quote(cfg.idField),
		time:      d.quote(cfg.timeField),
		typ:       d.quote(cfg.typeField),
		foreignID: d.quote(cfg.foreignIDField),
	}
	if cfg.metadataField != "" {
		t.q.metadata = d.quote(cfg.metadataField)
	}
	if cfg.traceField != "" {
		t.q.trace = d.quote(cfg.traceField)
	}

	switch {
	case cfg.inMemNotifier:
		t.notifier = &inMemNotifier{}
	case cfg.notifier != nil:
		t.notifier = cfg.notifier
	default:
		t.notifier = stubNotifier{}
	}
	key := t.q.table
	n := t.notifier
	t.notify = func() {
		n.Notify()
		wakeWatchers(key)
	}
	if !cfg.noCache {
		t.cache = newRCache(defaultCacheSize, defaultCacheBytes, m)
	}

	meta, trace := "NULL", "NULL"
	if t.q.metadata != "" {
		meta = t.q.metadata
	}
	if t.q.trace != "" {
		trace = t.q.trace
	}
	t.selectSQL = "SELECT " + t.q.id + ", " + t.q.foreignID + ", " + t.q.time + ", " + t.q.typ + ", " +
		meta + ", " + trace + " FROM " + t.q.table + " WHERE " + t.q.id + " > "
	cols := t.q.foreignID + ", " + t.q.time + ", " + t.q.typ
	if t.q.metadata != "" {
		cols += ", " + t.q.metadata
	}
	if t.q.trace != "" {
		cols += ", " + t.q.trace
	}
	t.insertSQL = "INSERT INTO " + t.q.table + " (" + cols + ") VALUES "
	return t
}

// Name returns the table name given to NewEventsTable.
func (t *EventsTable) Name() string { return t.name }

// Clone returns a new table with the options of t followed by opts. The
// clone has its own read-through cache, gap listeners and (with
// WithEventsInMemNotifier) notifier; an explicit notifier, loader or
// inserter is shared. If FillGaps is filling the gaps of t, it also fills
// those of the clone (stop that with StopFillingGaps on the clone);
// listeners added with ListenGaps are not carried. Clone panics like
// NewEventsTable on invalid options.
func (t *EventsTable) Clone(opts ...EventsOption) *EventsTable {
	all := append(append([]EventsOption(nil), t.opts...), opts...)
	c := NewEventsTable(t.name, all...)
	if db := t.gaps.fillDB(); db != nil {
		// Only fails if the clone's listeners are stopped, which a new
		// table's are not.
		_ = FillGaps(db, c)
	}
	return c
}

// Insert inserts an event through dbc (a *sql.DB, or a *sql.Tx to make
// the event part of the caller's transaction) and returns a NotifyFunc to
// call once the event is committed. It is InsertWithMetadata with nil
// metadata; see there for the errors.
func (t *EventsTable) Insert(ctx context.Context, dbc DBC, foreignID string, typ reflex.EventType) (NotifyFunc, error) {
	return t.InsertWithMetadata(ctx, dbc, foreignID, typ, nil)
}

// InsertWithMetadata inserts an event with metadata (nil for none, stored
// as NULL) through dbc and returns a NotifyFunc to call once the event is
// committed. The timestamp is the database's current time; with a trace
// column, an insert whose ctx has a valid span also stores the encoded
// span context.
//
// An event with foreign ID "0" and type 0 is rejected with ErrInvalidNoop
// and a nil NotifyFunc (that combination marks the noop events of
// FillGaps). Non-nil metadata on a table without a metadata column fails
// with ErrMetadataNotEnabled, and a nil dbc (without WithEventsInserter)
// with an error. Other failures, such as metadata too long for its
// column, return the database error wrapped with the table name.
// After any error other than ErrInvalidNoop the NotifyFunc is a non-nil
// no-op.
func (t *EventsTable) InsertWithMetadata(ctx context.Context, dbc DBC, foreignID string, typ reflex.EventType, metadata []byte) (NotifyFunc, error) {
	if err := checkInsert(foreignID, typ); err != nil {
		if errors.Is(err, ErrInvalidNoop) {
			return nil, err
		}
		return noopNotify, err
	}
	var err error
	if t.cfg.inserter != nil {
		err = t.cfg.inserter(ctx, dbc, foreignID, typ, metadata)
	} else {
		err = t.insertSQLRows(ctx, dbc, []EventToInsert{{ForeignID: foreignID, Type: typ, MetaData: metadata}})
	}
	if err != nil {
		return noopNotify, err
	}
	return t.notify, nil
}

// EventToInsert is one event for InsertMany.
type EventToInsert struct {
	ForeignID string
	Type      reflex.EventType
	// MetaData is the event's metadata, nil for none.
	MetaData []byte
}

// InsertMany inserts events, in order, with one multi-row INSERT
// statement (several for very large batches, all through dbc, so within
// the caller's transaction if dbc is a *sql.Tx) and returns a NotifyFunc
// to call after commit. Events get consecutive IDs only if no other
// transaction inserts into the table at the same time, and each row's
// timestamp is the database's time when that row was written. An empty
// slice does nothing.
//
// Every event is checked first: a noop event (foreign ID "0" and type 0)
// fails the whole call with an error wrapping ErrInvalidNoop and naming
// its index, with a nil NotifyFunc; metadata without a metadata column
// fails with ErrMetadataNotEnabled. With WithEventsInserter, the inserter
// is called once per event.
func (t *EventsTable) InsertMany(ctx context.Context, dbc DBC, events []EventToInsert) (NotifyFunc, error) {
	for i, e := range events {
		if err := checkInsert(e.ForeignID, e.Type); err != nil {
			err = fmt.Errorf("rsql: InsertMany: event %d: %w", i, err)
			if errors.Is(err, ErrInvalidNoop) {
				return nil, err
			}
			return noopNotify, err
		}
	}
	if len(events) == 0 {
		return noopNotify, nil
	}
	if t.cfg.inserter != nil {
		for i, e := range events {
			if err := t.cfg.inserter(ctx, dbc, e.ForeignID, e.Type, e.MetaData); err != nil {
				return noopNotify, fmt.Errorf("rsql: InsertMany: event %d: %w", i, err)
			}
		}
		return t.notify, nil
	}
	if err := t.insertSQLRows(ctx, dbc, events); err != nil {
		return noopNotify, err
	}
	return t.notify, nil
}

func noopNotify() {}

var errNilType = errors.New("rsql: nil event type")

// checkInsert validates an event before insertion.
func checkInsert(foreignID string, typ reflex.EventType) error {
	if typ == nil {
		return errNilType
	}
	if isNoop(foreignID, typ.ReflexType()) {
		return ErrInvalidNoop
	}
	return nil
}

// isNoop reports whether an event with these fields is a gap-filling noop.
func isNoop(foreignID string, typ int) bool { return typ == 0 && foreignID == noopForeignID }

// noopForeignID is the foreign ID of noop events (with type 0).
const noopForeignID = "0"

// maxInsertSQL bounds the size of one multi-row INSERT of literals, well
// below MariaDB's default max_allowed_packet (16 MiB). Tests change it.
var maxInsertSQL = 4 << 20

// insertSQLRows is the default inserter: one INSERT per chunk of rows,
// with literal values where the dialect prefers them.
func (t *EventsTable) insertSQLRows(ctx context.Context, dbc DBC, events []EventToInsert) error {
	if isNilDBC(dbc) {
		return fmt.Errorf("rsql: insert into events table %s: nil DBC", t.name)
	}
	var trace []byte
	if t.q.trace != "" {
		if sc, ok := tracing.Extract(ctx); ok {
			trace, _ = tracing.Marshal(sc) // cannot fail for a valid span context
		}
	}
	perRow := 2
	if t.q.metadata != "" {
		perRow++
	}
	if t.q.trace != "" {
		perRow++
	}
	maxRows := t.d.maxParams() / perRow

	var (
		b    strings.Builder
		args []any
		rows int
	)
	flush := func() error {
		if rows == 0 {
			return nil
		}
		if _, err := dbc.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("rsql: insert into events table %s: %w", t.name, err)
		}
		b.Reset()
		args = args[:0]
		rows = 0
		return nil
	}
	if t.q.metadata == "" {
		for _, e := range events {
			if e.MetaData != nil {
				return ErrMetadataNotEnabled
			}
		}
	}
	for _, e := range events {
		if rows > 0 && (b.Len() >= maxInsertSQL || rows >= maxRows) {
			if err := flush(); err != nil {
				return err
			}
		}
		if rows == 0 {
			b.WriteString(t.insertSQL)
		} else {
			b.WriteString(", ")
		}
		rows++
		b.WriteByte('(')
		args = t.value(&b, args, e.ForeignID)
		b.WriteString(", ")
		b.WriteString(t.d.now())
		b.WriteString(", ")
		b.WriteString(strconv.Itoa(e.Type.ReflexType()))
		if t.q.metadata != "" {
			b.WriteString(", ")
			args = t.value(&b, args, e.MetaData)
		}
		if t.q.trace != "" {
			b.WriteString(", ")
			args = t.value(&b, args, trace)
		}
		b.WriteByte(')')
	}
	return flush()
}

// value writes v (a string or []byte; a nil []byte is NULL) as a literal
// or a placeholder, returning the arguments.
func (t *EventsTable) value(b *strings.Builder, args []any, v any) []any {
	if lit, ok := t.d.literal(v); ok {
		b.WriteString(lit)
		return args
	}
	args = append(args, v)
	b.WriteString(t.d.placeholder(len(args)))
	return args
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
