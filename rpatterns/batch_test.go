package rpatterns

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// batches records the batches a BatchFunc sees.
type batches struct {
	rec recorder
	n   atomic.Int32
}

func (b *batches) fn(ctx context.Context, batch Batch) error {
	b.n.Add(1)
	for _, e := range batch {
		b.rec.add(e.ID)
	}
	return nil
}

func TestBatchLengthVectors(t *testing.T) {
	tests := []struct {
		length      int
		wantBatches int
	}{{4, 5}, {10, 2}, {15, 1}, {40, 0}}
	for _, tc := range tests {
		t.Run("len"+string(rune('0'+tc.length/10))+string(rune('0'+tc.length%10)), func(t *testing.T) {
			store := reflextest.NewCursorStore()
			var b batches
			bc := NewBatchConsumer("batcher", store, b.fn, 0, tc.length)
			spec := NewBatchSpec(newLog(20).Stream, bc, reflex.WithStreamToHead())
			runToHead(t, spec)
			if err := spec.Stop(); err != nil {
				t.Fatal(err)
			}
			if got := int(b.n.Load()); got != tc.wantBatches {
				t.Errorf("batches = %d, want %d", got, tc.wantBatches)
			}
			var want []string
			for i := 1; i <= tc.wantBatches; i++ {
				want = append(want, ids(i*tc.length, i*tc.length)...)
			}
			if got := store.Sets("batcher"); !slices.Equal(got, want) {
				t.Errorf("cursor sets = %q, want %q (the last event of each batch)", got, want)
			}
			if got, want := b.rec.got(), ids(1, tc.wantBatches*tc.length); !slices.Equal(got, want) {
				t.Errorf("events processed = %q, want %q", got, want)
			}
		})
	}
}

func TestBatchInvalidConfig(t *testing.T) {
	tests := []struct {
		name   string
		period time.Duration
		length int
	}{
		{"both zero", 0, 0},
		{"negative length", time.Second, -1},
		{"negative period", -time.Second, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b batches
			bc := NewBatchConsumer("invalid", reflextest.NewCursorStore(), b.fn, tc.period, tc.length)
			if err := bc.Reset(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer bc.Stop()
			for i := range 3 {
				if err := bc.Consume(t.Context(), &reflex.Event{ID: "1"}); !errors.Is(err, ErrInvalidBatchConfig) {
					t.Fatalf("Consume #%d = %v, want ErrInvalidBatchConfig", i, err)
				}
			}
		})
	}
}

// TestBatchPeriod: a batch is processed in the background when the period
// since its first event's timestamp is over; an event already older than
// the period waits 100ms.
func TestBatchPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		log := reflextest.NewLog()
		done := make(chan time.Time, 10)
		var got recorder
		bc := NewBatchConsumer("periodic", store, func(ctx context.Context, b Batch) error {
			for _, e := range b {
				got.add(e.ID)
			}
			done <- time.Now()
			return nil
		}, time.Second, 0)
		spec := NewBatchSpec(log.Stream, bc)
		ctx, cancel := context.WithCancel(t.Context())
		runErr := make(chan error, 1)
		go func() { runErr <- reflex.Run(ctx, spec) }()

		start := time.Now()
		log.Append(reflex.Event{}, reflex.Event{})
		time.Sleep(500 * time.Millisecond)
		log.Append(reflex.Event{})
		if at := (<-done).Sub(start); at != time.Second {
			t.Errorf("first batch processed after %v, want 1s (period from the first event)", at)
		}
		if got, want := got.got(), ids(1, 3); !slices.Equal(got, want) {
			t.Errorf("processed %q, want %q", got, want)
		}
		synctest.Wait()
		if c := store.Cursor("periodic"); c != "3" {
			t.Errorf("cursor = %q, want 3", c)
		}

		// An event older than the period waits the 100ms minimum.
		start = time.Now()
		log.Append(reflex.Event{Timestamp: start.Add(-time.Hour)})
		if at := (<-done).Sub(start); at != minBatchWait {
			t.Errorf("old event processed after %v, want %v", at, minBatchWait)
		}
		cancel()
		if err := <-runErr; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		if err := spec.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBatchShortPeriod: a batch waits for its period, not for the 100ms
