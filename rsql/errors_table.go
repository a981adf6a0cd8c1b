package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"strconv"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// ErrDeadLetter is wrapped by every error of the functions returned by
// ErrorsTable.ToErrorInsertFunc: the consumer error was not recorded (the
// transaction was rolled back).
var ErrDeadLetter = errors.New("dead lettering error failed")

// defaultErrorEventsTable is the events table receiving "error recorded"
// events by default.
const defaultErrorEventsTable = "consumer_errors_events"

// ErrorInserter inserts a consumer-error row through dbc (the transaction of
// ErrorsTable.ToErrorInsertFunc) and returns its id. On a duplicate
// (consumer, eventID) it should return the existing row's id rather than
// fail. See WithErrorInserter.
type ErrorInserter func(ctx context.Context, dbc DBC, consumer, eventID, errMsg string, status reflex.ErrorStatus) (id string, err error)

// ErrorEventInserter inserts the event that announces a recorded consumer
// error through dbc (the same transaction): foreign id = the error row id,
// type = the status, metadata = the consumer name. It returns a function to
// call after commit. EventsTable.InsertWithMetadata is one. See
// WithErrorEventInserter.
type ErrorEventInserter func(ctx context.Context, dbc DBC, foreignID string, typ reflex.EventType, metadata []byte) (NotifyFunc, error)

// ErrorsTable records consumer errors for dead-lettering (see
// ErrorsSchema): one row per (consumer, event), and for each recorded error
// an event in an events table (type reflex.EventErrorRecorded, foreign id
// = the error row id, metadata = the consumer name) in the same
// transaction, so other consumers can react to dead-lettered events.
//
// With the default inserter, consumer names follow the rule of cursors
// tables (see CursorsTable): a name must be non-empty, valid UTF-8 and fit
// the consumer column (else ErrInvalidValue; nothing is stored cut), and
// names compare byte by byte: on first use the table reads its columns
// from the catalog and refuses (ErrSchema) a consumer column whose
// collation would fold names that differ in case or accents, which would
// record the errors of two consumers as one.
//
// An ErrorsTable is safe for concurrent use.
type ErrorsTable struct {
	cfg      errorsConfig
	d        dialect
	cols     errorCols
	inserter ErrorInserter
	events   ErrorEventInserter // nil: record only
	counter  func(consumer string)
	catalog  *columns
	meta     lazy[errorsMeta]
}

// errorsMeta is what the table's columns accept, read from the catalog on
// first use.
type errorsMeta struct {
	key     nameKey
	eventID column
	evWhat  string // table.column of event ids, for messages
}

// NewErrorsTable returns a consumer-errors table. Defaults: table
// consumer_errors with columns id, consumer, event_id, error_msg,
// created_at, updated_at, error_status; events go to the events table
// consumer_errors_events with a metadata column; the counter increments
// reflex_consumer_dead_lettered_events_count; MySQL dialect.
//
// NewErrorsTable does no I/O: the default inserter reads the table's
// columns from the catalog on first use. It panics with an "rsql:" message on an
// invalid table or column name, a nil option, inserter, event inserter or
// events table, or an events table without metadata: these are
// programming errors.
func NewErrorsTable(opts ...ErrorsOption) *ErrorsTable {
	t := &ErrorsTable{cfg: defaultErrorsConfig()}
	for _, o := range opts {
		if o == nil {
			panic("rsql: NewErrorsTable: nil option")
		}
		o(t)
	}
	cfg := t.cfg
	mustIdent("errors table", cfg.table)
	mustIdent("error id column", cfg.idField)
	mustIdent("error consumer column", cfg.consumerField)
	mustIdent("error event id column", cfg.eventIDField)
	mustIdent("error message column", cfg.msgField)
	mustIdent("error created-at column", cfg.createdField)
	mustIdent("error updated-at column", cfg.updatedField)
	mustIdent("error status column", cfg.statusField)
	d := cfg.dialect.impl()
	t.d, t.inserter, t.counter, t.catalog = d, cfg.inserter, cfg.counter, newColumns(d, cfg.table)
	switch {
	case !cfg.inserterSet:
		t.inserter = t.insertRow
	case cfg.inserter == nil:
		panic("rsql: NewErrorsTable: WithErrorInserter(nil)")
	}
	switch ev := cfg.events; {
	case ev == nil:
		t.events = NewEventsTable(defaultErrorEventsTable,
			WithEventMetadataField("metadata"), WithEventsDialect(cfg.dialect)).InsertWithMetadata
	case ev.recordOnly:
	case ev.insert == nil:
		panic("rsql: NewErrorsTable: " + ev.what + "(nil)")
	case ev.invalid != "":
		panic("rsql: NewErrorsTable: " + ev.what + ": " + ev.invalid)
	default:
		t.events = ev.insert
	}
	if !cfg.counterSet {
		t.counter = metrics.DeadLettered
	}
	q := d.quote
	t.cols = errorCols{
		table: q(cfg.table), id: q(cfg.idField), consumer: q(cfg.consumerField), eventID: q(cfg.eventIDField),
		msg: q(cfg.msgField), created: q(cfg.createdField), updated: q(cfg.updatedField), status: q(cfg.statusField),
	}
	return t
}

