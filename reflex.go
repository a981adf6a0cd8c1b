// Package reflex streams event notifications between services.
//
// A service inserts an event row into a per-table events log in the same SQL
// transaction as the data change, so there is exactly one event per state
// change. Events are pointers (id, type, foreign id, timestamp, metadata,
// trace), not data. Consumers read them from a cursor, locally from the
// database (package rsql) or from a peer service over gRPC (Server and
// GRPCStreamFunc or WrapStreamPB).
//
// [Run] feeds each event of a [Spec]'s stream to its [Consumer] and advances
// the [CursorStore] only when the consumer succeeds. On any error it stops
// and returns the error; the caller runs it again (at-least-once delivery, so
// consumers must be idempotent).
//
// # gRPC
//
// A [Server] serves StreamFuncs over the reflexpb.Reflex service (see
// [Server.ReflexServer]) or any service reusing reflexpb.Event. It bounds
// the memory of each stream (see [WithStreamBuffer]) and the number of
// concurrent streams (see [WithMaxStreams]), refuses malformed requests
// (see [MaxCursorBytes]), and answers the sentinel errors with status codes
// that its clients turn back into the sentinels: [ErrInvalidCursor] is
// InvalidArgument (permanent), [ErrTooManyStreams] ResourceExhausted,
// [ErrStopped] Unavailable and [ErrHeadReached] OutOfRange. It records its
// peers ([Server.Peers], [WithPeerHook], [WithPeerIdentity]) and filters by
// the event types a client asks for ([WithGRPCEventTypes]); clients of
// [GRPCStreamFunc] can reconnect through a circuit breaker
// ([WithGRPCReconnect]), starting no goroutine.
//
// Stream clients of this module follow one rule: after Close, Recv
// returns an error for which errors.Is(err, context.Canceled) is true.
//
// # Goroutines
//
// The package starts goroutines only in a Server, which owns them all:
//   - one per stream call (Stream or StreamBatch), which reads the stream
//     function's client and sends its events; it ends when the call ends
//     or the Server stops, and Server.Stop waits for it;
//   - for a StreamBatch call whose stream client does not implement
//     Buffered, one read-ahead goroutine, owned by that call's goroutine,
//     which stops it and waits for it before it ends.
//
// Run, consumers and the gRPC clients start none: they run on the
// caller's goroutine (gRPC's own goroutines belong to its connection).
package reflex

import (
	"context"
	"strconv"
	"time"
)

// Event is an immutable notification that a change of some type happened to
// a foreign entity at a specific time. Events are pointers to state changes,
// not data: consumers look the entity up by ForeignID.
type Event struct {
	// ID uniquely identifies the event within its stream and is the cursor
	// used to resume after it.
	ID string
	// Type is the kind of state change.
	Type EventType
	// ForeignID identifies the entity that changed.
	ForeignID string
	// Timestamp is when the event was recorded.
	Timestamp time.Time
	// MetaData is optional, opaque data attached to the event.
	MetaData []byte
	// Trace is an encoded OpenTelemetry span context, or nil.
	Trace []byte
}

// IDInt returns the event ID as an int64, or 0 if it is not a base-10 integer.
func (e *Event) IDInt() int64 {
	return parseInt(e.ID)
}

// IsIDInt reports whether the event ID is a base-10 int64.
func (e *Event) IsIDInt() bool {
	_, err := strconv.ParseInt(e.ID, 10, 64)
	return err == nil
}

// ForeignIDInt returns the foreign ID as an int64, or 0 if it is not a
// base-10 integer.
func (e *Event) ForeignIDInt() int64 {
	return parseInt(e.ForeignID)
}

// IsForeignIDInt reports whether the foreign ID is a base-10 int64.
func (e *Event) IsForeignIDInt() bool {
	_, err := strconv.ParseInt(e.ForeignID, 10, 64)
	return err == nil
}

// EventType is implemented by the enums that act as event types.
//
// Events that crossed a wire carry an internal int-backed type, so compare
// types with [IsType] or ReflexType, never with ==.
type EventType interface {
	// ReflexType returns the type as an int.
	ReflexType() int
}

// IsType reports whether source and target have the same ReflexType value,
// whatever their Go types. A nil type never matches.
func IsType(source, target EventType) bool {
	if source == nil || target == nil {
		return false
	}
	return source.ReflexType() == target.ReflexType()
}

// IsAnyType reports whether source matches any of targets. It is false for an
// empty target list.
func IsAnyType(source EventType, targets ...EventType) bool {
	for _, t := range targets {
		if IsType(source, t) {
			return true
		}
	}
	return false
}

// EventFilter reports whether an event should be processed. It should be
// cheap and in-memory: it runs for every event a consumer sees.
type EventFilter func(event *Event) (bool, error)

// StreamClient yields the events of a stream in order.
//
// A StreamClient is used by one goroutine at a time. It may also implement
// io.Closer; [Run] and [Server] close it when they are done with it. Other
// optional interfaces: [Buffered] and [HeadReporter].
type StreamClient interface {
	// Recv blocks until the next event is available or an error occurs;
	// exactly one of the results is non-nil. It returns promptly once the
	// stream's context is done.
	Recv() (*Event, error)
}

// StreamFunc opens a stream of the events after the cursor after (exclusive;
// "" means from the beginning). The returned client lives until ctx is done.
type StreamFunc func(ctx context.Context, after string, opts ...StreamOption) (StreamClient, error)

// CursorStore persists the position of each named consumer in a stream.
type CursorStore interface {
	// GetCursor returns the consumer's cursor, or "" if it has none.
	GetCursor(ctx context.Context, consumerName string) (string, error)

	// SetCursor stores the consumer's cursor. Implementations may buffer
	// writes until Flush.
	SetCursor(ctx context.Context, consumerName string, cursor string) error

	// Flush writes any buffered cursors to the underlying store.
	Flush(ctx context.Context) error
}

// parseInt returns s as a base-10 int64, or 0 when it is not one (including
// on overflow, where strconv would clamp).
func parseInt(s string) int64 {
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return i
}
