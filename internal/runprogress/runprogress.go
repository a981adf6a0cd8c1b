// Package runprogress lets a caller of reflex.Run learn whether the run
// consumed anything: rpatterns.RunForever attaches a Progress to the
// context of each run it starts, and reflex.Run marks it after each event
// whose cursor it set. A run that made progress is retried at once instead
// of after an ever-growing backoff.
package runprogress

import (
	"context"
	"sync/atomic"
)

// Progress records whether a run consumed an event. The zero value is
// ready to use; it is safe for concurrent use.
type Progress struct {
	consumed atomic.Bool
}

type key struct{}

// With returns a copy of ctx that carries p (a nil p hides any Progress of
// ctx, for a nested run).
func With(ctx context.Context, p *Progress) context.Context {
	return context.WithValue(ctx, key{}, p)
}

// From returns the Progress ctx carries, or nil. Look it up once per run,
// not once per event.
func From(ctx context.Context) *Progress {
	p, _ := ctx.Value(key{}).(*Progress)
	return p
}

// Consumed records that the run consumed an event. It is a no-op on a nil p.
func (p *Progress) Consumed() {
	if p != nil && !p.consumed.Load() {
		p.consumed.Store(true)
	}
}

// HasConsumed reports whether Consumed was called.
func (p *Progress) HasConsumed() bool {
	return p != nil && p.consumed.Load()
}
