package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// HoldLease blocks until ctx is done and returns ctx.Err(), running f
// whenever this runner holds the lease named name (shard 0 of 1): only one
// runner of the name in any process does so at a time. It is the building
// block of RunLeased, and of jobs that must run in one process at a time,
// such as a gap filler.
//
// Every renew interval (WithLeaseRenewInterval, default a third of the
// TTL) HoldLease renews the lease while it holds it, or else reads it and
// claims it when it is free: one statement per interval with the rsql
// leases table. f runs in its own goroutine with a context that ends when
// the lease is lost (taken by another runner after it expired), when
// renewals have failed for long enough that the lease could expire within
// half an interval (measured on the local monotonic clock from the start
// of the last successful renewal), or when ctx ends. HoldLease then waits
// for f to return, releases the lease unless another runner holds it, and
// claims it again when it is free (f then runs again). If f returns while
// its context is still live, HoldLease releases the lease and returns f's
// result.
//
// Errors: bad input (an empty name, a nil store or f, a TTL not larger
// than the renew interval) wraps ErrInvalidLease and is returned at once,
// as is an error wrapping ErrInvalidLease from the store; ErrShardCount if
// RunSharded runs name with more than one shard. Other store errors are
// retried every interval. On return f has returned and the lease is
// released (within a renew interval, best effort), so that another runner
// can take over at once.
func HoldLease(ctx context.Context, leases LeaseStore, name string, f func(ctx context.Context, l Lease) error, opts ...LeaseOption) error {
	cfg, err := newLeaseConfig("HoldLease", leases, name, 1, opts)
	if err == nil && f == nil {
		err = fmt.Errorf("%w: HoldLease: nil function", ErrInvalidLease)
	}
	if err != nil {
		return err
	}
	return holdLease(ctx, leases, name, cfg, func(ctx context.Context, r *leaseRun) error { return f(ctx, r.lease) })
}

// RunLeased runs consumer on stream, as RunForeverCtx(ctx, nil, spec)
// would, but only while this runner holds the lease named after the
// consumer (see HoldLease): of all the processes that call RunLeased for
// one consumer name, exactly one consumes at a time, and another takes
// over when it stops or dies. It blocks until ctx is done and returns
// ctx.Err() after the run has stopped and the lease is released.
//
// The cursor of the consumer (named consumer.Name(), as with
// RunForever) is kept in store, fenced by the lease
// (LeaseStore.FenceCursorStore): a runner that lost the lease, for example
// after a pause longer than the TTL, cannot move the cursor, and the run
// ends with ErrLeaseLost. Events are also refused once the lease could
// have expired, before the consumer sees them. Runs that fail are run
// again with the backoff of RunForever.
//
// Errors: those of HoldLease, and an error wrapping ErrInvalidLease if
// stream, store or consumer is nil or leases cannot fence store. Use
// RunShardedSpecs with one shard for a spec of another shape (a batch or
// transactional consumer, stream options).
func RunLeased(ctx context.Context, leases LeaseStore, stream reflex.StreamFunc, store reflex.CursorStore, consumer reflex.Consumer, opts ...LeaseOption) error {
	if stream == nil || store == nil || consumer == nil {
		return fmt.Errorf("%w: RunLeased: nil stream, cursor store or consumer", ErrInvalidLease)
	}
	name := consumer.Name()
	cfg, err := newLeaseConfig("RunLeased", leases, name, 1, opts)
	if err != nil {
		return err
	}
	if err := checkFence(leases, store, name, 1, cfg.owner); err != nil {
		return err
	}
	return holdLease(ctx, leases, name, cfg, func(ctx context.Context, r *leaseRun) error {
		fenced, err := leases.FenceCursorStore(store, r.lease, func() { r.lose() })
		if err != nil {
			return err
		}
		return RunForeverCtx(ctx, nil, reflex.NewSpec(stream, fenced, &leaseGuard{Consumer: consumer, r: r}))
	})
}

// checkFence returns an error wrapping ErrInvalidLease if leases cannot
// fence store.
func checkFence(leases LeaseStore, store reflex.CursorStore, name string, n int, owner string) error {
	if store == nil {
		return fmt.Errorf("%w: nil cursor store", ErrInvalidLease)
	}
	if _, err := leases.FenceCursorStore(store, Lease{Name: name, Shards: n, Owner: owner, Epoch: 1}, nil); err != nil {
		if !errors.Is(err, ErrInvalidLease) {
			err = fmt.Errorf("%w: %w", ErrInvalidLease, err)
		}
		return err
	}
	return nil
}

