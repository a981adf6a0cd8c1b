package rpatterns

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/seed-e488ba2e/reflex"
)

// MemOpt configures a store built by MemCursorStore. A nil MemOpt makes
// MemCursorStore panic.
type MemOpt func(*memCursorConfig)

// MemCursorOption is MemOpt.
//
// Deprecated: Use MemOpt, the name luno/reflex uses.
type MemCursorOption = MemOpt

type memCursorConfig struct {
	cursors map[string]string
}

// WithMemCursor seeds the cursor of consumer name. Later options for the
// same name win.
func WithMemCursor(name, cursor string) MemOpt {
	return func(c *memCursorConfig) { c.cursors[name] = cursor }
}

// WithMemCursorInt seeds the cursor of consumer name with the decimal form
// of cursor. Later options for the same name win.
func WithMemCursorInt(name string, cursor int64) MemOpt {
	return WithMemCursor(name, strconv.FormatInt(cursor, 10))
}

// MemCursors is an in-memory reflex.CursorStore; see MemCursorStore.
type MemCursors struct {
	mu      sync.Mutex // protects cursors
	cursors map[string]string
}

var _ reflex.CursorStore = (*MemCursors)(nil)

// MemCursorStore returns an in-memory cursor store, seeded by opts
// (WithMemCursor, WithMemCursorInt; by default it is empty). It is safe
// for concurrent use; cursors are lost with the process. It panics if an
// option is nil. It returns the concrete *MemCursors (luno/reflex returns
// a reflex.CursorStore, which *MemCursors is).
func MemCursorStore(opts ...MemOpt) *MemCursors {
	mustOptions("MemCursorStore", "MemOpt", opts)
	c := memCursorConfig{cursors: make(map[string]string)}
	for _, o := range opts {
		o(&c)
	}
	return &MemCursors{cursors: c.cursors}
}

// GetCursor returns the cursor of consumerName, or "" if it has none. It
// never fails.
func (s *MemCursors) GetCursor(_ context.Context, consumerName string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursors[consumerName], nil
}

// SetCursor stores cursor for consumerName, immediately visible to
// GetCursor. It never fails.
func (s *MemCursors) SetCursor(_ context.Context, consumerName, cursor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursors[consumerName] = cursor
	return nil
}

// Flush does nothing: nothing is buffered.
func (s *MemCursors) Flush(context.Context) error { return nil }

// ReadThroughCursors is a reflex.CursorStore that falls back to a second
// store; see ReadThroughCursorStore.
type ReadThroughCursors struct {
	primary, fallback reflex.CursorStore
}

var _ reflex.CursorStore = (*ReadThroughCursors)(nil)

// ReadThroughCursorStore returns a store that reads a consumer's cursor from
// primary and, if primary has none, from fallback; a cursor found in
// fallback is first copied into primary (SetCursor). SetCursor and Flush
// go to primary only. Use it to migrate cursors between stores, or to seed
// a new consumer with another consumer's position.
//
// It is safe for concurrent use if both stores are.
func ReadThroughCursorStore(primary, fallback reflex.CursorStore) *ReadThroughCursors {
	return &ReadThroughCursors{primary: primary, fallback: fallback}
}

// GetCursor returns primary's cursor of consumerName, else fallback's (after
// copying it into primary). Errors from either store are returned wrapped.
func (s *ReadThroughCursors) GetCursor(ctx context.Context, consumerName string) (string, error) {
	c, err := s.primary.GetCursor(ctx, consumerName)
	if err != nil {
		return "", fmt.Errorf("rpatterns: read-through primary: %w", err)
	}
	if c != "" {
		return c, nil
	}
	c, err = s.fallback.GetCursor(ctx, consumerName)
	if err != nil {
		return "", fmt.Errorf("rpatterns: read-through fallback: %w", err)
	}
	if c == "" {
		return "", nil
	}
	if err := s.primary.SetCursor(ctx, consumerName, c); err != nil {
		return "", fmt.Errorf("rpatterns: read-through copy to primary: %w", err)
	}
	return c, nil
}

// SetCursor sets the cursor in primary.
func (s *ReadThroughCursors) SetCursor(ctx context.Context, consumerName, cursor string) error {
	return s.primary.SetCursor(ctx, consumerName, cursor)
}

// Flush flushes primary.
func (s *ReadThroughCursors) Flush(ctx context.Context) error {
	return s.primary.Flush(ctx)
}

// noSetStore is the store of specs whose consumer sets the cursor itself:
// Run's per-event SetCursor is dropped, GetCursor and Flush pass through.
type noSetStore struct {
	reflex.CursorStore
}

func (noSetStore) SetCursor(context.Context, string, string) error { return nil }
