package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// defaultKeyedQueueLen is the default number of events waiting per worker
// of a KeyedConsumer: enough that a briefly slow key does not stall the
// stream, small enough to bound memory and redelivery after a failure.
const defaultKeyedQueueLen = 64

// KeyedOption configures a KeyedConsumer.
type KeyedOption func(*keyedConfig)

type keyedConfig struct {
	queueLen int
	key      func(*reflex.Event) string
}

// WithKeyedQueueLen sets how many events may wait for each worker
// (default 64). Consume blocks while the event's worker has that many
// waiting. NewKeyedConsumer panics if n < 1.
func WithKeyedQueueLen(n int) KeyedOption {
	return func(c *keyedConfig) { c.queueLen = n }
}

// WithKeyFunc sets the key whose events are kept in order; the default is
// the event's foreign ID. A nil fn is ignored.
func WithKeyFunc(fn func(e *reflex.Event) string) KeyedOption {
	return func(c *keyedConfig) {
		if fn != nil {
			c.key = fn
		}
	}
}

// KeyedConsumer processes events on a fixed number of workers, keeping the
// order of the events of each foreign ID (or key, see WithKeyFunc): an
// event's worker is chosen by the 32-bit FNV-1 hash of its key, and each
// worker processes its events one at a time in stream order. Events of
// different keys are processed concurrently. Run it with NewKeyedSpec.
//
// The cursor is kept at the highest event up to which every event completed
// (see GapSequence), so a restart never skips an event; event IDs must be
// integers that increase along the stream. When an event fails, the
// workers stop processing (queued events are dropped, so no later event of
// its key runs before it), the cursor stays below it, and a later Consume
// returns the failure (naming the event), which ends the Run; the next run
// delivers the failed event and everything after it again, in order
// (delivery is at least once).
//
// The cursor never moves back: Run reads it before Reset writes the final
// cursor of the previous run, so a run may start below it and deliver some
// completed events again, but no cursor at or below one already written
// is set again (stores such as rsql's reject them).
type KeyedConsumer struct {
	inner    reflex.Consumer
	prog     *progress
	workers  int
	queueLen int
	key      func(*reflex.Event) string
	inFlight prometheus.Gauge

	mu     sync.Mutex      // protects the following fields
	queues []chan job      // nil when the workers do not run
	ctx    context.Context // the workers' lifetime, done when they must exit
	stop   context.CancelFunc
	wg     sync.WaitGroup // the workers
}

// job is an event handed to a worker, with the context of the
// Consume call that queued it.
type job struct {
	ctx context.Context
	e   *reflex.Event
	id  int64
	seq *GapSequence
}

var (
	_ reflex.Consumer    = (*KeyedConsumer)(nil)
	_ reflex.ResetterCtx = (*KeyedConsumer)(nil)
	_ reflex.Stopper     = (*KeyedConsumer)(nil)
)

// NewKeyedConsumer returns a consumer that runs inner on workers workers,
// in order per foreign ID, keeping inner's cursor (under inner's name) in
// store. It panics if workers < 1 or WithKeyedQueueLen is below 1, both
// programming errors.
func NewKeyedConsumer(store reflex.CursorStore, inner reflex.Consumer, workers int, opts ...KeyedOption) *KeyedConsumer {
	cfg := keyedConfig{
		queueLen: defaultKeyedQueueLen,
		key:      func(e *reflex.Event) string { return e.ForeignID },
	}
	for _, o := range opts {
		o(&cfg)
	}
	if workers < 1 {
		panic(fmt.Sprintf("rpatterns: NewKeyedConsumer: workers is %d, must be at least 1", workers))
	}
	if cfg.queueLen < 1 {
		panic(fmt.Sprintf("rpatterns: NewKeyedConsumer: queue length is %d, must be at least 1", cfg.queueLen))
	}
	return &KeyedConsumer{
		inner:    inner,
		prog:     newProgress(inner.Name(), store),
		workers:  workers,
		queueLen: cfg.queueLen,
		key:      cfg.key,
		inFlight: metrics.KeyedInFlight(inner.Name()),
	}
}

// NewKeyedSpec returns a spec that runs kc over stream. Run's per-event
// SetCursor is dropped: kc sets the cursor as events complete. Run resets
// kc at the start of each run; Spec.Stop stops it.
func NewKeyedSpec(stream reflex.StreamFunc, kc *KeyedConsumer, opts ...reflex.StreamOption) reflex.Spec {
	return reflex.NewSpec(stream, noSetStore{kc.prog.store}, kc, opts...)
}

