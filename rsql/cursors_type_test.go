package rsql_test

import (
	"errors"
	"testing"

	"github.com/seed-e488ba2e/reflex/rsql"
)

func TestCursorTypeCast(t *testing.T) {
	for _, tc := range []struct {
		typ    rsql.CursorType
		cursor string
		want   any
		err    error
	}{
		{1, "42", int64(42), nil},
		{1, "9223372036854775807", int64(9223372036854775807), nil},
		{1, "abc", nil, rsql.ErrInvalidCursor},
		{1, "-1", nil, rsql.ErrInvalidCursor},
		{2, "key|01|5", "key|01|5", nil},
		{2, "", "", nil},
	} {
		got, err := tc.typ.Cast(tc.cursor)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("CursorType(%d).Cast(%q) = %v (%T), %v; want %v, %v", tc.typ, tc.cursor, got, got, err, tc.want, tc.err)
		}
	}
	for _, typ := range []rsql.CursorType{0, 3, -1} {
		if got, err := typ.Cast("1"); got != nil || err == nil {
			t.Errorf("CursorType(%d).Cast = %v, %v; want an unsupported type error", typ, got, err)
		}
	}
}
