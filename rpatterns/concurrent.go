package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/seed-e488ba2e/reflex"
)

// ConcurrentConsumer processes up to a fixed number of events at once, on
// as many worker goroutines, in any order, and keeps the cursor at the
// highest event up to which every event completed (see GapSequence). Run it
// with NewConcurrentSpec. Events of the same foreign ID may complete out of
// order; use KeyedConsumer to keep their order.
//
// The workers and the cursor loop start in Reset (Run calls it) and end
// with that run's context or Stop; Stop waits for the events in flight and
// writes the final cursor. Cursor writes happen in a goroutine of their
// own, so a slow store does not slow the workers.
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
	inner   reflex.Consumer
	prog    *progress
	workers int

	mu   sync.Mutex      // protects the following fields
	jobs chan job        // unbuffered; nil when the workers do not run
	life context.Context // the workers' lifetime
	stop context.CancelFunc
	wg   sync.WaitGroup // the workers
}

var (
	_ reflex.Consumer    = (*ConcurrentConsumer)(nil)
	_ reflex.ResetterCtx = (*ConcurrentConsumer)(nil)
	_ reflex.Stopper     = (*ConcurrentConsumer)(nil)
)

// NewConcurrentConsumer returns a consumer that runs inner on up to
// maxInFlight events concurrently, keeping inner's cursor (under inner's
// name) in store. It panics if maxInFlight < 1, a programming error.
func NewConcurrentConsumer(store reflex.CursorStore, inner reflex.Consumer, maxInFlight int) *ConcurrentConsumer {
	if maxInFlight < 1 {
		panic(fmt.Sprintf("rpatterns: NewConcurrentConsumer: maxInFlight is %d, must be at least 1", maxInFlight))
	}
	return &ConcurrentConsumer{
		inner:   inner,
		prog:    newProgress(inner.Name(), store),
		workers: maxInFlight,
	}
}

// NewConcurrentSpec returns a spec that runs cc over stream. Run's
// per-event SetCursor is dropped: cc sets the cursor as events complete.
// Run resets cc at the start of each run; Spec.Stop stops it.
func NewConcurrentSpec(stream reflex.StreamFunc, cc *ConcurrentConsumer, opts ...reflex.StreamOption) reflex.Spec {
	return reflex.NewSpec(stream, noSetStore{cc.prog.store}, cc, opts...)
}

// Name returns the inner consumer's name.
func (cc *ConcurrentConsumer) Name() string { return cc.inner.Name() }

// Consume hands e to an idle worker and returns; it blocks while
// maxInFlight events are in flight, until one completes or ctx is done
// (returning ctx.Err()). The event is processed with ctx, so it must stay
// valid until the event completes (Run's does).
//
// Consume returns the first failure of an earlier event (wrapped, naming
// it), an error wrapping ErrEventIDNotInt, or an error from the cursor
// store, until Reset. Consume before any Reset starts the workers and the
// cursor loop, which then run until Stop.
func (cc *ConcurrentConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	if err := cc.prog.err(); err != nil {
		return err
	}
	id, err := eventIDInt(e)
	if err != nil {
		return err
	}
	jobs, life := cc.running()
	seq := cc.prog.doing(id)
	select {
	case jobs <- job{ctx: ctx, e: e, id: id, seq: seq}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-life.Done():
		return fmt.Errorf("rpatterns: concurrent consumer %q stopped: %w", cc.Name(), context.Cause(life))
	}
}

// running returns the job channel, starting the workers (until Stop) if
// they do not run, and their lifetime context.
func (cc *ConcurrentConsumer) running() (chan<- job, context.Context) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.jobs == nil {
		cc.startLocked(context.Background())
	}
	return cc.jobs, cc.life
}

func (cc *ConcurrentConsumer) startLocked(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	jobs := make(chan job) // unbuffered: a job is in flight once a worker has it
	cc.jobs, cc.life, cc.stop = jobs, ctx, cancel
	for range cc.workers {
		cc.wg.Go(func() { cc.work(ctx, jobs) })
	}
	cc.prog.start(ctx)
}

// work processes jobs until ctx is done.
func (cc *ConcurrentConsumer) work(ctx context.Context, jobs <-chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-jobs:
			if err := cc.inner.Consume(j.ctx, j.e); err != nil {
				cc.prog.fail(fmt.Errorf("rpatterns: consumer %q: event %s: %w", cc.Name(), j.e.ID, err))
				continue
			}
			cc.prog.done(j.seq, j.id)
		}
	}
}

// Reset waits for the events in flight and stops the workers, sets the
// cursor to the highest event up to which all completed and flushes the
// store, then clears the failure, resets the inner consumer and starts new
// workers and the cursor loop, which run until ctx is done or Stop. Run
// calls it at the start of every run. It returns the store's or the inner
// Reset's error.
func (cc *ConcurrentConsumer) Reset(ctx context.Context) error {
	if err := cc.halt(ctx); err != nil {
		return err
	}
	cc.prog.reset()
	if err := resetConsumer(ctx, cc.inner); err != nil {
		return err
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.startLocked(ctx)
	return nil
}

// Stop waits for the events in flight, stops the workers and the cursor
// loop, sets the final cursor and flushes the store (with a context that is
// never cancelled), then stops the inner consumer. It returns the store's
// or the inner Stop's error. It is idempotent and safe for concurrent use.
func (cc *ConcurrentConsumer) Stop() error {
	err := cc.halt(context.Background())
	return errors.Join(err, stopConsumer(cc.inner))
}

// halt stops the workers after their current events and the cursor loop,
// waits for them and writes the final cursor.
func (cc *ConcurrentConsumer) halt(ctx context.Context) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.stop != nil {
		cc.stop()
	}
	cc.wg.Wait()
	cc.prog.stopLoop()
	cc.jobs, cc.life, cc.stop = nil, nil, nil
	return cc.prog.finish(ctx)
}
