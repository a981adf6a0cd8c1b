package rsql

import "fmt"

// CursorType is the type of the cursors a table holds, kept for code
// written against luno/reflex, where it is exported with its Cast method
// but no exported values: CursorType(1) is int cursors (the default of
// NewCursorsTable), CursorType(2) string cursors (WithCursorStrings).
type CursorType int

const (
	cursorTypeInt    CursorType = 1
	cursorTypeString CursorType = 2
)

// Cast returns cursor as the Go value the table stores: an int64 for int
// cursors, the string itself for string cursors. An int cursor must be a
// canonical non-negative base-10 int64, as SetCursor requires (else the
// error wraps ErrInvalidCursor); any other CursorType gives an error.
func (t CursorType) Cast(cursor string) (any, error) {
	switch t {
	case cursorTypeString:
		return cursor, nil
	case cursorTypeInt:
		n, err := parseCursor(cursor)
		if err != nil {
			return nil, err
		}
		return n, nil
	}
	return nil, fmt.Errorf("rsql: unsupported cursor type %d", int(t))
}
