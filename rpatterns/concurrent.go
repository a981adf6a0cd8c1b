package rpatterns

import (
	"context"
	"fmt"

	"github.com/seed-e488ba2e/reflex"
)

// ConcurrentConsumer processes up to a fixed number of events at once, on
// as many worker goroutines, in any order, and keeps the cursor at the
// highest event up to which every event completed (see GapSequence). Run it
// with NewConcurrentSpec. Events of the same foreign ID may complete out of
// order; use KeyedConsumer to keep their order.
//
// The ConcurrentConsumer owns its goroutines: the workers and the cursor
// loop (which writes cursors in a goroutine of its own, so that a slow
// store does not slow the workers). They start in Reset or ResetContext
// (or, if neither was called, in the first Consume) and end with the next
// Reset or ResetContext, with Stop, or with the context given to
// ResetContext (NewConcurrentSpec passes the run's context). Stop waits for
// them and for the events in flight, and writes the final cursor.
//
// Event IDs must be integers that increase along the stream (gaps are
// fine). A failed event stops the cursor below it; a later Consume returns
// the failure (naming the event), which ends the Run, and the next run
// delivers the failed event again, together with the events after it that
// had completed (delivery is at least once).
//
// The cursor never moves back: Run reads it before Reset writes the final
// cursor of the previous run, so a run may start below it and deliver some
// completed events again, but no cursor at or below one already written
// is set again (stores such as rsql's reject them).
type ConcurrentConsumer struct {
	p pool
}

var (
	_ reflex.Consumer = (*ConcurrentConsumer)(nil)
	_ reflex.Stopper  = (*ConcurrentConsumer)(nil)
	_ interface {
		Reset() error
	} = (*ConcurrentConsumer)(nil)
)

// NewConcurrentConsumer returns a consumer that runs inner on up to
// maxInFlight events concurrently, keeping inner's cursor (under inner's
// name) in store. It panics if maxInFlight < 1, a programming error.
func NewConcurrentConsumer(store reflex.CursorStore, inner reflex.Consumer, maxInFlight int) *ConcurrentConsumer {
	if maxInFlight < 1 {
		panic(fmt.Sprintf("rpatterns: NewConcurrentConsumer: maxInFlight is %d, must be at least 1", maxInFlight))
	}
	return &ConcurrentConsumer{p: pool{
		kind:    "concurrent",
		inner:   inner,
		prog:    newProgress(inner.Name(), store),
		workers: maxInFlight,
		queues:  1,
		// unbuffered: a job is in flight once a worker has it
	}}
}

// NewConcurrentSpec returns a spec that runs cc over stream. Run's
// per-event SetCursor is dropped: cc sets the cursor as events complete.
// Run resets cc with its context at the start of each run (ResetContext),
// so cc's goroutines end with the run; Spec.Stop stops cc. It panics if a
// stream option is nil.
func NewConcurrentSpec(stream reflex.StreamFunc, cc *ConcurrentConsumer, opts ...reflex.StreamOption) reflex.Spec {
	return newSpec("NewConcurrentSpec", stream, noSetStore{cc.p.prog.store}, runCtxConsumer{cc}, opts)
}

// runCtxConsumer makes Run reset a ConcurrentConsumer with the run's
// context.
type runCtxConsumer struct {
	*ConcurrentConsumer
}

func (c runCtxConsumer) Reset(ctx context.Context) error { return c.ResetContext(ctx) }

// Name returns the inner consumer's name.
func (cc *ConcurrentConsumer) Name() string { return cc.p.inner.Name() }

// Consume hands e to an idle worker and returns; it blocks while
// maxInFlight events are in flight, until one completes or ctx is done
// (returning ctx.Err()). The event is processed with ctx, so it must stay
// valid until the event completes (Run's does).
//
// Consume returns the first failure of an earlier event (wrapped, naming
// it), an error wrapping ErrEventIDNotInt, or an error from the cursor
// store, until the next Reset. Consume before any Reset starts the
// workers and the cursor loop, which then run until Stop.
func (cc *ConcurrentConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	return cc.p.dispatch(ctx, e, 0)
}

// Reset is ResetContext(context.Background()): the new workers run until
// the next Reset or Stop. reflex.Run calls it when cc is the consumer of a
// spec built with reflex.NewSpec; NewConcurrentSpec uses ResetContext.
func (cc *ConcurrentConsumer) Reset() error {
	return cc.ResetContext(context.Background())
}

// ResetContext waits for the events in flight and stops the workers, sets
// the cursor to the highest event up to which all completed and flushes
// the store (with ctx), then clears the failure, resets the inner consumer
// and starts new workers and the cursor loop, which run until ctx is done,
// the next Reset or Stop. It returns the store's or the inner Reset's
// error.
func (cc *ConcurrentConsumer) ResetContext(ctx context.Context) error {
	return cc.p.reset(ctx)
}

// Stop waits for the events in flight, stops the workers and the cursor
// loop and waits for them, sets the final cursor and flushes the store
// (with a context that is never cancelled), then stops the inner consumer.
// It returns the store's or the inner Stop's error. It is idempotent, safe
// for concurrent use, and safe before any Reset.
func (cc *ConcurrentConsumer) Stop() error {
	return cc.p.close()
}
