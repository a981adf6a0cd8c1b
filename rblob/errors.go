package rblob

import (
	"context"
	"errors"
	"fmt"

	"github.com/seed-e488ba2e/reflex"
)

var (
	// ErrInvalidCursor is wrapped by the errors of ParseCursor and
	// Bucket.Stream for a cursor that is not of the form key|NN|offset,
	// key|offset or key|eof, and of Bucket.StreamArchived for one that is
	// not a non-negative decimal event ID. It wraps reflex.ErrInvalidCursor,
	// so errors.Is(err, reflex.ErrInvalidCursor) holds for those errors too.
	ErrInvalidCursor error = &chainedError{msg: "rblob: invalid cursor", parent: reflex.ErrInvalidCursor}

	// ErrCursorOutOfRange is wrapped in the *ObjectError returned by Recv when
	// a stream resumes from key|NN|offset and the object holds no record at
	// offset. That error also wraps reflex.ErrInvalidCursor, as does the
	// error of a cursor that names an object the bucket does not have.
	ErrCursorOutOfRange = errors.New("cursor out of range")

	// ErrCursorWasEOF is wrapped in the *ObjectError returned by Recv when a
	// stream resumes from key|NN|offset and the record at offset is the
	// object's last, whose cursor should have been key|eof: the object
	// changed since the cursor was issued. That error also wraps
	// reflex.ErrInvalidCursor.
	ErrCursorWasEOF = errors.New("cursor was eof")

	// ErrOutOfOrder is wrapped in the *ObjectError returned by Recv when an
	// object appears with a key at or before the stream's position after
	// the stream had listed past it: objects were not written in key order,
	// and the stream would otherwise miss it. An object that appears below
	// one the stream listed but has not read yet is reported too, once the
	// stream has read the listed ones and lists again (luno/reflex lists
	// before every object and reads it instead, if it appears in time).
	ErrOutOfOrder = errors.New("rblob: object written out of key order")

	// ErrInvalidKey is wrapped in the *ObjectError returned by Recv for an
	// object whose key contains "|" (or is empty), which cursors cannot
	// represent.
	ErrInvalidKey = errors.New("rblob: object key cannot be part of a cursor")

	// ErrEmptyObject is wrapped in the *ObjectError returned by Recv for an
	// object with no records, unless the bucket has WithEmptyObjects.
	ErrEmptyObject = errors.New("rblob: object has no records")

	// ErrClientClosed is returned by a stream client's Recv after Close. It
	// wraps context.Canceled, so errors.Is(err, context.Canceled) holds for
	// it, as for the other streams of this module after Close.
	ErrClientClosed error = &chainedError{msg: "rblob: stream client closed", parent: context.Canceled}

	// ErrNotArchived is wrapped by DecodeArchived when an event's MetaData is
	// not a record written by an Archiver, and by the *ObjectError that
	// Bucket.StreamArchived returns for an object that does not hold such
	// records (a key not named by an Archiver, a malformed record, event IDs
	// that are not integers, do not increase or do not match the key).
	ErrNotArchived = errors.New("rblob: not an archived event")

	// ErrArchiverClosed is returned by Archiver.Consume and Archiver.Flush
	// after Archiver.Close.
	ErrArchiverClosed = errors.New("rblob: archiver closed")

	// ErrArchiverNoStore is returned by Archiver.Consume when the archiver
	// has no cursor store: build its spec with Archiver.Spec, or wrap the
	// store with Archiver.CursorStore, so that the cursor advances only
	// once events are written.
	ErrArchiverNoStore = errors.New("rblob: archiver has no cursor store (use Archiver.Spec or Archiver.CursorStore)")

	// ErrArchiveEventID is wrapped by Archiver.Consume for an event whose ID
	// is not a non-negative integer or is not greater than the previous
	// event's.
	ErrArchiveEventID = errors.New("rblob: archiver needs increasing non-negative integer event ids")
)

// ObjectError reports a problem with one object of a bucket: it could not
// be opened or read, a record is malformed, or the object breaks the
// bucket's ordering rules. Check the cause with errors.Is (for example
// ErrOutOfOrder) or errors.AsType[*ObjectError].
type ObjectError struct {
	// Key is the object's key, relative to the bucket (and its prefix).
	Key string
	// Offset is the 0-based index of the record concerned, as in cursors,
	// or -1 when the problem is with the object as a whole.
	Offset int
	// Err is the cause.
	Err error
}

// Error formats the error with the object key and, if known, the record.
func (e *ObjectError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("rblob: object %q: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("rblob: object %q record %d: %v", e.Key, e.Offset, e.Err)
}

// Unwrap returns the cause.
func (e *ObjectError) Unwrap() error { return e.Err }

// chainedError is a sentinel with its own message that also matches a more
// general sentinel with errors.Is.
type chainedError struct {
	msg    string
	parent error
}

func (e *chainedError) Error() string { return e.msg }
func (e *chainedError) Unwrap() error { return e.parent }
