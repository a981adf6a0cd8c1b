package rpatterns

import (
	"context"
	"errors"
	"fmt"
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
	b, s := minErrDelay, time.Second
	tests := []struct {
		name string
		err  error
		rand float64
		want []time.Duration
	}{
		{"unexpected doubles", errTest, 0, []time.Duration{b, 2 * b, 4 * b, s, s, s, s, s}},
		{"unexpected jittered", errTest, 0.5, []time.Duration{b * 3 / 4, b * 3 / 2, b * 3}},
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
		b := minErrDelay
		want := []time.Duration{b, 2 * b, 4 * b, 2*time.Minute + b, 2 * b}
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

// runsWithProgress returns the delays between the runs of a spec whose
// run k consumes progress[k] events (then fails with errTest) and which,
// after the runs described by progress, keeps failing at once.
func runsWithProgress(t *testing.T, progress []int) []time.Duration {
	t.Helper()
	log := newLog(1000)
	var (
		mu     sync.Mutex
		run    = -1
		inRun  int
		starts []time.Duration
	)
	begin := time.Now()
	c := &resetHook{Consumer: reflex.NewConsumer("rf", func(context.Context, *reflex.Event) error { return nil }), reset: func() {
		mu.Lock()
		defer mu.Unlock()
		run++
		inRun = 0
		starts = append(starts, time.Since(begin))
	}}
	log.SetRecvHook(func(context.Context, *reflex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if run < len(progress) && inRun < progress[run] {
			inRun++
			return nil
		}
		return errTest
	})
	ctx, cancel := context.WithCancel(t.Context())
	res := make(chan error, 1)
	go func() {
		res <- RunForeverCtx(ctx, nil, reflex.NewSpec(log.Stream, reflextest.NewCursorStore(), c))
	}()
	for {
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		mu.Lock()
		n := len(starts)
		mu.Unlock()
		if n > len(progress)+3 {
			break
		}
	}
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunForeverCtx = %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return gaps(starts)
}

// resetHook calls reset at the start of each run.
type resetHook struct {
	reflex.Consumer
	reset func()
}

func (c *resetHook) Reset(context.Context) error { c.reset(); return nil }

// TestRunForeverProgressResetsBackoff: a run that consumed an event and
// then failed is retried after the base backoff (125ms), every time; each
// run in a row that fails at once doubles the wait.
func TestRunForeverProgressResetsBackoff(t *testing.T) {
	s := minErrDelay
	tests := []struct {
		name     string
		progress []int // events consumed by each run before it fails
		want     []time.Duration
	}{
		{"progress every run", []int{2, 1, 3, 1, 5}, []time.Duration{s, s, s, s, s, 2 * s, 4 * s}},
		{"at once, then progress", []int{0, 0, 0, 1, 0, 0, 2}, []time.Duration{s, 2 * s, 4 * s, s, 2 * s, 4 * s, s, 2 * s, 4 * s}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				setRand(t, 0)
				if got := runsWithProgress(t, tc.progress)[:len(tc.want)]; !slices.Equal(got, tc.want) {
					t.Errorf("delays between runs = %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// TestRunForeverJitterBounds: with random jitter, the wait after the k-th
// run in a row that failed at once lies in (d/2, d] for
// d = min(125ms<<k, 1s).
func TestRunForeverJitterBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &runCounter{name: "rf", err: errTest, begin: time.Now()}
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() {
			res <- RunForeverCtx(ctx, nil, reflex.NewSpec(newLog(1).Stream, reflextest.NewCursorStore(), c))
		}()
		const runs = 12
		for len(c.runs()) <= runs {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		cancel()
		<-res
		for k, g := range gaps(c.runs())[:runs] {
			d := min(minErrDelay<<k, time.Second)
			if g <= d/2 || g > d {
				t.Errorf("wait %d = %v, want in (%v, %v]", k, g, d/2, d)
			}
		}
	})
}

// TestRunForeverInvalidCursor: a permanent error (wrapping
// reflex.ErrInvalidCursor) waits the longest backoff at once, every time.
func TestRunForeverInvalidCursor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		setRand(t, 0)
		c := &runCounter{name: "rf", begin: time.Now()}
		stream := func(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) {
			return nil, fmt.Errorf("source: cursor %q: %w", "x", reflex.ErrInvalidCursor)
		}
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() { res <- RunForeverCtx(ctx, nil, reflex.NewSpec(stream, reflextest.NewCursorStore(), c)) }()
		for len(c.runs()) < 4 {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		cancel()
		<-res
		want := []time.Duration{time.Minute, time.Minute, time.Minute}
		if got := gaps(c.runs())[:3]; !slices.Equal(got, want) {
			t.Errorf("delays between runs = %v, want %v", got, want)
		}
	})
}

// TestBackoffPolicy pins the waits of the policy RunForever documents.
func TestBackoffPolicy(t *testing.T) {
	s := minErrDelay
	var b backoff
	steps := []struct {
		err        error
		progressed bool
		want       time.Duration
	}{
		{errTest, false, s},
		{errTest, false, 2 * s},
		{reflex.ErrStopped, false, 100 * time.Millisecond},
		{errTest, false, 4 * s},
		{errTest, true, s},
		{errTest, false, 2 * s},
		{fmt.Errorf("x: %w", reflex.ErrInvalidCursor), false, time.Minute},
		{errTest, false, time.Second},
		{context.Canceled, true, 100 * time.Millisecond},
		{errTest, false, s},
		{errTest, false, 2 * s},
	}
	for i, st := range steps {
		if got := b.next(st.err, st.progressed); got != st.want {
			t.Errorf("step %d: next(%v, %v) = %v, want %v", i, st.err, st.progressed, got, st.want)
		}
	}
	if minErrDelay<<maxDoublings < maxErrDelay {
		t.Errorf("maxDoublings %d does not reach the maximum delay", maxDoublings)
	}
}