// loadMeta reads the table's columns from the catalog through dbc on
// first use.
func (t *ErrorsTable) loadMeta(ctx context.Context, dbc DBC) (*errorsMeta, error) {
	return t.meta.get(func() (*errorsMeta, error) {
		c := t.cfg
		cols, err := t.catalog.lookup(ctx, dbc, c.consumerField, c.eventIDField, c.idField, c.msgField,
			c.createdField, c.updatedField, c.statusField)
		if err != nil {
			return nil, err
		}
		table := unquote(c.table)
		key, err := loadNameKey(ctx, t.d, dbc, table, unquote(c.consumerField), cols[0])
		if err != nil {
			return nil, err
		}
		return &errorsMeta{key: key, eventID: cols[1], evWhat: table + "." + unquote(c.eventIDField)}, nil
	})
}

// insertRow is the default ErrorInserter.
func (t *ErrorsTable) insertRow(ctx context.Context, dbc DBC, consumer, eventID, errMsg string, status reflex.ErrorStatus) (string, error) {
	eid, err := parseCursor(eventID)
	if err != nil {
		return "", fmt.Errorf("event id %s: %w", bounded.Quote(eventID), ErrInvalidIntID)
	}
	m, err := t.loadMeta(ctx, dbc)
	if err != nil {
		return "", err
	}
	if err := m.key.check(consumer); err != nil {
		return "", err
	}
	if err := m.eventID.checkInt(m.evWhat, eid); err != nil {
		return "", err
	}
	q := &sqlStmt{d: t.d}
	t.d.errorInsert(q, t.cols, consumer, eid, errMsg, int(status))
	id, err := t.d.execInsertID(ctx, dbc, q)
	if err != nil {
		return "", fmt.Errorf("insert into %s: %w", t.cfg.table, err)
	}
	return strconv.FormatInt(id, 10), nil
}

// ToErrorInsertFunc returns a [reflex.ErrorInsertFunc] recording consumer
// errors through dbc, with its arguments in the documented order
// (consumerName, eventID, errMsg). Each call runs one transaction: insert
// the error row (status reflex.EventErrorRecorded; a duplicate consumer and
// event id reuses the existing row and succeeds), insert the "error
// recorded" event, commit; then it calls the event's notify function and the
// counter. On any failure it rolls back and returns an error wrapping
// ErrDeadLetter and the cause; an empty consumerName fails, and so, with the
// default inserter, do an eventID that is not an integer (wrapping
// ErrInvalidIntID), a consumer name that breaks the rule for names or an
// event id out of the column's range (ErrInvalidValue), and a table whose
// columns do not fit (ErrSchema). The function blocks for the transaction
// and is safe for concurrent use.
func (t *ErrorsTable) ToErrorInsertFunc(dbc *sql.DB) reflex.ErrorInsertFunc {
	return func(ctx context.Context, consumerName, eventID, errMsg string) error {
		if err := t.record(ctx, dbc, consumerName, eventID, errMsg); err != nil {
			return fmt.Errorf("rsql: %w: consumer %s, event %s: %w", ErrDeadLetter, bounded.Quote(consumerName), bounded.Quote(eventID), err)
		}
		return nil
	}
}

func (t *ErrorsTable) record(ctx context.Context, dbc *sql.DB, consumer, eventID, errMsg string) error {
	if dbc == nil {
		return errors.New("nil *sql.DB")
	}
	if consumer == "" {
		return errors.New("empty consumer name")
	}
	tx, err := dbc.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()

	id, err := t.inserter(ctx, tx, consumer, eventID, errMsg, reflex.EventErrorRecorded)
	if err != nil {
		return err
	}
	var notify NotifyFunc
	if t.events != nil {
		if notify, err = t.events(ctx, tx, id, reflex.EventErrorRecorded, []byte(consumer)); err != nil {
			return fmt.Errorf("insert error event: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if notify != nil {
		notify()
	}
	if t.counter != nil {
		t.counter(consumer)
	}
	return nil
}

// IsDuplicateErrorInsertion reports whether err is or wraps a unique-key
// violation of a supported database (MySQL error 1062, PostgreSQL
// SQLSTATE 23505, SQLite SQLITE_CONSTRAINT_UNIQUE or _PRIMARYKEY), such as
// a custom ErrorInserter may return for an already recorded (consumer,
// event).
func IsDuplicateErrorInsertion(err error) bool {
	return mysqlDialect{}.isDuplicateKey(err) || pgDialect{}.isDuplicateKey(err) || sqliteDialect{}.isDuplicateKey(err)
}
