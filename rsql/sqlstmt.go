package rsql

import (
	"strconv"
	"strings"
)

// sqlStmt builds a statement, inlining values as literals where the
// dialect prefers them (one round trip instead of prepare and execute) and
// binding the others as parameters.
type sqlStmt struct {
	d    dialect
	b    strings.Builder
	args []any
}

// sql appends SQL text.
func (s *sqlStmt) sql(text ...string) {
	for _, t := range text {
		s.b.WriteString(t)
	}
}

// val appends a value: an int64 or int as a decimal literal, a string as
// the dialect's literal or a parameter.
func (s *sqlStmt) val(v any) {
	switch v := v.(type) {
	case int64:
		s.b.WriteString(strconv.FormatInt(v, 10))
		return
	case int:
		s.b.WriteString(strconv.Itoa(v))
		return
	}
	if l, ok := s.d.literal(v); ok {
		s.b.WriteString(l)
		return
	}
	s.args = append(s.args, v)
	s.b.WriteString(s.d.placeholder(len(s.args)))
}

// String returns the statement text.
func (s *sqlStmt) String() string { return s.b.String() }