// minimum, when the period has not passed yet: 100 events with a 1ms
// period, each sent once the previous batch is done, take 100ms, and an
// event half a period old waits the other half.
func TestBatchShortPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := reflextest.NewLog()
		done := make(chan time.Time, 1)
		bc := NewBatchConsumer("short", reflextest.NewCursorStore(), func(ctx context.Context, b Batch) error {
			done <- time.Now()
			return nil
		}, time.Millisecond, 0)
		spec := NewBatchSpec(log.Stream, bc)
		ctx, cancel := context.WithCancel(t.Context())
		runErr := make(chan error, 1)
		go func() { runErr <- reflex.Run(ctx, spec) }()

		start := time.Now()
		for i := range 100 {
			sent := time.Now()
			log.Append(reflex.Event{})
			if at := (<-done).Sub(sent); at != time.Millisecond {
				t.Fatalf("batch %d processed %v after its event, want 1ms (the period)", i+1, at)
			}
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Errorf("100 batches with a 1ms period took %v, want 100ms", d)
		}

		bc2 := NewBatchConsumer("half", reflextest.NewCursorStore(), func(ctx context.Context, b Batch) error {
			done <- time.Now()
			return nil
		}, time.Second, 0)
		if err := bc2.Reset(t.Context()); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		if err := bc2.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: sent.Add(-500 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		if at := (<-done).Sub(sent); at != 500*time.Millisecond {
			t.Errorf("event half a period old processed after %v, want 500ms", at)
		}
		_ = bc2.Stop()
		cancel()
		<-runErr
		_ = spec.Stop()
	})
}

// TestBatchLengthFailure: a failed length-triggered batch fails Run, leaves
// the cursor at the previous batch, and the next run processes the failed
// batch again without duplicating the earlier one.
func TestBatchLengthFailure(t *testing.T) {
	store := reflextest.NewCursorStore()
	var seen recorder
	failing := true
	bc := NewBatchConsumer("batcher", store, func(ctx context.Context, b Batch) error {
		if failing && b[0].ID == "5" {
			return errTest
		}
		for _, e := range b {
			seen.add(e.ID)
		}
		return nil
	}, 0, 4)
	spec := NewBatchSpec(newLog(12).Stream, bc, reflex.WithStreamToHead())
	if err := reflex.Run(t.Context(), spec); !errors.Is(err, errTest) {
		t.Fatalf("Run = %v, want %v", err, errTest)
	}
	if c := store.Cursor("batcher"); c != "4" {
		t.Fatalf("cursor = %q, want 4", c)
	}
	// Without a Reset the consumer stays failed.
	if err := bc.Consume(t.Context(), &reflex.Event{ID: "9"}); !errors.Is(err, ErrBatchState) || !errors.Is(err, errTest) {
		t.Fatalf("Consume after failure = %v, want ErrBatchState wrapping the cause", err)
	}
	failing = false
	runToHead(t, spec)
	if got, want := seen.got(), ids(1, 12); !slices.Equal(got, want) {
		t.Errorf("processed %q, want %q (each once)", got, want)
	}
	if c := store.Cursor("batcher"); c != "12" {
		t.Errorf("cursor = %q, want 12", c)
	}
}

// TestBatchPeriodFailure: a failed background batch makes the next Consume
// fail with ErrBatchState; the next run recovers.
func TestBatchPeriodFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		log := reflextest.NewLog()
		var fail atomic.Bool
		fail.Store(true)
		var seen recorder
		bc := NewBatchConsumer("periodic", store, func(ctx context.Context, b Batch) error {
			if fail.Load() {
				return errTest
			}
			for _, e := range b {
				seen.add(e.ID)
			}
			return nil
		}, time.Second, 0)
		spec := NewBatchSpec(log.Stream, bc)
		runErr := make(chan error, 1)
		go func() { runErr <- reflex.Run(t.Context(), spec) }()
		log.Append(reflex.Event{})
		time.Sleep(2 * time.Second) // the batch fails in the background
		log.Append(reflex.Event{})
		err := <-runErr
		if !errors.Is(err, ErrBatchState) || !errors.Is(err, errTest) {
			t.Fatalf("Run = %v, want ErrBatchState wrapping %v", err, errTest)
		}
		if c := store.Cursor("periodic"); c != "" {
			t.Fatalf("cursor = %q, want none", c)
		}

		fail.Store(false)
		ctx, cancel := context.WithCancel(t.Context())
		go func() { runErr <- reflex.Run(ctx, spec) }()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got, want := seen.got(), ids(1, 2); !slices.Equal(got, want) {
			t.Errorf("processed %q, want %q", got, want)
		}
		if c := store.Cursor("periodic"); c != "2" {
			t.Errorf("cursor = %q, want 2", c)
		}
		cancel()
		<-runErr
		_ = spec.Stop()
	})
}

func TestBatchAckErrors(t *testing.T) {
	errSet, errFlush := errors.New("set"), errors.New("flush")
	for name, faults := range map[string]reflextest.Faults{
		"set":   {Set: func(string, string) error { return errSet }},
		"flush": {Flush: func() error { return errFlush }},
	} {
		t.Run(name, func(t *testing.T) {
			var b batches
			bc := NewBatchConsumer("batcher", reflextest.NewCursorStore(reflextest.WithFaults(faults)), b.fn, 0, 2)
			err := reflex.Run(t.Context(), NewBatchSpec(newLog(4).Stream, bc, reflex.WithStreamToHead()))
			if !errors.Is(err, errSet) && !errors.Is(err, errFlush) {
				t.Fatalf("Run = %v, want the store's error", err)
			}
		})
	}
}

