package rsql

import (
	"context"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"strconv"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/tracing"
)

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
// FillGaps). A WithEventsInserter inserter gets every other event as
// given; the SQL inserter also rejects, before writing anything:
//   - a nil event type or a nil dbc, with an error;
//   - non-nil metadata on a table without a metadata column, with
//     ErrMetadataNotEnabled;
//   - a value its column cannot hold exactly (a foreign ID, metadata or
//     trace longer than the column, text that is not valid UTF-8, a type
//     or an integer foreign ID outside the column's range), with an error
//     wrapping ErrInvalidValue naming the table, the column and its
//     limit, whatever the session's SQL mode (MySQL and MariaDB otherwise
//     cut or clamp such values without error in a non-strict mode);
//   - a table without the configured columns, with an error wrapping
//     ErrSchema naming the column.
//
// The SQL inserter reads the table's columns from the database's catalog
// through dbc once, at the first insert (again only after a failed
// read). Database errors are returned wrapped with the table name. After
// any error other than ErrInvalidNoop the NotifyFunc is a non-nil no-op.
func (t *EventsTable) InsertWithMetadata(ctx context.Context, dbc DBC, foreignID string, typ reflex.EventType, metadata []byte) (NotifyFunc, error) {
	if typ != nil && isNoop(foreignID, typ.ReflexType()) {
		return nil, ErrInvalidNoop
	}
	if t.cfg.inserter != nil {
		if err := t.cfg.inserter(ctx, dbc, foreignID, typ, metadata); err != nil {
			return noopNotify, err
		}
		return t.notify, nil
	}
	return t.insertRows(ctx, dbc, []EventToInsert{{ForeignID: foreignID, Type: typ, MetaData: metadata}}, false)
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
// Every event is checked before anything is written, as by
// InsertWithMetadata: a noop event fails the whole call with an error
// wrapping ErrInvalidNoop and naming its index, with a nil NotifyFunc;
// the other errors of the SQL inserter also name the event's index. With
// WithEventsInserter, the inserter is called once per event.
func (t *EventsTable) InsertMany(ctx context.Context, dbc DBC, events []EventToInsert) (NotifyFunc, error) {
	for i, e := range events {
		if e.Type != nil && isNoop(e.ForeignID, e.Type.ReflexType()) {
			return nil, fmt.Errorf("rsql: InsertMany: event %d: %w", i, ErrInvalidNoop)
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
	return t.insertRows(ctx, dbc, events, true)
}

func noopNotify() {}

var errNilType = errors.New("rsql: nil event type")

// isNoop reports whether an event with these fields is a gap-filling noop.
func isNoop(foreignID string, typ int) bool { return typ == 0 && foreignID == noopForeignID }

// noopForeignID is the foreign ID of noop events (with type 0).
const noopForeignID = "0"

// maxInsertSQL bounds the size of one multi-row INSERT of literals, well
// below MariaDB's default max_allowed_packet (16 MiB). Tests change it.
var maxInsertSQL = 4 << 20

// insertRows is the SQL inserter: it checks every event, then runs the
// INSERT statements of eventsSQL.insertRows, and returns the NotifyFunc
// of the insert (noopNotify after an error). many prefixes errors with
// the event's index, for InsertMany.
func (t *EventsTable) insertRows(ctx context.Context, dbc DBC, events []EventToInsert, many bool) (NotifyFunc, error) {
	notify, err := t.insertRowsErr(ctx, dbc, events, many)
	if err != nil {
		return noopNotify, err
	}
	return notify, nil
}

func (t *EventsTable) insertRowsErr(ctx context.Context, dbc DBC, events []EventToInsert, many bool) (NotifyFunc, error) {
	if isNilDBC(dbc) {
		return nil, fmt.Errorf("rsql: insert into events table %s: nil DBC", t.name)
	}
	eventErr := func(i int, err error) error {
		if many {
			return fmt.Errorf("rsql: InsertMany: event %d: %w", i, err)
		}
		return err
	}
	for i, e := range events {
		switch {
		case e.Type == nil:
			return nil, eventErr(i, errNilType)
		case e.MetaData != nil && t.q.metadata == "":
			return nil, ErrMetadataNotEnabled
		}
	}
	cols, err := t.insertColumns(ctx, dbc)
	if err != nil {
		return nil, err
	}
	var trace []byte
	if t.q.trace != "" {
		if sc, ok := tracing.Extract(ctx); ok {
			trace, _ = tracing.Marshal(sc) // cannot fail for a valid span context
			if err := cols.trace.checkBytes(cols.traceName, trace); err != nil {
				return nil, err
			}
		}
	}
	for i, e := range events {
		if err := cols.check(e); err != nil {
			return nil, eventErr(i, err)
		}
	}
	var notify NotifyFunc
	for len(events) > 0 {
		s := sqlStmt{d: t.d}
		events = events[t.q.insertRows(&s, events, trace):]
		if notify, err = t.d.execInsert(ctx, t, dbc, &s); err != nil {
			return nil, t.insertErr(err)
		}
	}
	return notify, nil
}

// insertErr wraps the error of an INSERT statement with the table's name
// (and, for a database of another engine, ErrWrongDialect).
func (t *EventsTable) insertErr(err error) error {
	return fmt.Errorf("rsql: insert into events table %s: %w", t.name, checkEngine(t.d, err))
}

// insertColumns are the columns the SQL inserter writes, as the catalog
// describes them, with their names for error messages.
type insertColumns struct {
	id, foreignID, typ, metadata, trace             column
	foreignIDName, typName, metadataName, traceName string
}

// insertColumns returns the inserted columns, reading them from the
// catalog through dbc on first use (a failed read is retried by the next
// insert).
func (t *EventsTable) insertColumns(ctx context.Context, dbc DBC) (*insertColumns, error) {
	if c := t.insCols.Load(); c != nil {
		return c, nil
	}
	names := []string{t.cfg.foreignIDField, t.cfg.typeField, t.cfg.idField}
	if t.q.metadata != "" {
		names = append(names, t.cfg.metadataField)
	}
	if t.q.trace != "" {
		names = append(names, t.cfg.traceField)
	}
	cols, err := t.cols.lookup(ctx, dbc, names...)
	if err != nil {
		return nil, fmt.Errorf("rsql: insert into events table %s: %w", t.name, err)
	}
	name := func(col string) string { return "events table " + t.name + ", column " + unquote(col) }
	if n := cols[2].seqCache; n > 1 {
		// The gap design of PostgreSQL relies on IDs taken from the
		// sequence in insert order (see the package documentation).
		return nil, fmt.Errorf("rsql: insert into events table %s: %w: the sequence of column %s caches %d values per session; "+
			"the gap filler needs CACHE 1 (ALTER TABLE %s ALTER COLUMN %s SET CACHE 1, as the shipped DDL declares it)",
			t.name, ErrSchema, unquote(t.cfg.idField), n, t.q.table, t.q.id)
	}
	c := &insertColumns{
		id:        cols[2],
		foreignID: cols[0], foreignIDName: name(t.cfg.foreignIDField),
		typ: cols[1], typName: name(t.cfg.typeField),
	}
	cols = cols[3:]
	if t.q.metadata != "" {
		c.metadata, c.metadataName, cols = cols[0], name(t.cfg.metadataField), cols[1:]
	}
	if t.q.trace != "" {
		c.trace, c.traceName = cols[0], name(t.cfg.traceField)
	}
	t.insCols.Store(c)
	return c, nil
}

// check returns an error wrapping ErrInvalidValue if a value of e does not
// fit its column.
func (c *insertColumns) check(e EventToInsert) error {
	if c.foreignID.integer {
		// MySQL would store a string that is not a number as 0.
		id, err := strconv.ParseInt(e.ForeignID, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: %s: foreign ID %s is not a base-10 integer", ErrInvalidValue, c.foreignIDName, bounded.Quote(e.ForeignID))
		}
		if err := c.foreignID.checkInt(c.foreignIDName, id); err != nil {
			return err
		}
	} else if err := c.foreignID.checkString(c.foreignIDName, e.ForeignID); err != nil {
		return err
	}
	if err := c.typ.checkInt(c.typName, int64(e.Type.ReflexType())); err != nil {
		return err
	}
	if e.MetaData != nil {
		return c.metadata.checkBytes(c.metadataName, e.MetaData)
	}
	return nil
}
