package rpatterns

import (
	"context"
	"fmt"
	"sync"

	"github.com/seed-e488ba2e/reflex"
)

// retryTracker counts consecutive failures of the same event.
type retryTracker struct {
	retries int

	mu       sync.Mutex // protects the following fields
	lastID   string
	failures int
}

// fail records a failure of event id and reports whether the retries are
// exhausted, in which case the count restarts.
func (r *retryTracker) fail(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id != r.lastID {
		r.lastID, r.failures = id, 0
	}
	r.failures++
	if r.failures > r.retries {
		r.failures = 0
		return true
	}
	return false
}

// try runs fn on e, counts its failure and returns fn's error. It reports
// whether the retries of e are exhausted: fn failed, ctx is not done (an
// error returned while ctx is done does not count: the event was not
// really tried), and e has now failed more than retries times in a row.
func (r *retryTracker) try(ctx context.Context, e *reflex.Event, fn reflex.ConsumerFunc) (exhausted bool, err error) {
	if err = fn(ctx, e); err == nil {
		r.succeed()
		return false, nil
	}
	if ctx.Err() != nil {
		return false, err
	}
	return r.fail(e.ID), err
}

// succeed clears the failure count.
func (r *retryTracker) succeed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastID, r.failures = "", 0
}

// NewBestEffortConsumer returns an instrumented consumer (see
// reflex.NewConsumer, configured by opts) that gives up on an event after
// retries failures: fn's error is returned for up to retries consecutive
// failures of the same event, and the next failure is swallowed (Consume
// returns nil, so Run moves past the event). A success, or a failure of
// another event, restarts the count. With retries 0 failures never
// surface.
//
// An error returned while ctx is done is always returned: the event was
// not really tried, so it is not skipped.
//
// Failures are counted across calls, so the consumer must see one event at
// a time (one Run) for the count to be exact. It panics if an option is
// nil, a programming error.
func NewBestEffortConsumer(name string, retries int, fn reflex.ConsumerFunc, opts ...reflex.ConsumerOption) reflex.Consumer {
	rt := &retryTracker{retries: retries}
	return newConsumer("NewBestEffortConsumer", name, func(ctx context.Context, e *reflex.Event) error {
		exhausted, err := rt.try(ctx, e, fn)
		if exhausted {
			return nil
		}
		return err
	}, opts)
}

// NewDeadLetterConsumer returns an instrumented consumer (see
// reflex.NewConsumer, configured by opts) that records an event with
// insertFn after retries failures and then moves past it.
//
// fn's error is returned for up to retries consecutive failures of the same
// event. On the next failure: an expected error (reflex.IsExpected) is
// swallowed without being recorded; any other is recorded by calling
// insertFn(ctx, name, e.ID, err.Error()) — consumer name first, then event
// ID, as reflex.ErrorInsertFunc documents — and swallowed, so Consume
// returns nil. If recording fails, Consume returns fn's error wrapped with
// the recording error (errors.Is matches both) and the count restarts, so
// the event blocks until it succeeds or can be recorded.
//
// An error returned while ctx is done is always returned, as in
// NewBestEffortConsumer. It panics if an option is nil, a programming
// error.
func NewDeadLetterConsumer(name string, retries int, fn reflex.ConsumerFunc, insertFn reflex.ErrorInsertFunc, opts ...reflex.ConsumerOption) reflex.Consumer {
	rt := &retryTracker{retries: retries}
	return newConsumer("NewDeadLetterConsumer", name, func(ctx context.Context, e *reflex.Event) error {
		exhausted, err := rt.try(ctx, e, fn)
		if !exhausted {
			return err
		}
		if reflex.IsExpected(err) {
			return nil
		}
		if insErr := insertFn(ctx, name, e.ID, err.Error()); insErr != nil {
			return fmt.Errorf("%w (rpatterns: dead-letter record of event %s failed: %w)", err, e.ID, insErr)
		}
		return nil
	}, opts)
}
