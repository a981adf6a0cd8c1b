package rsql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

// ErrInvalidValue is wrapped by the errors that inserts and cursor writes
// return when a value cannot be stored exactly in its column: longer than
// the column holds, outside the column's integer range, or not valid UTF-8
// (or with characters outside the column's character set) for a text
// column. The error names the table, the column and the limit. Nothing is
// written: a database in a non-strict SQL mode would otherwise cut or
// clamp the value silently.
var ErrInvalidValue = errors.New("rsql: value does not fit its column")

// ErrSchema is wrapped by the errors returned when a table does not have
// the columns its options name. The error names the table and column.
var ErrSchema = errors.New("rsql: table schema does not match")

// column is what a column accepts, as read from the database's catalog.
// Limits that are zero are not checked: engines that refuse a value that
// does not fit (PostgreSQL) or store any value (SQLite) need no check.
type column struct {
	// chars is the most characters a text column holds; 0: no limit known.
	chars int
	// bytes is the most bytes a text or binary column holds; 0: no limit.
	bytes int
	// text columns need valid UTF-8; mb3 ones also refuse characters
	// outside the Basic Multilingual Plane (4 bytes in UTF-8), noNUL ones
	// (PostgreSQL's) the NUL character.
	text, mb3, noNUL bool
	// integer columns hold values in [intMin, intMax].
	integer        bool
	intMin, intMax int64
	// collation is the column's collation ("" if unknown or binary).
	collation string
	// seqCache is the number of values a session takes at once from the
	// column's sequence (PostgreSQL identity and serial columns), 0 if
	// the column has none.
	seqCache int64
	// keys are the names of the unique indexes of the column alone
	// (PostgreSQL), which name the violated key of a duplicate-key error.
	keys []string
}

// checkString returns an error wrapping ErrInvalidValue if s cannot be
// stored exactly in c; what names the table and column for the message.
func (c column) checkString(what, s string) error {
	if c.text {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%w: %s: not valid UTF-8", ErrInvalidValue, what)
		}
		if c.mb3 {
			for _, r := range s {
				if r > 0xFFFF {
					return fmt.Errorf("%w: %s: character %U is outside the column's character set (utf8mb3)", ErrInvalidValue, what, r)
				}
			}
		}
		if c.noNUL && strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: %s: the NUL character, which the column's type cannot hold", ErrInvalidValue, what)
		}
	}
	if c.bytes > 0 && len(s) > c.bytes {
		return fmt.Errorf("%w: %s: %d bytes, the column holds %d", ErrInvalidValue, what, len(s), c.bytes)
	}
	// A string of no more bytes than the limit has no more characters.
	if c.chars > 0 && len(s) > c.chars {
		if n := utf8.RuneCountInString(s); n > c.chars {
			return fmt.Errorf("%w: %s: %d characters, the column holds %d", ErrInvalidValue, what, n, c.chars)
		}
	}
	return nil
}

// checkBytes is checkString for a []byte value.
func (c column) checkBytes(what string, b []byte) error {
	if c.text {
		return c.checkString(what, string(b))
	}
	if c.bytes > 0 && len(b) > c.bytes {
		return fmt.Errorf("%w: %s: %d bytes, the column holds %d", ErrInvalidValue, what, len(b), c.bytes)
	}
	return nil
}

// checkInt returns an error wrapping ErrInvalidValue if i is outside the
// range of an integer column c.
func (c column) checkInt(what string, i int64) error {
	if c.integer && (i < c.intMin || i > c.intMax) {
		return fmt.Errorf("%w: %s: %d is outside the column's range [%d, %d]", ErrInvalidValue, what, i, c.intMin, c.intMax)
	}
	return nil
}

// columns is the catalog's description of one table, loaded once on first
// use and then shared. It is safe for concurrent use.
type columns struct {
	d     dialect
	table string // unquoted, possibly schema.table

	mu   sync.Mutex // protects cols
	cols map[string]column
}

func newColumns(d dialect, table string) *columns {
	return &columns{d: d, table: unquote(table)}
}

