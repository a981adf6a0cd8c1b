package rsql

import (
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"strings"
	"time"
)

var (
	// ErrInvalidCursor is wrapped by the error CursorsTable.SetCursor
	// returns when a table of int cursors (the default) is given a cursor
	// that is not a canonical non-negative base-10 int64, such as "abc",
	// "-1", "007" or a value that overflows int64. The error names the
	// consumer and the cursor.
	ErrInvalidCursor = errors.New("invalid int cursor")

	// ErrCursorNotIncreasing is wrapped by the error CursorsTable.SetCursor
	// returns when the new cursor is not strictly greater than the stored
	// one (synchronous mode), or than the one buffered for the same
	// consumer or last read or written by the table (asynchronous mode).
	// Use errors.AsType to get the *CursorConflictError with the existing
	// value.
	ErrCursorNotIncreasing = errors.New("attempted to set cursor <= existing cursor")

	// ErrCursorsTableClosed is wrapped by the error CursorsTable.SetCursor
	// returns after CursorsTable.Close.
	ErrCursorsTableClosed = errors.New("rsql: cursors table closed")

	// ErrConcurrentWriter is wrapped by the errors of CursorsTable.Flush,
	// CursorsTable.Close and (for a conflict found by the background flush)
	// the next CursorsTable.SetCursor of the consumer, when an
	// asynchronous table finds that a consumer's stored cursor is no longer
	// the one it last read (GetCursor) or wrote: another writer changed
	// it, typically a second process running the same consumer name, or an
	// operator. The table then drops its buffered cursor for the consumer
	// and adopts the stored one; the next GetCursor returns it. A consumer
	// whose run returns this error processed events that another process
	// processed too. Each conflict also increments
	// reflex_cursors_table_concurrent_writers_total.
	ErrConcurrentWriter = errors.New("rsql: cursor changed by another writer")
)

// CursorConflictError describes a cursor write refused because the cursor
// does not move forward. It wraps ErrCursorNotIncreasing.
type CursorConflictError struct {
	// Table is the cursors table.
	Table string
	// Consumer is the consumer whose cursor was being set.
	Consumer string
	// Cursor is the refused cursor.
	Cursor string
	// Existing is the stored (or buffered) cursor, "" if it could not be
	// read.
	Existing string
	// UpdatedAt is when Existing was stored; zero when it is only buffered,
	// was known without reading the row, or could not be read.
	UpdatedAt time.Time
	// Buffered reports whether Existing is an unflushed value buffered in
	// this process (asynchronous mode) rather than the stored one.
	Buffered bool
}

// Error implements error.
func (e *CursorConflictError) Error() string {
	what := "existing cursor"
	if e.Buffered {
		what = "existing buffered cursor"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rsql: set cursor of consumer %s to %s in table %s: %s %s",
		bounded.Quote(e.Consumer), bounded.Quote(e.Cursor), e.Table, ErrCursorNotIncreasing, bounded.Quote(e.Existing))
	b.WriteString(" (" + what)
	if !e.UpdatedAt.IsZero() {
		b.WriteString(" updated at " + e.UpdatedAt.UTC().Format(time.RFC3339Nano))
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap returns ErrCursorNotIncreasing.
func (e *CursorConflictError) Unwrap() error { return ErrCursorNotIncreasing }