// holder is the loop of HoldLease.
type holder struct {
	cfg    leaseConfig
	leases LeaseStore
	name   string
	f      func(ctx context.Context, r *leaseRun) error
	met    *leaseMetrics

	wake chan struct{} // a run's goroutine returned; capacity 1
	wg   sync.WaitGroup
}

// holdLease is HoldLease with checked arguments; f receives the run.
func holdLease(ctx context.Context, leases LeaseStore, name string, cfg leaseConfig, f func(context.Context, *leaseRun) error) error {
	h := &holder{cfg: cfg, leases: leases, name: name, f: f, met: newLeaseMetrics(name), wake: make(chan struct{}, 1)}
	return h.run(ctx)
}

func (h *holder) run(ctx context.Context) error {
	var (
		cur *leaseRun
		tt  tickTimer
	)
	defer tt.stop()
	defer func() {
		if cur != nil {
			cur.stop()
			<-cur.done
			h.ended(cur)
		}
		h.wg.Wait()
		h.met.setOwned(0)
	}()
	tick := tt.next(time.Now(), 0)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.wake:
			if cur == nil || !cur.exited() {
				continue
			}
			h.ended(cur)
			if cur.self {
				// f returned on its own: the lease is released.
				err := cur.err
				cur = nil
				return err
			}
			cur = nil
		case <-tick:
			start := time.Now()
			var err error
			if cur == nil {
				cur, err = h.claim(ctx, start)
			} else {
				err = h.renew(cur, start)
			}
			if err != nil && permanent(err) {
				return err
			}
			tick = tt.next(start, h.cfg.interval)
		}
	}
}

// claim reads the lease and claims it if it is free, starting f.
func (h *holder) claim(ctx context.Context, start time.Time) (*leaseRun, error) {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.opTimeout())
	defer cancel()
	states, err := h.leases.ScanLeases(octx, h.name)
	if err != nil {
		return nil, err
	}
	var seen int64
	for _, s := range states {
		if s.free() {
			if s.Shard == 0 {
				seen = s.Epoch
			}
			continue
		}
		if s.Shards != 1 || s.Shard != 0 {
			return nil, fmt.Errorf("%w: lease %.64q is held by %.64q running %d shards, not one", ErrShardCount, h.name, s.Owner, s.Shards)
		}
		return nil, nil // held by another runner
	}
	l, err := h.leases.ClaimLease(octx, Lease{Name: h.name, Shards: 1, Owner: h.cfg.owner, Epoch: seen}, h.cfg.ttl)
	if err != nil {
		if errors.Is(err, ErrLeaseTaken) {
			return nil, nil
		}
		return nil, err
	}
	h.met.claimed(l)
	h.met.setOwned(1)
	r := newLeaseRun(context.WithoutCancel(ctx), l, start.Add(h.cfg.ttl-h.cfg.stopMargin()), func() { h.met.lost(l) })
	r.start(&h.wg, h.leases, h.cfg.opTimeout(), func(ctx context.Context) error { return h.f(ctx, r) }, h.wakeUp)
	return r, nil
}

// renew renews cur's lease, extending its deadline, or ends it if the
// store no longer holds it.
func (h *holder) renew(cur *leaseRun, start time.Time) error {
	if ended, stopped := cur.state(); ended || stopped {
		return nil // the run is stopping; its goroutine releases the lease
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(cur.ctx), h.cfg.opTimeout())
	defer cancel()
	n, err := h.leases.RenewLeases(ctx, []Lease{cur.lease}, h.cfg.ttl)
	switch {
	case err != nil:
		return err // the deadline stops the run if renewals keep failing
	case n == 1:
		cur.extend(start.Add(h.cfg.ttl - h.cfg.stopMargin()))
	default:
		cur.lose()
	}
	return nil
}

// ended records that cur's goroutine has returned.
func (h *holder) ended(cur *leaseRun) {
	h.met.ended(cur.lease)
	h.met.setOwned(0)
}

// wakeUp wakes the loop; it never blocks.
func (h *holder) wakeUp() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}
