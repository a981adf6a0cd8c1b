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
)

// leaseRun is one held lease and the run that uses it: a goroutine owned
// by the runner that claimed the lease, which waits for it (done). The run's
// context ends when the lease is lost, when the local deadline passes (the
// lease could expire soon after, and renewals did not push the deadline
// back), or when the runner stops the run.
type leaseRun struct {
	lease  Lease
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed when the run's goroutine has returned, after it
	// released the lease unless the store had taken it back.
	done chan struct{}
	// onLost is called once, when the lease is first found lost or the
	// deadline passes.
	onLost func()

	mu       sync.Mutex // protects the following fields
	deadline time.Time  // local monotonic time until which the lease may be used
	ended    bool       // the context was cancelled for a loss or the deadline
	lost     bool       // the store no longer holds the lease for us
	stopped  bool       // stop was called
	timer    *time.Timer

	// Set by the goroutine before done is closed.
	err  error // what the run's function returned
	self bool  // the function returned while the context was live
}

// newLeaseRun returns the run of l, usable until deadline (local clock),
// with a context derived from base.
func newLeaseRun(base context.Context, l Lease, deadline time.Time, onLost func()) *leaseRun {
	r := &leaseRun{lease: l, done: make(chan struct{}), onLost: onLost, deadline: deadline}
	r.ctx, r.cancel = context.WithCancel(base)
	r.timer = time.AfterFunc(time.Until(deadline), r.expire)
	return r
}

// start runs f(r.ctx) in a goroutine counted by wg; when f returns it
// releases the lease through leases, within timeout, unless the store is
// known to have taken it back, then closes done and calls exited.
func (r *leaseRun) start(wg *sync.WaitGroup, leases LeaseStore, timeout time.Duration, f func(ctx context.Context) error, exited func()) {
	wg.Go(func() {
		err := f(r.ctx)
		r.mu.Lock()
		r.err, r.self = err, r.ctx.Err() == nil
		lost := r.lost
		r.mu.Unlock()
		r.cancel()
		r.timer.Stop()
		if !lost {
			// Bounded, and independent of the caller's context, which may
			// be done: releasing lets another member take over at once
			// (after a stop, or after the deadline passed, when the lease
			// may still be held). The release is conditioned on the epoch,
			// so it never frees a later claim.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), timeout)
			_ = leases.ReleaseLeases(ctx, []Lease{r.lease})
			cancel()
		}
		close(r.done)
		exited()
	})
}

// extend moves the deadline to until if that is later, unless the run
// ended already.
func (r *leaseRun) extend(until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended || !until.After(r.deadline) {
		return
	}
	r.deadline = until
	r.timer.Reset(time.Until(until))
}

// expire is the deadline timer's function: it ends the run unless the
// deadline moved meanwhile.
func (r *leaseRun) expire() {
	r.mu.Lock()
	if d := time.Until(r.deadline); d > 0 && !r.ended {
		r.timer.Reset(d)
		r.mu.Unlock()
		return
	}
	first := r.endLocked()
	r.mu.Unlock()
	if first && r.onLost != nil {
		r.onLost()
	}
}

// lose ends the run because the store no longer holds the lease for us.
// It is idempotent and safe for concurrent use; it reports whether this
// call ended the run.
func (r *leaseRun) lose() bool {
	r.mu.Lock()
	r.lost = true
	first := r.endLocked()
	r.mu.Unlock()
	if first && r.onLost != nil {
		r.onLost()
	}
	return first
}

// endLocked marks the run ended and cancels it; it reports whether it was
// the first end (a stop does not count: the lease was not lost).
func (r *leaseRun) endLocked() bool {
	if r.ended || r.stopped {
		return false
	}
	r.ended = true
	r.cancel()
	return true
}

// stop ends the run gracefully: the goroutine releases the lease once the
// run has returned.
func (r *leaseRun) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
}

// state reports whether the run ended for a loss or the deadline, and
// whether it was stopped.
func (r *leaseRun) state() (ended, stopped bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended, r.stopped
}

