package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// ErrorsOption configures an ErrorsTable; see NewErrorsTable.
type ErrorsOption func(*errorsConfig)

type errorsConfig struct {
	table, idField, consumerField, eventIDField       string
	msgField, createdField, updatedField, statusField string

	inserter    ErrorInserter
	inserterSet bool
	// events selects the event sink: nil means the default events table.
	events *errorEvents

	counter    func(consumer string)
	counterSet bool
	dialect    Dialect
}

// errorEvents is where "error recorded" events go; recordOnly means
// nowhere.
type errorEvents struct {
	insert     ErrorEventInserter
	recordOnly bool
	what       string // the option that set it, for panics
	invalid    string // why the option is invalid, for panics
}

// WithErrorTableName sets the consumer-errors table. Default
// "consumer_errors".
func WithErrorTableName(name string) ErrorsOption {
	return func(c *errorsConfig) { c.table = name }
}

// WithErrorIDField sets the auto-increment id column. Default "id".
func WithErrorIDField(field string) ErrorsOption {
	return func(c *errorsConfig) { c.idField = field }
}

// WithErrorEventConsumerField sets the consumer name column. Default
// "consumer".
func WithErrorEventConsumerField(field string) ErrorsOption {
	return func(c *errorsConfig) { c.consumerField = field }
}

// WithErrorEventIDField sets the event id column. Default "event_id".
func WithErrorEventIDField(field string) ErrorsOption {
	return func(c *errorsConfig) { c.eventIDField = field }
}

// WithErrorMsgField sets the error message column. Default "error_msg".
func WithErrorMsgField(field string) ErrorsOption {
	return func(c *errorsConfig) { c.msgField = field }
}

// WithErrorCreatedAtField sets the creation time column. Default
// "created_at".
func WithErrorCreatedAtField(field string) ErrorsOption {
	return func(c *errorsConfig) { c.createdField = field }
}

// WithErrorUpdatedAtField sets the update time column. Default
// "updated_at".
func WithErrorUpdatedAtField(field string) ErrorsOption {
	return func(c *errorsConfig) { c.updatedField = field }
}

// WithErrorStatusField sets the status column. Default "error_status".
func WithErrorStatusField(field string) ErrorsOption {
	return func(c *errorsConfig) { c.statusField = field }
}

// WithErrorInserter replaces the SQL insert of the error row (the table and
// column options then only matter to the replaced inserter). Default: an
// insert that returns the existing row's id on a duplicate (consumer,
// event id) and requires an integer event id. A nil f makes NewErrorsTable
// panic.
func WithErrorInserter(f ErrorInserter) ErrorsOption {
	return func(c *errorsConfig) { c.inserter, c.inserterSet = f, true }
}

// WithErrorEventInserter makes f insert the "error recorded" events.
// Default: the events table of WithErrorEventsTable. WithErrorEventInserter,
// WithErrorEventsTable and WithErrorRecordOnly each choose where the events
// go: the last one given wins. A nil f makes NewErrorsTable panic.
func WithErrorEventInserter(f ErrorEventInserter) ErrorsOption {
	return func(c *errorsConfig) {
		c.events = &errorEvents{insert: f, what: "WithErrorEventInserter"}
	}
}

// WithErrorEventsTable makes the events table t receive the "error
// recorded" events; t must have a metadata column (WithEventMetadataField)
// or its own inserter (WithEventsInserter), else NewErrorsTable panics.
// Default: NewEventsTable("consumer_errors_events",
// WithEventMetadataField("metadata")) in the table's dialect. See
// WithErrorEventInserter for how it combines with the other event options.
// A nil t makes NewErrorsTable panic.
func WithErrorEventsTable(t *EventsTable) ErrorsOption {
	return func(c *errorsConfig) {
		ev := &errorEvents{what: "WithErrorEventsTable"}
		if t != nil {
			if t.cfg.metadataField == "" && t.cfg.inserter == nil {
				ev.invalid = fmt.Sprintf("events table %s has no metadata column (see WithEventMetadataField)", t.name)
			}
			ev.insert = t.InsertWithMetadata
		}
		c.events = ev
	}
}

// WithErrorRecordOnly records errors without inserting any event. See
// WithErrorEventInserter for how it combines with the other event options.
func WithErrorRecordOnly() ErrorsOption {
	return func(c *errorsConfig) {
		c.events = &errorEvents{recordOnly: true}
	}
}

