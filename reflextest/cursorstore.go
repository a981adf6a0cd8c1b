package reflextest

import (
	"context"
	"fmt"
	"sync"

	"github.com/seed-e488ba2e/reflex"
)

// Faults injects failures into a CursorStore. Each function may be nil; a
// non-nil error it returns is returned by the corresponding method, which
// then has no effect.
type Faults struct {
	Get   func(name string) error
	Set   func(name, cursor string) error
	Flush func() error
}

// CursorStoreOption configures a CursorStore.
type CursorStoreOption func(*CursorStore)

// WithBuffering makes SetCursor buffer values until Flush, as async stores
// do: GetCursor sees only flushed values.
func WithBuffering() CursorStoreOption {
	return func(s *CursorStore) { s.buffered = true }
}

// WithFaults injects failures.
func WithFaults(f Faults) CursorStoreOption {
	return func(s *CursorStore) { s.faults = f }
}

// CursorStore is an in-memory reflex.CursorStore that records every call.
// It is safe for concurrent use.
type CursorStore struct {
	buffered bool
	faults   Faults

	mu      sync.Mutex // protects the following fields
	flushed map[string]string
	pending map[string]string
	sets    map[string][]string
	flushes int
}

var _ reflex.CursorStore = (*CursorStore)(nil)

// NewCursorStore returns an empty store. It panics, with a
// "reflextest:"-prefixed message, if an option is nil.
func NewCursorStore(opts ...CursorStoreOption) *CursorStore {
	s := &CursorStore{
		flushed: make(map[string]string),
		pending: make(map[string]string),
		sets:    make(map[string][]string),
	}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("reflextest: NewCursorStore: option %d is nil", i))
		}
		o(s)
	}
	return s
}

// GetCursor returns the flushed (or, unbuffered, the last set) cursor of
// name, or "".
func (s *CursorStore) GetCursor(ctx context.Context, name string) (string, error) {
	if s.faults.Get != nil {
		if err := s.faults.Get(name); err != nil {
			return "", err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushed[name], nil
}

// SetCursor records cursor for name; with WithBuffering it is visible to
// GetCursor only after Flush.
func (s *CursorStore) SetCursor(ctx context.Context, name, cursor string) error {
	if s.faults.Set != nil {
		if err := s.faults.Set(name, cursor); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sets[name] = append(s.sets[name], cursor)
	if s.buffered {
		s.pending[name] = cursor
	} else {
		s.flushed[name] = cursor
	}
	return nil
}

// Flush makes buffered cursors visible and counts the call.
func (s *CursorStore) Flush(ctx context.Context) error {
	if s.faults.Flush != nil {
		if err := s.faults.Flush(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushes++
	for k, v := range s.pending {
		s.flushed[k] = v
	}
	clear(s.pending)
	return nil
}

// Sets returns every cursor set for name, in order.
func (s *CursorStore) Sets(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sets[name]...)
}

// Flushes returns the number of successful Flush calls.
func (s *CursorStore) Flushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushes
}

// Cursor returns the flushed cursor of name.
func (s *CursorStore) Cursor(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushed[name]
}