func TestBatchConsumeWithoutReset(t *testing.T) {
	var b batches
	bc := NewBatchConsumer("p", reflextest.NewCursorStore(), b.fn, time.Second, 0)
	if err := bc.Consume(t.Context(), &reflex.Event{ID: "1"}); !errors.Is(err, ErrBatchState) {
		t.Fatalf("Consume without Reset = %v, want ErrBatchState", err)
	}
	// A length-only consumer needs no background goroutine.
	store := reflextest.NewCursorStore()
	bc = NewBatchConsumer("l", store, b.fn, 0, 1)
	if err := bc.Consume(t.Context(), &reflex.Event{ID: "1"}); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if store.Cursor("l") != "1" {
		t.Errorf("cursor = %q, want 1", store.Cursor("l"))
	}
}

func TestBatchStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b batches
		bc := NewBatchConsumer("p", reflextest.NewCursorStore(), b.fn, time.Second, 0)
		if err := bc.Stop(); err != nil { // before any Reset
			t.Fatal(err)
		}
		if err := bc.Reset(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := bc.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now()}); err != nil {
			t.Fatal(err)
		}
		_ = bc.Stop()
		_ = bc.Stop()
		time.Sleep(time.Minute)
		if b.n.Load() != 0 {
			t.Error("a stopped consumer processed a batch")
		}
		if err := bc.Consume(t.Context(), &reflex.Event{ID: "2"}); !errors.Is(err, ErrBatchState) {
			t.Errorf("Consume after Stop = %v, want ErrBatchState", err)
		}
	})
}

// TestBatchBufferGauge: the buffer-length metric follows the buffer.
func TestBatchBufferGauge(t *testing.T) {
	var b batches
	bc := NewBatchConsumer("gauge_test", reflextest.NewCursorStore(), b.fn, 0, 3)
	for i, want := range []float64{1, 2, 0, 1} {
		if err := bc.Consume(t.Context(), &reflex.Event{ID: ids(i+1, i+1)[0]}); err != nil {
			t.Fatal(err)
		}
		if got := batchGauge(t, "gauge_test"); got != want {
			t.Errorf("after event %d: buffer length = %v, want %v", i+1, got, want)
		}
	}
	if err := bc.Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := batchGauge(t, "gauge_test"); got != 0 {
		t.Errorf("after Reset: buffer length = %v, want 0", got)
	}
}

// TestBatchExactlyOnceAcrossRestarts runs a batch spec under RunForeverCtx
// while runs keep failing and being cancelled; every event is processed
// exactly once.
func TestBatchExactlyOnceAcrossRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 200
		store := reflextest.NewCursorStore()
		log := newLog(n)
		counts := make(map[string]int)
		ctx, cancel := context.WithCancel(t.Context())
		bc := NewBatchConsumer("once", store, func(_ context.Context, b Batch) error {
			for _, e := range b {
				counts[e.ID]++
			}
			if b[len(b)-1].ID == ids(n, n)[0] {
				cancel()
			}
			return nil
		}, 300*time.Millisecond, 7)

		var recvs atomic.Int32
		var runCancel context.CancelFunc
		log.SetRecvHook(func(ctx context.Context, e *reflex.Event) error {
			switch recvs.Add(1) % 13 {
			case 0:
				return errTest // fails the run
			case 5:
				runCancel() // cancels the run
			case 9:
				time.Sleep(time.Second) // lets the period trigger fire
			}
			return nil
		})
		getCtx := func(ctx context.Context) (context.Context, error) {
			var c context.Context
			c, runCancel = context.WithCancel(ctx)
			return c, nil
		}
		if err := RunForeverCtx(ctx, getCtx, NewBatchSpec(log.Stream, bc)); !errors.Is(err, context.Canceled) {
			t.Fatalf("RunForeverCtx = %v", err)
		}
		for i := 1; i <= n; i++ {
			if c := counts[ids(i, i)[0]]; c != 1 {
				t.Errorf("event %d processed %d times, want 1", i, c)
			}
		}
	})
}

// batchGauge returns the buffer-length metric of the batch consumer name.
func batchGauge(t *testing.T, name string) float64 {
	t.Helper()
	return gaugeValue(t, "reflex_rpatterns_batch_consumer_buffer_length", name)
}

// gaugeValue returns the value of the gauge family for consumer name.
func gaugeValue(t *testing.T, family, name string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer_name" && l.GetValue() == name {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s series for %q", family, name)
	return 0
}

// TestBatchStopCancelsBatch: Stop cancels a background batch in progress
// and waits for it.
func TestBatchStopCancelsBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		var batchErr error
		bc := NewBatchConsumer("slow", reflextest.NewCursorStore(), func(ctx context.Context, b Batch) error {
			close(started)
			<-ctx.Done()
			batchErr = ctx.Err()
			return batchErr
		}, time.Second, 0)
		if err := bc.Reset(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := bc.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now()}); err != nil {
			t.Fatal(err)
		}
		<-started
		_ = bc.Stop()
		if !errors.Is(batchErr, context.Canceled) {
			t.Fatalf("batch ended with %v, want context.Canceled", batchErr)
		}
	})
}
