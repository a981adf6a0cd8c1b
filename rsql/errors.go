package rsql

import (
	"errors"
)

var (
	// ErrConsecEvent is returned (wrapped) by the Recv of a stream whose
	// WithEventsLoader loader returned an event whose ID is not greater
	// than the one before it (or than the stream's cursor). It indicates a
	// broken loader: the SQL loader reads in ID order, and a missing ID is
	// a gap, which streams wait out (see FillGaps), never an error.
	ErrConsecEvent = errors.New("non-consecutive event ids")

	// ErrInvalidIntID is returned (wrapped, quoting at most 64 bytes of the
	// value) for a cursor or event ID that is not a non-negative base-10
	// int64: by the StreamFunc of ToStream and by the Recv of a client made
	// by Stream (both also wrapping reflex.ErrInvalidCursor), and by loads
	// whose loader returned such an event ID.
	ErrInvalidIntID = errors.New("invalid id, only int supported")

	// ErrInvalidNoop is returned by the Insert methods for an event with
	// foreign ID "0" and type 0, the combination reserved for the noop
	// events with which FillGaps fills gaps. The returned NotifyFunc is nil.
	ErrInvalidNoop = errors.New("inserting invalid noop event")

	// ErrMetadataNotEnabled is returned by the Insert methods for non-nil
	// metadata on a table without a metadata column (see
	// WithEventMetadataField).
	ErrMetadataNotEnabled = errors.New("metadata not enabled")

	// ErrGapListenerStopped is returned by ListenGaps, FillGaps and
	// FillGapsLeased after StopGapListener, StopFillingGaps or the
	// table's Close stopped the table's gap listeners.
	ErrGapListenerStopped = errors.New("rsql: gap listener stopped")
)
