package rpatterns

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// runCounter is a consumer that counts runs (Reset) and stops, records
// when each run started and fails every event with err.
type runCounter struct {
	name  string
	err   error
	begin time.Time
	stops atomic.Int32

	mu     sync.Mutex
	starts []time.Duration
}

func (c *runCounter) runs() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.starts)
}

func (c *runCounter) Name() string { return c.name }
func (c *runCounter) Consume(context.Context, *reflex.Event) error {
	return c.err
}
func (c *runCounter) Reset(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.starts = append(c.starts, time.Since(c.begin))
	return nil
}
func (c *runCounter) Stop() error { c.stops.Add(1); return nil }

// setRand makes the jitter deterministic for one test.
func setRand(t *testing.T, v float64) {
	old := randFloat64
	randFloat64 = func() float64 { return v }
	t.Cleanup(func() { randFloat64 = old })
}

// gaps returns the differences between consecutive values.
func gaps(d []time.Duration) []time.Duration {
	var g []time.Duration
	for i := 1; i < len(d); i++ {
		g = append(g, d[i]-d[i-1])
	}
	return g
}

func TestRunForeverBackoff(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		err  error
		rand float64
		want []time.Duration
	}{
		{"unexpected doubles", errTest, 0, []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s}},
		{"unexpected jittered", errTest, 0.5, []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * s}},
		{"expected short", reflex.ErrStopped, 0, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}},
		{"expected jittered", reflex.ErrStopped, 0.999999, []time.Duration{50*time.Millisecond + 50*time.Nanosecond, 50*time.Millisecond + 50*time.Nanosecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				setRand(t, tc.rand)
				c := &runCounter{name: "rf", err: tc.err, begin: time.Now()}
				ctx, cancel := context.WithCancel(t.Context())
				res := make(chan error, 1)
				go func() {
					res <- RunForeverCtx(ctx, nil, reflex.NewSpec(newLog(1).Stream, reflextest.NewCursorStore(), c))
				}()
				for len(c.runs()) <= len(tc.want) {
					time.Sleep(100 * time.Millisecond)
					synctest.Wait()
				}
				cancel()
				if err := <-res; !errors.Is(err, context.Canceled) {
					t.Fatalf("RunForeverCtx = %v, want context.Canceled", err)
				}
				if got := gaps(c.runs())[:len(tc.want)]; !slices.Equal(got, tc.want) {
					t.Errorf("delays between runs = %v, want %v", got, tc.want)
				}
				if int(c.stops.Load()) != len(c.runs()) {
					t.Errorf("Stop called %d times for %d runs", c.stops.Load(), len(c.runs()))
				}
			})
		})
	}
}

// TestRunForeverBackoffRestarts: a run lasting at least the longest delay
// restarts the doubling.
func TestRunForeverBackoffRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		setRand(t, 0)
		log := newLog(3)
		var runs atomic.Int32
		log.SetRecvHook(func(ctx context.Context, e *reflex.Event) error {
			if e.ID == "1" && runs.Add(1) == 4 {
				time.Sleep(2 * time.Minute) // a long, healthy run
			}
			return errTest
		})
		c := &runCounter{name: "rf", begin: time.Now()}
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() { res <- RunForeverCtx(ctx, nil, reflex.NewSpec(log.Stream, reflextest.NewCursorStore(), c)) }()
		for len(c.runs()) < 6 {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		cancel()
		<-res
		s := time.Second
		want := []time.Duration{s, 2 * s, 4 * s, 2*time.Minute + s, 2 * s}
		if got := gaps(c.runs())[:5]; !slices.Equal(got, want) {
			t.Errorf("delays between runs = %v, want %v", got, want)
		}
	})
}

// TestRunForeverStops: RunForever returns once getCtx hands out a done
// context, also while waiting between runs; it calls getCtx again after a
// run whose context ended (for leases).
func TestRunForeverStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen recorder
		log := newLog(2)
		spec := reflex.NewSpec(log.Stream, reflextest.NewCursorStore(), reflex.NewConsumer("rf", seen.fn))

		lease1, end1 := context.WithCancel(t.Context())
		lease2, end2 := context.WithCancel(t.Context())
		var calls atomic.Int32
		getCtx := func() context.Context {
			if calls.Add(1) == 1 {
				return lease1
			}
			return lease2
		}
		done := make(chan struct{})
		go func() {
			RunForever(getCtx, spec)
			close(done)
		}()
		synctest.Wait()
		end1() // lease lost: RunForever asks for the next one
		synctest.Wait()
		if calls.Load() != 2 {
			t.Fatalf("getCtx called %d times, want 2", calls.Load())
		}
		log.Append(reflex.Event{})
		synctest.Wait()
		if got := seen.got(); !slices.Equal(got, ids(1, 3)) {
			t.Errorf("consumed %q, want 1..3", got)
		}
		end2() // lease2 is done when getCtx returns it: RunForever returns
		<-done
	})
}

func TestRunForeverStopsDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		c := &runCounter{name: "rf", err: errTest, begin: time.Now()}
		done := make(chan struct{})
		go func() {
			RunForever(func() context.Context { return ctx }, reflex.NewSpec(newLog(1).Stream, reflextest.NewCursorStore(), c))
			close(done)
		}()
		time.Sleep(10 * time.Second) // a few failed runs
		start := time.Now()
		cancel()
		<-done
		if d := time.Since(start); d != 0 {
			t.Errorf("RunForever returned %v after the context was cancelled, want at once", d)
		}
	})
}

func TestRunForeverCtxGetCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errLease := errors.New("lease")
		var seen recorder
		spec := reflex.NewSpec(newLog(2).Stream, reflextest.NewCursorStore(), reflex.NewConsumer("rf", seen.fn))
		err := RunForeverCtx(t.Context(), func(ctx context.Context) (context.Context, error) { return nil, errLease }, spec)
		if !errors.Is(err, errLease) {
			t.Fatalf("RunForeverCtx = %v, want %v", err, errLease)
		}

		// The run's context also ends with ctx.
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() {
			res <- RunForeverCtx(ctx, func(context.Context) (context.Context, error) { return context.Background(), nil }, spec)
		}()
		synctest.Wait()
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("RunForeverCtx = %v, want context.Canceled", err)
		}
		if got := seen.got(); !slices.Equal(got, ids(1, 2)) {
			t.Errorf("consumed %q, want 1..2", got)
		}
	})
}

// TestRunForeverCtxDoneRunContext: a getCtx that returns a context that is
// already done (say, a lease lost at once) does not make RunForeverCtx spin:
// it waits about 100ms before calling getCtx again.
func TestRunForeverCtxDoneRunContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spec := reflex.NewSpec(newLog(2).Stream, reflextest.NewCursorStore(), reflex.NewConsumer("rf", (&recorder{}).fn))
		done, cancelDone := context.WithCancel(t.Context())
		cancelDone()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		const calls = 10
		n := 0
		start := time.Now()
		err := RunForeverCtx(ctx, func(context.Context) (context.Context, error) {
			if n++; n == calls {
				cancel()
			}
			return done, nil
		}, spec)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RunForeverCtx = %v, want context.Canceled", err)
		}
		if d, min := time.Since(start), (calls-1)*expectedErrDelay/2; d < min {
			t.Errorf("%d runs with a done context took %v, want at least %v", calls, d, min)
		}
	})
}
