package rsql

import "fmt"

// ErrorsOption configures an ErrorsTable; see NewErrorsTable. As in
// luno/reflex it is a function of the table, so options can be composed
// in functions of the same type:
//
//	func myErrors(t *rsql.ErrorsTable) {
//		rsql.WithErrorTableName("dead_letters")(t)
//		rsql.WithErrorRecordOnly()(t)
//	}
//
// Options only record settings; NewErrorsTable applies them, then checks
// them.
type ErrorsOption func(*ErrorsTable)

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

// defaultErrorsConfig returns the configuration of a table without
// options.
func defaultErrorsConfig() errorsConfig {
	return errorsConfig{
		table:         "consumer_errors",
		idField:       "id",
		consumerField: "consumer",
		eventIDField:  "event_id",
		msgField:      "error_msg",
		createdField:  "created_at",
		updatedField:  "updated_at",
		statusField:   "error_status",
	}
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
	return func(t *ErrorsTable) { t.cfg.table = name }
}

// WithErrorIDField sets the auto-increment id column. Default "id".
func WithErrorIDField(field string) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.idField = field }
}

// WithErrorEventConsumerField sets the consumer name column. Default
// "consumer". The column must compare names byte by byte (see
// ErrorsTable).
func WithErrorEventConsumerField(field string) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.consumerField = field }
}

// WithErrorEventIDField sets the event id column. Default "event_id".
func WithErrorEventIDField(field string) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.eventIDField = field }
}

// WithErrorMsgField sets the error message column. Default "error_msg".
func WithErrorMsgField(field string) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.msgField = field }
}

// WithErrorCreatedAtField sets the creation time column. Default
// "created_at".
func WithErrorCreatedAtField(field string) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.createdField = field }
}

// WithErrorUpdatedAtField sets the update time column. Default
// "updated_at".
func WithErrorUpdatedAtField(field string) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.updatedField = field }
}

// WithErrorStatusField sets the status column. Default "error_status".
func WithErrorStatusField(field string) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.statusField = field }
}

// WithErrorInserter replaces the SQL insert of the error row (the table and
// column options then only matter to the replaced inserter, and the table
// checks no column). Default: an insert that returns the existing row's id
// on a duplicate (consumer, event id) and requires an integer event id. A
// nil f makes NewErrorsTable panic.
func WithErrorInserter(f ErrorInserter) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.inserter, t.cfg.inserterSet = f, true }
}

// WithErrorEventInserter makes f insert the "error recorded" events.
// Default: the events table of WithErrorEventsTable. WithErrorEventInserter,
// WithErrorEventsTable and WithErrorRecordOnly each choose where the events
// go: the last one given wins. A nil f makes NewErrorsTable panic.
func WithErrorEventInserter(f ErrorEventInserter) ErrorsOption {
	return func(t *ErrorsTable) {
		t.cfg.events = &errorEvents{insert: f, what: "WithErrorEventInserter"}
	}
}

// WithErrorEventsTable makes the events table et receive the "error
// recorded" events; et must have a metadata column (WithEventMetadataField)
// or its own inserter (WithEventsInserter), else NewErrorsTable panics.
// Default: NewEventsTable("consumer_errors_events",
// WithEventMetadataField("metadata")) in the table's dialect. See
// WithErrorEventInserter for how it combines with the other event options.
// A nil et makes NewErrorsTable panic.
func WithErrorEventsTable(et *EventsTable) ErrorsOption {
	return func(t *ErrorsTable) {
		ev := &errorEvents{what: "WithErrorEventsTable"}
		if et != nil {
			if et.cfg.metadataField == "" && et.cfg.inserter == nil {
				ev.invalid = fmt.Sprintf("events table %s has no metadata column (see WithEventMetadataField)", et.name)
			}
			ev.insert = et.InsertWithMetadata
		}
		t.cfg.events = ev
	}
}

// WithErrorRecordOnly records errors without inserting any event. See
// WithErrorEventInserter for how it combines with the other event options.
func WithErrorRecordOnly() ErrorsOption {
	return func(t *ErrorsTable) {
		t.cfg.events = &errorEvents{recordOnly: true}
	}
}

// WithErrorCounter sets a function called with the consumer name after each
// error is recorded (after commit). It must be safe for concurrent use; nil
// disables counting. Default: increment the Prometheus counter
// reflex_consumer_dead_lettered_events_count{consumer_name}.
func WithErrorCounter(f func(consumer string)) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.counter, t.cfg.counterSet = f, true }
}

// WithErrorsDialect selects the SQL dialect of the table, and of the
// default events table: MySQL (the default), PostgreSQL or SQLite.
func WithErrorsDialect(d Dialect) ErrorsOption {
	return func(t *ErrorsTable) { t.cfg.dialect = d }
}
