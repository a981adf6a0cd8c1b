package reflex

import (
	"context"
	"strconv"
	"time"
)

// ErrorInsertFunc records that consumer consumerName failed to process
// event eventID with message errMsg, for dead-lettering (see
// rpatterns.NewDeadLetterConsumer and rsql.ErrorsTable).
type ErrorInsertFunc func(ctx context.Context, consumerName string, eventID string, errMsg string) error

// ErrorStatus is the status of a recorded consumer error. It is also the
// event type of the events that record consumer errors.
type ErrorStatus int

const (
	// UnknownEventError is the zero status.
	UnknownEventError ErrorStatus = 0
	// EventErrorRecorded is the status of a newly recorded error.
	EventErrorRecorded ErrorStatus = 1
)

// ReflexType implements EventType.
func (s ErrorStatus) ReflexType() int { return int(s) }

// ShiftStatus returns the status as an int.
func (s ErrorStatus) ShiftStatus() int { return int(s) }

// ConsumerError is a recorded failure of a consumer to process an event.
type ConsumerError struct {
	ID           string
	ConsumerName string
	EventID      string
	Message      string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	Status       ErrorStatus
}

// IDInt returns the record ID as an int64, or 0 if it is not an integer.
func (e *ConsumerError) IDInt() int64 {
	return parseInt(e.ID)
}

// IsIDInt reports whether the record ID is an int64.
func (e *ConsumerError) IsIDInt() bool {
	_, err := strconv.ParseInt(e.ID, 10, 64)
	return err == nil
}

// EventIDInt returns the event ID as an int64, or 0 if it is not an integer.
func (e *ConsumerError) EventIDInt() int64 {
	return parseInt(e.EventID)
}

// IsEventIDInt reports whether the event ID is an int64.
func (e *ConsumerError) IsEventIDInt() bool {
	_, err := strconv.ParseInt(e.EventID, 10, 64)
	return err == nil
}
