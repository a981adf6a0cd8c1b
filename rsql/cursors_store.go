package rsql

import (
	"context"
	"slices"

	"github.com/seed-e488ba2e/reflex"
)

// CursorStore is the [reflex.CursorStore] of a CursorsTable and a database
// handle, returned by CursorsTable.ToStore. Its GetCursor, SetCursor and
// Flush are the table's, through its handle; Close says what it owns. It
// is safe for concurrent use.
type CursorStore struct {
	t      *CursorsTable
	parent *CursorsTable // t's parent if t is owned, else nil
	dbc    DBC
}

var _ reflex.CursorStore = (*CursorStore)(nil)

// ToStore returns a cursor store reading and writing the cursors of t
// through dbc. Without opts the store writes through t, whose owner
// closes t. With opts it writes through its own clone of t with those
// options added (see Clone), which it owns: the clone's background flush
// stops when the store is closed, or when t is closed, whichever comes
// first. In luno/reflex ToStore returns a reflex.CursorStore (and takes a
// *sql.DB); the concrete type makes the owner of that goroutine visible,
// and assigns to a reflex.CursorStore as before. It panics like
// NewCursorsTable on invalid options.
func (t *CursorsTable) ToStore(dbc DBC, opts ...CursorsOption) *CursorStore {
	s := &CursorStore{t: t, dbc: dbc}
	if len(opts) > 0 {
		s.t, s.parent = t.Clone(opts...), t
		t.mu.Lock()
		closed := t.closed
		if !closed {
			t.stores = append(t.stores, s.t)
		}
		t.mu.Unlock()
		if closed {
			_ = s.t.Close() // nothing to stop or flush yet
		}
	}
	return s
}

// GetCursor returns the cursor of name: see CursorsTable.GetCursor.
func (s *CursorStore) GetCursor(ctx context.Context, name string) (string, error) {
	return s.t.GetCursor(ctx, s.dbc, name)
}

// SetCursor sets the cursor of name: see CursorsTable.SetCursor.
func (s *CursorStore) SetCursor(ctx context.Context, name, cursor string) error {
	return s.t.SetCursor(ctx, s.dbc, name, cursor)
}

// Flush writes the buffered cursors: see CursorsTable.Flush.
func (s *CursorStore) Flush(ctx context.Context) error {
	return s.t.Flush(ctx)
}

// Close closes the store's own table if ToStore was given options (see
// CursorsTable.Close: it stops the table's background flush and writes
// its buffer, within the flush timeout); without options it only flushes
// the shared table, within the flush timeout, and leaves it open. It
// returns the error of that flush. Close is idempotent and safe for
// concurrent use; after it, SetCursor of a store with its own table
// fails with ErrCursorsTableClosed.
func (s *CursorStore) Close() error {
	if s.parent == nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.t.cfg.flushTimeout)
		defer cancel()
		return s.t.Flush(ctx)
	}
	err := s.t.Close()
	p := s.parent
	p.mu.Lock()
	p.stores = slices.DeleteFunc(p.stores, func(c *CursorsTable) bool { return c == s.t })
	p.mu.Unlock()
	return err
}