// WithErrorCounter sets a function called with the consumer name after each
// error is recorded (after commit). It must be safe for concurrent use; nil
// disables counting. Default: increment the Prometheus counter
// reflex_consumer_dead_lettered_events_count{consumer_name}.
func WithErrorCounter(f func(consumer string)) ErrorsOption {
	return func(c *errorsConfig) { c.counter, c.counterSet = f, true }
}

// WithErrorsDialect selects the SQL dialect of the table, and of the
// default events table. Default MySQL.
func WithErrorsDialect(d Dialect) ErrorsOption {
	return func(c *errorsConfig) { c.dialect = d }
}

// ErrorsTable records consumer errors for dead-lettering (see
// ErrorsSchema): one row per (consumer, event), and for each recorded error
// an event in an events table (type reflex.EventErrorRecorded, foreign id
// = the error row id, metadata = the consumer name) in the same
// transaction, so other consumers can react to dead-lettered events.
//
// An ErrorsTable is safe for concurrent use.
type ErrorsTable struct {
	cfg      errorsConfig
	d        dialect
	cols     errorCols
	inserter ErrorInserter
	events   ErrorEventInserter // nil: record only
	counter  func(consumer string)
}

// NewErrorsTable returns a consumer-errors table. Defaults: table
// consumer_errors with columns id, consumer, event_id, error_msg,
// created_at, updated_at, error_status; events go to the events table
// consumer_errors_events with a metadata column; the counter increments
// reflex_consumer_dead_lettered_events_count; MySQL dialect.
//
// NewErrorsTable does no I/O. It panics with an "rsql:" message on an
// invalid table or column name, a nil option, inserter, event inserter or
// events table, or an events table without metadata: these are
// programming errors.
func NewErrorsTable(opts ...ErrorsOption) *ErrorsTable {
	cfg := errorsConfig{
		table:         "consumer_errors",
		idField:       "id",
		consumerField: "consumer",
		eventIDField:  "event_id",
		msgField:      "error_msg",
		createdField:  "created_at",
		updatedField:  "updated_at",
		statusField:   "error_status",
	}
	for _, o := range opts {
		if o == nil {
			panic("rsql: NewErrorsTable: nil option")
		}
		o(&cfg)
	}
	mustIdent("errors table", cfg.table)
	mustIdent("error id column", cfg.idField)
	mustIdent("error consumer column", cfg.consumerField)
	mustIdent("error event id column", cfg.eventIDField)
	mustIdent("error message column", cfg.msgField)
	mustIdent("error created-at column", cfg.createdField)
	mustIdent("error updated-at column", cfg.updatedField)
	mustIdent("error status column", cfg.statusField)
	d := cfg.dialect.impl()

	t := &ErrorsTable{cfg: cfg, d: d, inserter: cfg.inserter, counter: cfg.counter}
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

// insertRow is the default ErrorInserter.
func (t *ErrorsTable) insertRow(ctx context.Context, dbc DBC, consumer, eventID, errMsg string, status reflex.ErrorStatus) (string, error) {
	eid, err := parseCursor(eventID)
	if err != nil {
		return "", fmt.Errorf("event id %q: %w", eventID, ErrInvalidIntID)
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
// default inserter, does an eventID that is not an integer (wrapping
// ErrInvalidIntID). The function blocks for the transaction and is safe for
// concurrent use.
func (t *ErrorsTable) ToErrorInsertFunc(dbc *sql.DB) reflex.ErrorInsertFunc {
	return func(ctx context.Context, consumerName, eventID, errMsg string) error {
		if err := t.record(ctx, dbc, consumerName, eventID, errMsg); err != nil {
			return fmt.Errorf("rsql: %w: consumer %q, event %q: %w", ErrDeadLetter, consumerName, eventID, err)
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
// violation of a supported database (MySQL error 1062, SQLite
// SQLITE_CONSTRAINT_UNIQUE or _PRIMARYKEY), such as a custom
// ErrorInserter may return for an already recorded (consumer, event).
func IsDuplicateErrorInsertion(err error) bool {
	return mysqlDialect{}.isDuplicateKey(err) || sqliteDialect{}.isDuplicateKey(err)
}
