package rsql

import (
	"strconv"
	"strings"
)

// sqlStmt builds a statement, inlining values as literals where the
// dialect prefers them (one round trip instead of prepare and execute) and
// binding the others as parameters. It is the one way this package writes
// SQL: every statement is built with it, once per shape.
type sqlStmt struct {
	d    dialect
	b    strings.Builder
	args []any
	// params counts the markers of arg, whose values are given when the
	// statement is executed (prepared statements).
	params int
}

// sql appends SQL text.
func (s *sqlStmt) sql(text ...string) {
	for _, t := range text {
		s.b.WriteString(t)
	}
}

// val appends a value: an int64 or int as a decimal literal, a string or
// []byte as the dialect's literal or a parameter (a nil []byte is NULL).
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
	s.b.WriteString(s.d.placeholder(len(s.args) + s.params))
}

// arg appends the marker of a parameter whose value is given when the
// statement is executed: for statements prepared once and run many times.
// A statement uses arg or parameters of val, not both.
func (s *sqlStmt) arg() {
	s.params++
	s.b.WriteString(s.d.placeholder(len(s.args) + s.params))
}

// grow makes room for n more bytes of text.
func (s *sqlStmt) grow(n int) { s.b.Grow(n) }

// size returns the length of the statement text so far.
func (s *sqlStmt) size() int { return s.b.Len() }

// String returns the statement text.
func (s *sqlStmt) String() string { return s.b.String() }
