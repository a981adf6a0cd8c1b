package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/runprogress"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// The waits between the runs of RunForever, RunForeverCtx and RunParallel
// (see RunForever). Each wait is jittered to a random duration in
// (d/2, d], so that consumers failing together do not retry together.
const (
	// expectedErrDelay follows a run that ended with an expected error
	// (reflex.IsExpected), such as a stopped server.
	expectedErrDelay = 100 * time.Millisecond
	// minErrDelay follows a failed run when the runs before it made
	// progress; it doubles for each run in a row that failed without.
	minErrDelay = 125 * time.Millisecond
	// maxErrDelay caps the doubling: a source that comes back after an
	// outage of any length is retried within a second.
	maxErrDelay = time.Second
	// maxDoublings is the number of failures in a row after which the wait
	// is maxErrDelay: minErrDelay<<maxDoublings >= maxErrDelay.
	maxDoublings = 3
	// permanentErrDelay follows a permanent error
	// (reflex.ErrInvalidCursor), which retrying cannot fix.
	permanentErrDelay = time.Minute
	// longRun is how long a run must last to count as having made
	// progress even if it consumed nothing.
	longRun = time.Minute
)

// randFloat64 returns a number in [0, 1) for jitter; tests replace it.
var randFloat64 = rand.Float64

// errStopRunning ends the loop of RunForever.
var errStopRunning = errors.New("rpatterns: run forever: context done")

// RunForever runs spec with reflex.Run again and again, calling spec.Stop
// after every run. It blocks until getCtx returns a context that is done,
// and waits between runs:
//
//   - 100ms after an expected error (reflex.IsExpected), such as a stopped
//     server;
//   - 1 minute after an error wrapping reflex.ErrInvalidCursor, a
//     permanent error;
//   - after any other error, 125ms, doubled for each run in a row before
//     it that failed without making progress (250ms, 500ms), up to 1s.
//
// A run made progress if it consumed at least one event, or lasted at
// least 1 minute. So a run that made progress and then failed is retried
// after 125ms, whatever failed before it; a run that fails at once again
// and again (a database or peer that is down) is retried after 125ms,
// 250ms, 500ms, then every second: never in a tight loop, and within a
// second of the source coming back, however long it was away. (A
// permanent error counts as the longest run of failures.) Each wait is
// randomly shortened by up to half (jitter), so that consumers failing
// together do not retry together.
//
// Each run uses a context from getCtx, which may block (for example until
// this process holds a lease, returning a context that ends with it). When
// a run's context is done RunForever stops waiting and calls getCtx again;
// it returns as soon as getCtx returns a context that is already done. So
// RunForever(func() context.Context { return ctx }, spec) runs until ctx is
// cancelled and then returns, while a getCtx that blocks for the next lease
// keeps it running. The errors of Run and of spec.Stop are not reported
// (wrap the consumer, for example with reflex.WithRecoverFunction, to see
// them); RunForeverCtx reports why it returned.
func RunForever(getCtx func() context.Context, spec reflex.Spec) {
	_ = runForever(context.Background(), func(context.Context) (context.Context, error) {
		ctx := getCtx()
		if ctx.Err() != nil {
			return nil, errStopRunning
		}
		return ctx, nil
	}, spec)
}

// RunForeverCtx is RunForever with a context that stops it: it blocks until
// ctx is done and returns ctx.Err(), or until getCtx fails and returns its
// error wrapped. getCtx (nil means every run uses ctx) receives ctx and may
// block until the next run should start, returning the context for that
// run; each run also ends when ctx is done. The waits between runs are
// those of RunForever; a context from getCtx that is done already is not
// run, and getCtx is called again about 100ms later.
func RunForeverCtx(ctx context.Context, getCtx func(ctx context.Context) (context.Context, error), spec reflex.Spec) error {
	if getCtx == nil {
		getCtx = func(ctx context.Context) (context.Context, error) { return ctx, nil }
	}
	return runForever(ctx, getCtx, spec)
}

func runForever(ctx context.Context, getCtx func(context.Context) (context.Context, error), spec reflex.Spec) error {
	var (
		b     backoff
		timer wait.Timer
	)
	defer timer.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		runCtx, err := getCtx(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, errStopRunning) {
				return err
			}
			return fmt.Errorf("rpatterns: run forever %q: get context: %w", spec.Name(), err)
		}
		runCtx, cancel := context.WithCancel(runCtx)
		stop := context.AfterFunc(ctx, cancel)
		if runCtx.Err() != nil {
			// getCtx returned a context that is done already: do not run,
			// and wait (until ctx ends) before asking again, so that a
			// getCtx that keeps doing so does not make this loop spin.
			_ = timer.Sleep(ctx, jitter(expectedErrDelay))
		} else if d := runOnce(runCtx, spec, &b); d > 0 {
			_ = timer.Sleep(runCtx, jitter(d))
		}
		stop()
		cancel()
	}
}

// runOnce runs spec, stops it and returns how long to wait before the next
// run: none if runCtx is done.
func runOnce(runCtx context.Context, spec reflex.Spec, b *backoff) time.Duration {
	var p runprogress.Progress
	start := time.Now()
	err := reflex.Run(runprogress.With(runCtx, &p), spec)
	_ = spec.Stop()
	if runCtx.Err() != nil {
		return 0 // cancelled: no wait, go back to getCtx (and ctx)
	}
	return b.next(err, p.HasConsumed() || time.Since(start) >= longRun)
}

// backoff counts the runs in a row that failed without progress.
type backoff struct {
	failures int
}

// next returns the wait after a run that ended with err, and that made
// progress if progressed (see RunForever).
func (b *backoff) next(err error, progressed bool) time.Duration {
	if progressed {
		b.failures = 0
	}
	switch {
	case reflex.IsExpected(err):
		return expectedErrDelay
	case errors.Is(err, reflex.ErrInvalidCursor):
		b.failures = maxDoublings
		return permanentErrDelay
	}
	d := min(minErrDelay<<b.failures, maxErrDelay)
	b.failures = min(b.failures+1, maxDoublings)
	return d
}

// jitter returns a random duration in (d/2, d].
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(randFloat64()*float64(d/2))
}