// valid reports whether the lease may still be used: the run has not ended
// and the local deadline has not passed (a process that was paused may run
// a little before the timer fires).
func (r *leaseRun) valid() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.ended && !r.stopped && time.Now().Before(r.deadline)
}

// exited reports whether the run's goroutine has returned.
func (r *leaseRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// errLeaseExpired is the error of an event refused because the lease's
// local deadline passed.
func (r *leaseRun) errLeaseExpired() error {
	return fmt.Errorf("%w: lease %.64q shard %d epoch %d of %.64q may have expired", ErrLeaseLost, r.lease.Name, r.lease.Shard, r.lease.Epoch, r.lease.Owner)
}

// guard returns fn, refusing events once the lease may no longer be used.
func (r *leaseRun) guard(fn reflex.ConsumerFunc) reflex.ConsumerFunc {
	return func(ctx context.Context, e *reflex.Event) error {
		if !r.valid() {
			return r.errLeaseExpired()
		}
		return fn(ctx, e)
	}
}

// leaseGuard is a consumer that refuses events once its run's lease may no
// longer be used; it passes Reset and Stop to the consumer it wraps.
type leaseGuard struct {
	reflex.Consumer
	r *leaseRun
}

var (
	_ reflex.ResetterCtx = (*leaseGuard)(nil)
	_ reflex.Stopper     = (*leaseGuard)(nil)
)

// Consume passes e to the consumer while the lease may be used, else it
// returns an error wrapping ErrLeaseLost.
func (g *leaseGuard) Consume(ctx context.Context, e *reflex.Event) error {
	if !g.r.valid() {
		return g.r.errLeaseExpired()
	}
	return g.Consumer.Consume(ctx, e)
}

// Reset calls the consumer's Reset, if it has one.
func (g *leaseGuard) Reset(ctx context.Context) error {
	switch c := g.Consumer.(type) {
	case reflex.ResetterCtx:
		return c.Reset(ctx)
	case interface{ Reset() error }:
		return c.Reset()
	}
	return nil
}

// Stop calls the consumer's Stop, if it has one.
func (g *leaseGuard) Stop() error {
	if s, ok := g.Consumer.(reflex.Stopper); ok {
		return s.Stop()
	}
	return nil
}

// leaseMetrics records the lease metrics of one runner.
type leaseMetrics struct {
	name       string
	owned      prometheus.Gauge
	rebalances prometheus.Counter
	count      int // the runner's share of owned; owned by the runner's loop
}

func newLeaseMetrics(name string) *leaseMetrics {
	return &leaseMetrics{name: name, owned: metrics.LeaseShardsOwned(name), rebalances: metrics.LeaseRebalances(name)}
}

// setOwned sets the runner's share of the owned gauge.
func (m *leaseMetrics) setOwned(n int) {
	if n != m.count {
		m.owned.Add(float64(n - m.count))
		m.count = n
	}
}

func (m *leaseMetrics) claimed(l Lease) { metrics.LeaseClaimed(m.name, l.Shard, l.Epoch) }
func (m *leaseMetrics) lost(l Lease)    { metrics.LeaseLost(m.name, l.Shard) }
func (m *leaseMetrics) ended(l Lease)   { metrics.LeaseEnded(m.name, l.Shard) }

// permanent reports whether err from a lease store is one that retrying
// cannot fix.
func permanent(err error) bool {
	return errors.Is(err, ErrInvalidLease) || errors.Is(err, ErrShardCount)
}

// tickTimer is the wait of a runner's loop: a reusable timer that is
// selected with the loop's other events (so not internal/wait.Timer, which
// waits for a context only).
type tickTimer struct{ t *time.Timer }

// next arms the timer to fire interval after start (at once if that has
// passed).
func (tt *tickTimer) next(start time.Time, interval time.Duration) <-chan time.Time {
	d := max(interval-time.Since(start), 0)
	if tt.t == nil {
		tt.t = time.NewTimer(d)
	} else {
		tt.t.Reset(d)
	}
	return tt.t.C
}

func (tt *tickTimer) stop() {
	if tt.t != nil {
		tt.t.Stop()
	}
}
