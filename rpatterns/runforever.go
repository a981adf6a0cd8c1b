package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// Delays between the runs of RunForever and RunForeverCtx. Each delay is
// jittered to a random value between half and all of it, so that many
// consumers failing together do not retry together.
const (
	// expectedErrDelay follows a run that ended with an expected error
	// (reflex.IsExpected), such as a stopped server.
	expectedErrDelay = 100 * time.Millisecond
	// minErrDelay follows the first of consecutive runs that ended with
	// another error; the delay doubles after each further one ...
	minErrDelay = time.Second
	// maxErrDelay ... up to this. A run that lasted at least this long
	// restarts the doubling.
	maxErrDelay = time.Minute
)

// randFloat64 returns a number in [0, 1) for jitter; tests replace it.
var randFloat64 = rand.Float64

// errStopRunning ends the loop of RunForever.
var errStopRunning = errors.New("rpatterns: run forever: context done")

// RunForever runs spec with reflex.Run again and again, calling spec.Stop
// after every run and waiting between runs: about 100ms after an expected
// error (reflex.IsExpected), and after other errors 1s, doubling with each
// consecutive failure up to 1 minute (each delay randomly shortened by up
// to half).
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
	failures := 0
	var timer *time.Timer
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

		var d time.Duration
		wait := runCtx.Done()
		if runCtx.Err() != nil {
			// getCtx returned a context that is done already: do not run,
			// and wait (until ctx ends) before asking again, so that a
			// getCtx that keeps doing so does not make this loop spin.
			d, wait = expectedErrDelay, ctx.Done()
		} else {
			d = runOnce(runCtx, spec, &failures)
		}
		if d > 0 {
			d = jitter(d)
			if timer == nil {
				timer = time.NewTimer(d)
				defer timer.Stop()
			} else {
				timer.Reset(d)
			}
			select {
			case <-wait:
			case <-timer.C:
			}
		}
		stop()
		cancel()
	}
}

// runOnce runs spec, stops it and returns how long to wait before the next
// run, counting consecutive failures in failures.
func runOnce(runCtx context.Context, spec reflex.Spec, failures *int) time.Duration {
	start := time.Now()
	err := reflex.Run(runCtx, spec)
	_ = spec.Stop()

	switch {
	case runCtx.Err() != nil:
		return 0 // cancelled: no wait, go back to getCtx (and ctx)
	case reflex.IsExpected(err):
		return expectedErrDelay
	}
	if time.Since(start) >= maxErrDelay {
		*failures = 0
	}
	d := min(minErrDelay<<min(*failures, 16), maxErrDelay)
	*failures++
	return d
}

// jitter returns a random duration in (d/2, d].
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(randFloat64()*float64(d/2))
}
