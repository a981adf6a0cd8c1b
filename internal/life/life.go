// Package life is the lifetime of one stream client, shared by every
// stream client of this module so that all obey one rule: after Close,
// Recv returns at once an error for which errors.Is(err,
// context.Canceled) is true; Close is idempotent, safe for concurrent use,
// and returns nil.
package life

import (
	"context"
	"sync/atomic"
)

// Life is the lifetime of one stream client: a context derived from the
// caller's, ended by Close or by the caller. It is safe for concurrent
// use.
type Life struct {
	ctx    context.Context
	cancel context.CancelFunc
	closed atomic.Bool
}

// New returns a Life whose context is a child of parent.
func New(parent context.Context) *Life {
	ctx, cancel := context.WithCancel(parent)
	return &Life{ctx: ctx, cancel: cancel}
}

// Context returns the client's context: pass it to everything Recv waits
// on.
func (l *Life) Context() context.Context { return l.ctx }

// Err returns nil while the client lives, context.Canceled once Close has
// been called (even if the caller's context ended first), and otherwise
// the error of the caller's context once it is done. Recv returns it
// first, and again when a wait ends early.
func (l *Life) Err() error {
	if l.closed.Load() {
		return context.Canceled
	}
	return l.ctx.Err()
}

// Close ends the client's context. It is idempotent, safe for concurrent
// use, and returns nil.
func (l *Life) Close() error {
	l.closed.Store(true)
	l.cancel()
	return nil
}
