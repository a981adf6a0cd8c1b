package rsql

import (
	"context"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Consumer names are the keys of cursors and consumer-errors tables. The
// rule for names, checked when a name is first used with a table:
//
//   - a name is a non-empty, valid UTF-8 string that fits the key column
//     (255 bytes with the shipped DDL); nothing is ever stored cut;
//   - names compare byte by byte: "Orders", "orders", "é", "e" and "e "
//     are five consumers. A table whose key column would fold names
//     (a case- or accent-insensitive collation) is refused with ErrSchema;
//     with a binary collation that ignores trailing spaces (MySQL's
//     utf8mb4_bin), names ending in a space are refused with
//     ErrInvalidValue.

// checkNameStatic checks what holds for every name whatever the table:
// non-empty and valid UTF-8. what names the table and column.
func checkNameStatic(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s: empty name", ErrInvalidValue, what)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: %s: name %s is not valid UTF-8", ErrInvalidValue, what, bounded.Quote(name))
	}
	return nil
}

// nameKey is what the key column of names accepts, read from the catalog.
type nameKey struct {
	what string // table.column, for messages
	col  column
	// padCollation is the name of a collation that ignores trailing
	// spaces, or "".
	padCollation string
}

// loadNameKey reads how the key column colName (unquoted) of table
// (unquoted) compares names and returns its rules, or an error wrapping
// ErrSchema if the column would fold names.
func loadNameKey(ctx context.Context, d dialect, dbc DBC, table, colName string, c column) (nameKey, error) {
	k := nameKey{what: table + "." + colName, col: c}
	folds, pads, err := d.keyCollation(ctx, dbc, table, colName, c)
	if err != nil {
		return nameKey{}, fmt.Errorf("rsql: read the collation of %s: %w", k.what, err)
	}
	if folds != "" {
		return nameKey{}, fmt.Errorf("%w: column %s %s, so names that differ only in case or accents would share one row; "+
			"make it compare bytes (%s)", ErrSchema, k.what, folds, d.binaryKeyHint())
	}
	if pads {
		k.padCollation = c.collation
	}
	return k, nil
}

// check returns an error wrapping ErrInvalidValue if name breaks the rule
// for names in this column.
func (k *nameKey) check(name string) error {
	if err := checkNameStatic(k.what, name); err != nil {
		return err
	}
	if err := k.col.checkString(k.what, name); err != nil {
		return err
	}
	if k.padCollation != "" && name[len(name)-1] == ' ' {
		return fmt.Errorf("%w: %s: name %s ends with a space, which collation %s ignores (it would share a row with the name without it)",
			ErrInvalidValue, k.what, bounded.Quote(name), k.padCollation)
	}
	return nil
}

// lazy holds a value loaded from the database on first use: a failed
// load is retried by the next use. It is safe for concurrent use.
type lazy[T any] struct {
	mu sync.Mutex // serialises loads
	p  atomic.Pointer[T]
}

// get returns the value, calling load if it is not loaded yet.
func (l *lazy[T]) get(load func() (*T, error)) (*T, error) {
	if v := l.p.Load(); v != nil {
		return v, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v := l.p.Load(); v != nil {
		return v, nil
	}
	v, err := load()
	if err != nil {
		return nil, err
	}
	l.p.Store(v)
	return v, nil
}
