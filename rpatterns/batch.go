package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

var (
	// ErrInvalidBatchConfig is returned by every BatchConsumer.Consume when
	// the consumer was built with neither a positive batch period nor a
	// positive batch length, or with a negative one.
	ErrInvalidBatchConfig = errors.New("rpatterns: invalid batch config: need a positive batch period or length, and neither negative")

	// ErrBatchState is returned (wrapping the cause) by BatchConsumer.Consume
	// after a batch failed, until the consumer is reset (Run resets it), and
	// when a consumer with a batch period is used without Reset.
	ErrBatchState = errors.New("rpatterns: batch consumer must be reset")
)

// minBatchWait is how long a period-triggered batch waits after its first
// event arrived when that event is already older than the period, so that
// a consumer that is behind still processes batches rather than single
// events.
const minBatchWait = 100 * time.Millisecond

// Batch is the events of one batch, in stream order.
type Batch []*reflex.Event

// BatchConsumeFn processes a batch. An error fails the batch: no event of
// it is acknowledged and all of them are delivered again. It is an alias
// of the function type, so any func(context.Context, Batch) error is one.
type BatchConsumeFn = func(ctx context.Context, b Batch) error

// BatchFunc is BatchConsumeFn.
//
// Deprecated: Use BatchConsumeFn, the name luno/reflex uses.
type BatchFunc = BatchConsumeFn

// BatchConsumer collects events into batches and processes each batch with
// one call. Run it with NewBatchSpec. It embeds the *AckConsumer that
// holds its name, cursor store and consumer options (Name is the
// AckConsumer's; the AckConsumer's function adds the event to the batch).
//
// A batch is processed when it reaches the batch length (synchronously, in
// the Consume call of its last event, which returns the batch's error), or
// when the batch period has passed since the timestamp of its first event
// (in a background goroutine; if that event is already older than the
// period when it arrives, 100ms after it arrived). After a batch succeeds the cursor is set to its last event and
// the store flushed; nothing else moves the cursor, so buffered events are
// delivered again after a restart.
//
// A failed background batch puts the consumer in a failed state: the next
// Consume returns ErrBatchState wrapping the batch's error, and the next
// Reset (the next Run) clears it. A failed synchronous batch does the same
// for any Consume made without a Reset.
//
// Methods are safe for concurrent use, but a BatchConsumer serves one Run
// at a time.
type BatchConsumer struct {
	*AckConsumer

	fn     BatchConsumeFn
	period time.Duration
	length int
	gauge  prometheus.Gauge

	// Lock order: mu before lifeMu.
	mu       sync.Mutex // protects the following fields; held while a batch is processed
	buf      Batch
	deadline time.Time // when the current batch is due by period
	failed   error     // sticky failure, cleared by Reset

	lifeMu sync.Mutex    // protects kick and stop
	kick   chan struct{} // wakes the loop when a batch starts; nil when no loop runs
	stop   context.CancelFunc
	wg     sync.WaitGroup // the loop
}

var (
	_ reflex.Consumer    = (*BatchConsumer)(nil)
	_ reflex.ResetterCtx = (*BatchConsumer)(nil)
	_ reflex.Stopper     = (*BatchConsumer)(nil)
)

// NewBatchConsumer returns a consumer named name that processes events in
// batches of batchLen events, or of the events collected during
// batchPeriod, whichever comes first; zero disables that trigger. The
// cursor is kept in store. opts configure the instrumented consumer that
// NewBatchSpec builds around it.
//
// The configuration is checked when events are consumed: if both
// batchPeriod and batchLen are zero, or either is negative, every Consume
// returns ErrInvalidBatchConfig. NewBatchConsumer panics if an option is
// nil, a programming error.
func NewBatchConsumer(name string, store reflex.CursorStore, fn BatchConsumeFn, batchPeriod time.Duration, batchLen int, opts ...reflex.ConsumerOption) *BatchConsumer {
	bc := &BatchConsumer{
		fn:     fn,
		period: batchPeriod,
		length: batchLen,
		gauge:  metrics.BatchBufferLength(name),
	}
	bc.AckConsumer = newAckConsumer("NewBatchConsumer", name, store, func(ctx context.Context, e *AckEvent) error {
		return bc.Consume(ctx, &e.Event)
	}, opts)
	return bc
}

// NewBatchSpec returns a spec that runs bc, instrumented with its consumer
// options, over stream. Run's per-event SetCursor is dropped: bc sets the
// cursor after each successful batch. Run resets bc at the start of each
// run; Spec.Stop stops it. It panics if a stream option is nil.
func NewBatchSpec(stream reflex.StreamFunc, bc *BatchConsumer, opts ...reflex.StreamOption) reflex.Spec {
	c := reflex.NewConsumer(bc.name, bc.Consume, bc.opts...)
	return newSpec("NewBatchSpec", stream, noSetStore{bc.store}, &lifecycleConsumer{Consumer: c, life: bc}, opts)
}

func (bc *BatchConsumer) validConfig() bool {
	return bc.period >= 0 && bc.length >= 0 && (bc.period > 0 || bc.length > 0)
}