// Name returns the inner consumer's name.
func (kc *KeyedConsumer) Name() string { return kc.inner.Name() }

// Consume queues e for the worker of its key and returns. It blocks while
// that worker's queue is full, until there is room or ctx is done
// (returning ctx.Err()). The event is processed with ctx, so it must stay
// valid until the event completes (Run's does).
//
// Consume returns the first failure of an earlier event (wrapped, naming
// it), an error wrapping ErrEventIDNotInt, or an error from the cursor
// store, until Reset. Consume before any Reset starts the workers, which
// then run until Stop. Consume must be called from one goroutine at a
// time, in stream order.
func (kc *KeyedConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	if err := kc.prog.err(); err != nil {
		return err
	}
	id, err := eventIDInt(e)
	if err != nil {
		return err
	}
	queues, life := kc.running()
	q := queues[fnv1(kc.key(e))%uint32(len(queues))]
	seq := kc.prog.doing(id)
	kc.inFlight.Inc()
	select {
	case q <- job{ctx: ctx, e: e, id: id, seq: seq}:
		return nil
	case <-ctx.Done():
		kc.inFlight.Dec()
		return ctx.Err()
	case <-life.Done():
		kc.inFlight.Dec()
		return fmt.Errorf("rpatterns: keyed consumer %q stopped: %w", kc.Name(), context.Cause(life))
	}
}

// running returns the worker queues, starting the workers (until Stop) if
// they do not run, and their lifetime context.
func (kc *KeyedConsumer) running() ([]chan job, context.Context) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.queues == nil {
		kc.startLocked(context.Background())
	}
	return kc.queues, kc.ctx
}

func (kc *KeyedConsumer) startLocked(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	kc.queues = make([]chan job, kc.workers)
	kc.ctx, kc.stop = ctx, cancel
	for i := range kc.queues {
		q := make(chan job, kc.queueLen)
		kc.queues[i] = q
		kc.wg.Go(func() { kc.work(ctx, q) })
	}
	kc.prog.start(ctx)
}

// work processes the jobs of one queue in order until ctx is done. After a
// failure it drops jobs without processing them, so no event runs before
// an earlier event of its key has succeeded.
func (kc *KeyedConsumer) work(ctx context.Context, q <-chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			kc.process(j)
			kc.inFlight.Dec()
		}
	}
}

// process runs one job unless an earlier job failed.
func (kc *KeyedConsumer) process(j job) {
	if kc.prog.err() != nil {
		return
	}
	if err := kc.inner.Consume(j.ctx, j.e); err != nil {
		kc.prog.fail(fmt.Errorf("rpatterns: consumer %q: event %s: %w", kc.Name(), j.e.ID, err))
		return
	}
	kc.prog.done(j.seq, j.id)
}

// halt stops the workers (dropping queued events) and the cursor loop,
// waits for them and writes the final cursor.
func (kc *KeyedConsumer) halt(ctx context.Context) error {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.stop != nil {
		kc.stop()
	}
	kc.wg.Wait()
	kc.prog.stopLoop()
	kc.queues, kc.ctx, kc.stop = nil, nil, nil
	kc.inFlight.Set(0)
	return kc.prog.finish(ctx)
}

// Reset stops the workers of a previous run (events still queued are
// dropped; they are delivered again) after the event each is processing,
// sets the cursor to the highest event up to which all completed and
// flushes the store, then clears the failure, resets the inner consumer and
// starts new workers, which run until ctx is done or Stop. Run calls it at
// the start of every run. It returns the store's or the inner Reset's
// error.
func (kc *KeyedConsumer) Reset(ctx context.Context) error {
	if err := kc.halt(ctx); err != nil {
		return err
	}
	kc.prog.reset()
	if err := resetConsumer(ctx, kc.inner); err != nil {
		return err
	}
	kc.mu.Lock()
	defer kc.mu.Unlock()
	kc.startLocked(ctx)
	return nil
}

// Stop stops the workers after the event each is processing (queued events
// are dropped) and the cursor loop, sets the final cursor and flushes the
// store (with a context that is never cancelled), then stops the inner
// consumer. It returns the store's or the inner Stop's error. It is
// idempotent and safe for concurrent use.
func (kc *KeyedConsumer) Stop() error {
	err := kc.halt(context.Background())
	return errors.Join(err, stopConsumer(kc.inner))
}
