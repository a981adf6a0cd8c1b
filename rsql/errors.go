package rsql

import "errors"

var (
	// ErrConsecEvent is returned (wrapped) when events that must have
	// consecutive IDs do not: by the read-through cache for a loaded batch
	// with a hole, and by StreamClient.Recv ("pop error") when an event's ID
	// is not greater than the stream's cursor. It indicates a broken
	// loader, never a normal gap (gaps are waited out, see FillGaps).
	ErrConsecEvent = errors.New("non-consecutive event ids")

	// ErrInvalidIntID is returned (wrapped, naming the value) for a cursor
	// or event ID that is not a non-negative base-10 int64: by the
	// StreamFunc of ToStream, by the first Recv of a client made by Stream,
	// and by loads whose loader returned such an event ID.
	ErrInvalidIntID = errors.New("invalid id, only int supported")

	// ErrInvalidNoop is returned by the Insert methods for an event with
	// foreign ID "0" and type 0, the combination reserved for the noop
	// events with which FillGaps fills gaps. The returned NotifyFunc is nil.
	ErrInvalidNoop = errors.New("inserting invalid noop event")

	// ErrMetadataNotEnabled is returned by the Insert methods for non-nil
	// metadata on a table without a metadata column (see
	// WithEventMetadataField).
	ErrMetadataNotEnabled = errors.New("metadata not enabled")

	// ErrGapListenerStopped is returned by ListenGaps and FillGaps after
	// StopGapListener or StopFillingGaps stopped the table's gap listeners.
	ErrGapListenerStopped = errors.New("rsql: gap listener stopped")
)