// Consume adds e to the current batch. It blocks while a batch is being
// processed, and processes the batch itself when e completes it by length,
// returning the batch's error. See BatchConsumer for the errors. It
// replaces the Consume of the embedded AckConsumer (which wraps e in an
// AckEvent and then does the same), and applies none of the consumer
// options; NewBatchSpec does.
func (bc *BatchConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	if !bc.validConfig() {
		return ErrInvalidBatchConfig
	}
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.failed != nil {
		return bc.failed
	}
	bc.lifeMu.Lock()
	kick := bc.kick
	bc.lifeMu.Unlock()
	if bc.period > 0 && kick == nil {
		return fmt.Errorf("%w: no Reset before Consume (use NewBatchSpec)", ErrBatchState)
	}

	bc.buf = append(bc.buf, e)
	bc.gauge.Set(float64(len(bc.buf)))
	if bc.length > 0 && len(bc.buf) >= bc.length {
		return bc.processLocked(ctx)
	}
	if bc.period > 0 && len(bc.buf) == 1 {
		d := time.Until(e.Timestamp.Add(bc.period))
		if d < 0 {
			d = minBatchWait // behind the stream: still collect a batch
		}
		bc.deadline = time.Now().Add(d)
		select {
		case kick <- struct{}{}:
		default: // the loop has a wake-up pending already
		}
	}
	return nil
}

// processLocked processes the buffered batch, acknowledges its last event
// and empties the buffer. On failure the consumer enters the failed state
// and the buffer is dropped (its events are delivered again after Reset).
func (bc *BatchConsumer) processLocked(ctx context.Context) error {
	b := bc.buf
	bc.buf = nil
	bc.deadline = time.Time{}
	bc.gauge.Set(0)
	err := bc.fn(ctx, b)
	if err == nil {
		last := b[len(b)-1]
		if err = ack(ctx, bc.store, bc.name, last.ID); err != nil {
			err = fmt.Errorf("rpatterns: batch consumer %q: ack event %s: %w", bc.name, last.ID, err)
		}
	}
	if err != nil {
		bc.failed = fmt.Errorf("%w: batch failed: %w", ErrBatchState, err)
	}
	return err
}

// Reset stops the background goroutine of a previous run, drops any
// buffered events (they are delivered again, as the cursor never moved past
// them), clears the failed state and starts a new background goroutine
// that lives until ctx is done or Stop is called. Run calls it.
func (bc *BatchConsumer) Reset(ctx context.Context) error {
	bc.Stop()
	bc.mu.Lock()
	defer bc.mu.Unlock()
	bc.buf = nil
	bc.deadline = time.Time{}
	bc.failed = nil
	bc.gauge.Set(0)
	if bc.period <= 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	kick := make(chan struct{}, 1) // one pending wake-up is enough
	bc.lifeMu.Lock()
	bc.kick, bc.stop = kick, cancel
	bc.lifeMu.Unlock()
	bc.wg.Go(func() { bc.loop(ctx, kick) })
	return nil
}

// Stop cancels the background goroutine and waits for it, including a batch
// it is processing (whose context is cancelled). Buffered events stay
// buffered until Reset. It is idempotent, safe before any Reset and always
// returns nil.
func (bc *BatchConsumer) Stop() error {
	bc.lifeMu.Lock()
	stop := bc.stop
	bc.stop, bc.kick = nil, nil
	bc.lifeMu.Unlock()
	if stop != nil {
		stop()
	}
	bc.wg.Wait()
	return nil
}

// loop processes batches when their period is over. It sleeps until a
// batch starts (kick), then until the batch is due. A batch that starts
// while the loop sleeps towards the deadline of an earlier one (processed
// by length meanwhile) is checked when that sleep ends; its own deadline
// is then later, or earlier by less than minBatchWait, unless event
// timestamps go backwards (then it is at most one period late).
func (bc *BatchConsumer) loop(ctx context.Context, kick <-chan struct{}) {
	var timer wait.Timer
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		for {
			d, ok := bc.tick(ctx)
			if !ok {
				return
			}
			if d == 0 {
				break // no batch pending: wait for the next one
			}
			if timer.Sleep(ctx, d) != nil {
				return
			}
		}
	}
}

// tick processes the batch if it is due. It returns how long until the
// pending batch is due (0 if none is pending), and false if the loop must
// exit: ctx is done or a batch failed.
func (bc *BatchConsumer) tick(ctx context.Context) (time.Duration, bool) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.failed != nil || ctx.Err() != nil {
		return 0, false
	}
	if len(bc.buf) == 0 {
		return 0, true
	}
	if d := time.Until(bc.deadline); d > 0 {
		return d, true
	}
	return 0, bc.processLocked(ctx) == nil
}

// lifecycleConsumer adds a Reset and Stop to an instrumented consumer: it
// resets and stops both life and the wrapped consumer.
type lifecycleConsumer struct {
	reflex.Consumer
	life interface {
		reflex.ResetterCtx
		reflex.Stopper
	}
}

func (c *lifecycleConsumer) Reset(ctx context.Context) error {
	if err := resetConsumer(ctx, c.Consumer); err != nil {
		return err
	}
	return c.life.Reset(ctx)
}

func (c *lifecycleConsumer) Stop() error {
	return errors.Join(c.life.Stop(), stopConsumer(c.Consumer))
}

// resetConsumer calls c's Reset method, if it has one.
func resetConsumer(ctx context.Context, c reflex.Consumer) error {
	switch r := c.(type) {
	case reflex.ResetterCtx:
		return r.Reset(ctx)
	case interface{ Reset() error }:
		return r.Reset()
	}
	return nil
}

// stopConsumer calls c's Stop method, if it has one.
func stopConsumer(c reflex.Consumer) error {
	if s, ok := c.(reflex.Stopper); ok {
		return s.Stop()
	}
	return nil
}
