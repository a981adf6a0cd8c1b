package rpatterns

import (
	"context"
	"fmt"

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
// The KeyedConsumer owns its goroutines: the workers and the cursor loop.
// They start in Reset (or, if it was not called, in the first Consume) and
// end with the next Reset, with Stop, or with the context given to Reset
// (Run passes the run's context). Stop waits for them.
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
	p   pool
	key func(*reflex.Event) string
}

var (
	_ reflex.Consumer    = (*KeyedConsumer)(nil)
	_ reflex.ResetterCtx = (*KeyedConsumer)(nil)
	_ reflex.Stopper     = (*KeyedConsumer)(nil)
)

// NewKeyedConsumer returns a consumer that runs inner on workers workers,
// in order per foreign ID, keeping inner's cursor (under inner's name) in
// store. It panics if workers < 1, WithKeyedQueueLen is below 1 or an
// option is nil, all programming errors.
func NewKeyedConsumer(store reflex.CursorStore, inner reflex.Consumer, workers int, opts ...KeyedOption) *KeyedConsumer {
	mustOptions("NewKeyedConsumer", "KeyedOption", opts)
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
		p: pool{
			kind:             "keyed",
			inner:            inner,
			prog:             newProgress(inner.Name(), store),
			workers:          workers,
			queues:           workers,
			queueLen:         cfg.queueLen,
			dropAfterFailure: true,
			inFlight:         metrics.KeyedInFlight(inner.Name()),
		},
		key: cfg.key,
	}
}

// NewKeyedSpec returns a spec that runs kc over stream. Run's per-event
// SetCursor is dropped: kc sets the cursor as events complete. Run resets
// kc at the start of each run; Spec.Stop stops it. It panics if a stream
// option is nil.
func NewKeyedSpec(stream reflex.StreamFunc, kc *KeyedConsumer, opts ...reflex.StreamOption) reflex.Spec {
	return newSpec("NewKeyedSpec", stream, noSetStore{kc.p.prog.store}, kc, opts)
}

// Name returns the inner consumer's name.
func (kc *KeyedConsumer) Name() string { return kc.p.inner.Name() }

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
	return kc.p.dispatch(ctx, e, int(fnv1(kc.key(e))%uint32(kc.p.queues)))
}

// Reset stops the workers of a previous run (events still queued are
// dropped; they are delivered again) after the event each is processing,
// sets the cursor to the highest event up to which all completed and
// flushes the store, then clears the failure, resets the inner consumer and
// starts new workers, which run until ctx is done, the next Reset or Stop.
// Run calls it at the start of every run. It returns the store's or the
// inner Reset's error.
func (kc *KeyedConsumer) Reset(ctx context.Context) error {
	return kc.p.reset(ctx)
}

// Stop stops the workers after the event each is processing (queued events
// are dropped) and the cursor loop and waits for them, sets the final
// cursor and flushes the store (with a context that is never cancelled),
// then stops the inner consumer. It returns the store's or the inner
// Stop's error. It is idempotent, safe for concurrent use, and safe before
// any Reset.
func (kc *KeyedConsumer) Stop() error {
	return kc.p.close()
}