// get returns the table's columns by lower-case name, reading the catalog
// through dbc on the first call (and again after a failed read). A table
// that does not exist gives an error wrapping ErrSchema.
func (c *columns) get(ctx context.Context, dbc DBC) (map[string]column, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cols != nil {
		return c.cols, nil
	}
	cols, err := c.d.columns(ctx, dbc, c.table)
	if err != nil {
		return nil, fmt.Errorf("rsql: read the columns of table %s: %w", c.table, checkEngine(c.d, err))
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: table %s not found", ErrSchema, c.table)
	}
	c.cols = cols
	return cols, nil
}

// lookup returns the named columns (unquoted, any case) in order, or an
// error wrapping ErrSchema naming the first that is missing.
func (c *columns) lookup(ctx context.Context, dbc DBC, names ...string) ([]column, error) {
	cols, err := c.get(ctx, dbc)
	if err != nil {
		return nil, err
	}
	out := make([]column, len(names))
	for i, n := range names {
		col, ok := cols[strings.ToLower(unquote(n))]
		if !ok {
			return nil, fmt.Errorf("%w: table %s has no column %s", ErrSchema, c.table, unquote(n))
		}
		out[i] = col
	}
	return out, nil
}

// mysqlColumns reads the columns of table (name or schema.name) from
// information_schema. MySQL and MariaDB cut or clamp values that do not fit
// unless the session's SQL mode is strict, so every limit matters here.
func mysqlColumns(ctx context.Context, dbc DBC, table string) (map[string]column, error) {
	schema, name := "DATABASE()", table
	var args []any
	if i := strings.IndexByte(table, '.'); i >= 0 {
		schema, name = "?", table[i+1:]
		args = append(args, table[:i])
	}
	args = append(args, name)
	rows, err := dbc.QueryContext(ctx, "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, "+
		"COALESCE(CHARACTER_MAXIMUM_LENGTH, 0), COALESCE(CHARACTER_OCTET_LENGTH, 0), "+
		"COALESCE(CHARACTER_SET_NAME, ''), COALESCE(COLLATION_NAME, '') "+
		"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "+schema+" AND TABLE_NAME = ?", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := make(map[string]column)
	for rows.Next() {
		var (
			name, dataType, colType, charset, collation string
			chars, octets                               uint64
		)
		if err := rows.Scan(&name, &dataType, &colType, &chars, &octets, &charset, &collation); err != nil {
			return nil, err
		}
		c := column{chars: clampInt(chars), bytes: clampInt(octets)}
		if charset != "" {
			c.text = true
			c.mb3 = charset == "utf8mb3" || charset == "utf8"
			c.collation = collation
		} else {
			c.chars = 0 // binary: the octet length is the limit
		}
		if lo, hi, ok := mysqlIntRange(strings.ToLower(dataType), strings.Contains(strings.ToLower(colType), "unsigned")); ok {
			c.integer, c.intMin, c.intMax = true, lo, hi
		}
		cols[strings.ToLower(name)] = c
	}
	return cols, rows.Err()
}

// mysqlIntRange returns the range of a MySQL integer type, capped to int64.
func mysqlIntRange(dataType string, unsigned bool) (lo, hi int64, ok bool) {
	var bits uint
	switch dataType {
	case "tinyint":
		bits = 8
	case "smallint":
		bits = 16
	case "mediumint":
		bits = 24
	case "int", "integer":
		bits = 32
	case "bigint":
		bits = 64
	default:
		return 0, 0, false
	}
	if unsigned {
		if bits == 64 {
			return 0, math.MaxInt64, true
		}
		return 0, 1<<bits - 1, true
	}
	if bits == 64 {
		return math.MinInt64, math.MaxInt64, true
	}
	return -1 << (bits - 1), 1<<(bits-1) - 1, true
}

// sqliteColumns reads the column names of table. SQLite stores any value
// whole, so it reports no limits.
func sqliteColumns(ctx context.Context, dbc DBC, table string) (map[string]column, error) {
	q := "SELECT name FROM pragma_table_info(?)"
	args := []any{table}
	if i := strings.IndexByte(table, '.'); i >= 0 {
		q = "SELECT name FROM pragma_table_info(?, ?)"
		args = []any{table[i+1:], table[:i]}
	}
	rows, err := dbc.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := make(map[string]column)
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		cols[strings.ToLower(name)] = column{}
	}
	return cols, rows.Err()
}

// clampInt converts a catalog length to int, saturating.
func clampInt(v uint64) int {
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(v)
}
