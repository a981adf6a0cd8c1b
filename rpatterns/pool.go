package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-e488ba2e/reflex"
)

// job is an event handed to a worker, with the context of the Consume call
// that queued it.
type job struct {
	ctx context.Context
	e   *reflex.Event
	id  int64
	seq *GapSequence
}

// pool is the one lifecycle of ConcurrentConsumer and KeyedConsumer: a
// fixed set of worker goroutines reading job queues, and the cursor loop
// of their progress, running over one lifetime at a time.
//
// start begins a lifetime (rooted in the run's context for Reset, or in
// context.Background() for a Consume before any Reset, so that Stop alone
// ends it); halt ends it, waits for the goroutines and writes the final
// cursor. A pool owns every goroutine it starts.
type pool struct {
	kind  string // "concurrent" or "keyed", for errors
	inner reflex.Consumer
	prog  *progress

	workers  int // worker goroutines
	queues   int // job queues; worker i reads queue i%queues
	queueLen int // buffer of each queue; 0: a job is in flight once a worker has it
	// dropAfterFailure makes workers drop jobs once an event failed, so
	// that no later event of a key runs before an earlier one succeeded.
	dropAfterFailure bool
	inFlight         prometheus.Gauge // events queued or in flight; nil for none

	mu   sync.Mutex      // protects the following fields
	qs   []chan job      // nil when the workers do not run
	life context.Context // the workers' lifetime
	stop context.CancelFunc
	wg   sync.WaitGroup // the workers
}

// dispatch queues e on queue qi (below the number of queues) and returns. It
// blocks while that queue is full (for an unbuffered queue: until a worker
// is idle), until ctx or the lifetime ends. It returns the first failure
// of an earlier event, or an error wrapping ErrEventIDNotInt.
func (p *pool) dispatch(ctx context.Context, e *reflex.Event, qi int) error {
	if err := p.prog.err(); err != nil {
		return err
	}
	id, err := eventIDInt(e)
	if err != nil {
		return err
	}
	qs, life := p.running()
	q := qs[qi]
	seq := p.prog.doing(id)
	p.gaugeAdd(1)
	select {
	case q <- job{ctx: ctx, e: e, id: id, seq: seq}:
		return nil
	case <-ctx.Done():
		p.gaugeAdd(-1)
		return ctx.Err()
	case <-life.Done():
		p.gaugeAdd(-1)
		return fmt.Errorf("rpatterns: %s consumer %q stopped: %w", p.kind, p.inner.Name(), context.Cause(life))
	}
}

func (p *pool) gaugeAdd(d float64) {
	if p.inFlight != nil {
		p.inFlight.Add(d)
	}
}

// running returns the queues, starting the workers (until Stop) if they do
// not run, and their lifetime.
func (p *pool) running() ([]chan job, context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.qs == nil {
		p.startLocked(context.Background())
	}
	return p.qs, p.life
}

// startLocked starts the workers and the cursor loop for a lifetime that
// ends with parent, or with halt.
func (p *pool) startLocked(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	p.qs = make([]chan job, p.queues)
	for i := range p.qs {
		p.qs[i] = make(chan job, p.queueLen)
	}
	p.life, p.stop = ctx, cancel
	for i := range p.workers {
		q := p.qs[i%len(p.qs)]
		p.wg.Go(func() { p.work(ctx, q) })
	}
	p.prog.start(ctx)
}

// work processes the jobs of q until ctx is done.
func (p *pool) work(ctx context.Context, q <-chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			p.process(j)
			p.gaugeAdd(-1)
		}
	}
}

// process runs one job (unless dropAfterFailure and an event failed) and
// reports its completion or failure.
func (p *pool) process(j job) {
	if p.dropAfterFailure && p.prog.err() != nil {
		return
	}
	if err := p.inner.Consume(j.ctx, j.e); err != nil {
		p.prog.fail(fmt.Errorf("rpatterns: consumer %q: event %s: %w", p.inner.Name(), j.e.ID, err))
		return
	}
	p.prog.done(j.seq, j.id)
}

// halt ends the lifetime: the workers stop after the event each is
// processing (queued events are dropped; they are delivered again), the
// cursor loop stops, and halt waits for them, then writes the final cursor
// and flushes the store with ctx. It is idempotent.
func (p *pool) halt(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.haltLocked(ctx)
}

func (p *pool) haltLocked(ctx context.Context) error {
	if p.stop != nil {
		p.stop()
	}
	p.wg.Wait()
	p.prog.stopLoop()
	p.qs, p.life, p.stop = nil, nil, nil
	if p.inFlight != nil {
		p.inFlight.Set(0)
	}
	return p.prog.finish(ctx)
}

// reset halts the current lifetime, clears the failure, resets the inner
// consumer and starts a lifetime that ends with ctx (or halt).
// It holds mu throughout, so that a concurrent Consume cannot start a
// lifetime of its own in between.
func (p *pool) reset(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.haltLocked(ctx); err != nil {
		return err
	}
	p.prog.reset()
	if err := resetConsumer(ctx, p.inner); err != nil {
		return err
	}
	p.startLocked(ctx)
	return nil
}

// close halts the lifetime (flushing with a context that is never
// cancelled) and stops the inner consumer.
func (p *pool) close() error {
	err := p.halt(context.Background())
	return errors.Join(err, stopConsumer(p.inner))
}
