package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// jitterWork yields a random number of times, so events complete in a
// scrambled order without sleeping.
func jitterWork() {
	for range rand.IntN(50) {
		runtime.Gosched()
	}
}

func TestConcurrentConsumer(t *testing.T) {
	const n = 1000
	store := reflextest.NewCursorStore()
	var seen recorder
	cc := NewConcurrentConsumer(store, reflex.NewConsumer("conc", func(ctx context.Context, e *reflex.Event) error {
		jitterWork()
		seen.add(e.ID)
		return nil
	}), 10)
	spec := NewConcurrentSpec(newLog(n).Stream, cc, reflex.WithStreamToHead())
	runToHead(t, spec)
	if err := spec.Stop(); err != nil {
		t.Fatal(err)
	}
	if c := store.Cursor("conc"); c != strconv.Itoa(n) {
		t.Errorf("cursor = %q, want %d", c, n)
	}
	if got := sortedInts(seen.got()); !slices.Equal(got, ids(1, n)) {
		t.Errorf("processed %d events, want each of 1..%d once", len(got), n)
	}
	if cc.Name() != "conc" {
		t.Errorf("Name = %q", cc.Name())
	}
}

// TestConcurrentGaps: missing IDs do not hold the cursor back.
func TestConcurrentGaps(t *testing.T) {
	log := reflextest.NewLog()
	for i := range 100 {
		if i != 70 {
			log.Append(reflex.Event{ID: strconv.Itoa(i)})
		}
	}
	store := reflextest.NewCursorStore()
	var seen recorder
	cc := NewConcurrentConsumer(store, reflex.NewConsumer("conc", seen.fn), 5)
	spec := NewConcurrentSpec(log.Stream, cc, reflex.WithStreamToHead())
	runToHead(t, spec)
	_ = spec.Stop()
	if c := store.Cursor("conc"); c != "99" {
		t.Errorf("cursor = %q, want 99", c)
	}
}

// TestConcurrentFailure: a failed event holds the cursor below it, a later
// Consume returns the failure, and the next run delivers it again.
func TestConcurrentFailure(t *testing.T) {
	store := reflextest.NewCursorStore()
	var fail atomic.Bool
	fail.Store(true)
	var seen recorder
	cc := NewConcurrentConsumer(store, reflex.NewConsumer("conc", func(ctx context.Context, e *reflex.Event) error {
		if e.ID == "50" && fail.Load() {
			return errTest
		}
		seen.add(e.ID)
		return nil
	}), 4)
	spec := NewConcurrentSpec(newLog(100).Stream, cc, reflex.WithStreamToHead())
	err := reflex.Run(t.Context(), spec)
	_ = spec.Stop() // waits for the events in flight
	if !errors.Is(err, errTest) {
		// The stream may reach the head before the failure is seen.
		if !reflex.IsHeadReachedErr(err) {
			t.Fatalf("Run = %v, want %v", err, errTest)
		}
		err = cc.Consume(t.Context(), &reflex.Event{ID: "101"})
	}
	if !errors.Is(err, errTest) {
		t.Fatalf("error after the failure = %v, want %v", err, errTest)
	}
	if want := "event 50"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the event (%q)", err, want)
	}
	if c := store.Cursor("conc"); c != "49" {
		t.Fatalf("cursor = %q, want 49", c)
	}

	fail.Store(false)
	runToHead(t, spec)
	_ = spec.Stop()
	if c := store.Cursor("conc"); c != "100" {
		t.Errorf("cursor = %q, want 100", c)
	}
	if got := seen.got(); !slices.Contains(got, "50") {
		t.Error("event 50 never processed")
	}
}

// TestConcurrentMaxInFlight: Consume blocks while maxInFlight events are in
// flight and returns ctx.Err() if ctx ends meanwhile.
func TestConcurrentMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var running, peak atomic.Int32
		cc := NewConcurrentConsumer(reflextest.NewCursorStore(), reflex.NewConsumer("conc", func(ctx context.Context, e *reflex.Event) error {
			if r := running.Add(1); r > peak.Load() {
				peak.Store(r)
			}
			<-gate
			running.Add(-1)
			return nil
		}), 3)
		defer cc.Stop()
		for i := 1; i <= 3; i++ {
			if err := cc.Consume(t.Context(), &reflex.Event{ID: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() { res <- cc.Consume(ctx, &reflex.Event{ID: "4"}) }()
		synctest.Wait()
		select {
		case err := <-res:
			t.Fatalf("Consume with 3 in flight returned %v, want it to block", err)
		default:
		}
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("blocked Consume = %v, want context.Canceled", err)
		}
		close(gate)
		if err := cc.Consume(t.Context(), &reflex.Event{ID: "5"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if p := peak.Load(); p != 3 {
			t.Errorf("peak concurrency = %d, want 3", p)
		}
	})
}

func TestConcurrentBadInput(t *testing.T) {
	cc := NewConcurrentConsumer(reflextest.NewCursorStore(), reflex.NewConsumer("conc", (&recorder{}).fn), 1)
	defer cc.Stop()
	if err := cc.Consume(t.Context(), &reflex.Event{ID: "abc"}); !errors.Is(err, ErrEventIDNotInt) {
		t.Errorf("Consume(non-int ID) = %v, want ErrEventIDNotInt", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewConcurrentConsumer(maxInFlight 0) did not panic")
		}
	}()
	NewConcurrentConsumer(reflextest.NewCursorStore(), reflex.NewConsumer("conc", (&recorder{}).fn), 0)
}

// TestConcurrentSetCursorError: a failing store surfaces on a later
// Consume, and the next Reset retries the write.
func TestConcurrentSetCursorError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failSet atomic.Bool
		failSet.Store(true)
		store := reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{Set: func(string, string) error {
			if failSet.Load() {
				return errTest
			}
			return nil
		}}))
		cc := NewConcurrentConsumer(store, reflex.NewConsumer("conc", (&recorder{}).fn), 1)
		if err := cc.ResetContext(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := cc.Consume(t.Context(), &reflex.Event{ID: "1"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // event 1 done, the cursor loop failed
		if err := cc.Consume(t.Context(), &reflex.Event{ID: "2"}); !errors.Is(err, errTest) {
			t.Fatalf("Consume = %v, want %v", err, errTest)
		}
		if err := cc.ResetContext(t.Context()); !errors.Is(err, errTest) {
			t.Fatalf("Reset with a failing store = %v, want %v", err, errTest)
		}
		failSet.Store(false)
		if err := cc.ResetContext(t.Context()); err != nil {
			t.Fatalf("Reset = %v", err)
		}
		if c := store.Cursor("conc"); c != "1" {
			t.Errorf("cursor = %q, want 1 (written by Reset)", c)
		}
		_ = cc.Stop()
	})
}

// TestConcurrentResetAndStop: Reset waits for work in flight and flushes;
// Stop is idempotent and stops the inner consumer.
func TestConcurrentResetAndStop(t *testing.T) {
	store := reflextest.NewCursorStore(reflextest.WithBuffering())
	inner := &lifecycle{Consumer: reflex.NewConsumer("conc", (&recorder{}).fn)}
	cc := NewConcurrentConsumer(store, inner, 2)
	if err := cc.Stop(); err != nil { // before any use
		t.Fatal(err)
	}
	if err := cc.ResetContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := cc.Consume(t.Context(), &reflex.Event{ID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	flushes := store.Flushes()
	if err := cc.ResetContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	if store.Flushes() != flushes+1 || store.Cursor("conc") != "3" {
		t.Errorf("after Reset: flushes %d (was %d), flushed cursor %q; want a flush of cursor 3", store.Flushes(), flushes, store.Cursor("conc"))
	}
	_ = cc.Stop()
	_ = cc.Stop()
	if inner.resets.Load() != 2 || inner.stops.Load() != 3 {
		t.Errorf("inner resets %d, stops %d; want 2, 3", inner.resets.Load(), inner.stops.Load())
	}
}

// lifecycle counts Reset and Stop calls.
type lifecycle struct {
	reflex.Consumer
	resets, stops atomic.Int32
}

func (l *lifecycle) Reset(context.Context) error { l.resets.Add(1); return nil }
func (l *lifecycle) Stop() error                 { l.stops.Add(1); return nil }

// strictStore returns a store that, like rsql's cursors table, rejects a
// cursor not greater than the stored one, and that fails SetCursor with
// errTest while failSet is true.
func strictStore(failSet *atomic.Bool) *reflextest.CursorStore {
	var store *reflextest.CursorStore
	store = reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{Set: func(name, cursor string) error {
		if failSet.Load() {
			return errTest
		}
		cur, _ := strconv.ParseInt(cursor, 10, 64)
		if old := store.Cursor(name); old != "" {
			if o, _ := strconv.ParseInt(old, 10, 64); cur <= o {
				return fmt.Errorf("cursor %s <= %s: not increasing", cursor, old)
			}
		}
		return nil
	}}))
	return store
}

// TestProgressNeverWritesBackwards: when a run starts from a cursor older
// than the one Reset writes for the previous run (a cursor write failed,
// or Run was called again without Spec.Stop), the events in between are
// delivered again but the cursor is never set below what was written. A
// store that rejects such cursors (as rsql's does) used to fail every
// later Run with a reset error.
func TestProgressNeverWritesBackwards(t *testing.T) {
	type lifeConsumer interface {
		reflex.Consumer
		reflex.ResetterCtx
		reflex.Stopper
	}
	for name, build := range map[string]func(reflex.CursorStore, reflex.Consumer) lifeConsumer{
		"concurrent": func(s reflex.CursorStore, c reflex.Consumer) lifeConsumer {
			return runCtxConsumer{NewConcurrentConsumer(s, c, 2)}
		},
		"keyed": func(s reflex.CursorStore, c reflex.Consumer) lifeConsumer { return NewKeyedConsumer(s, c, 2) },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var failSet atomic.Bool
				store := strictStore(&failSet)
				c := build(store, reflex.NewConsumer("c", (&recorder{}).fn))
				defer c.Stop()
				consume := func(from, to int) {
					t.Helper()
					for i := from; i <= to; i++ {
						if err := c.Consume(t.Context(), &reflex.Event{ID: strconv.Itoa(i), ForeignID: "f"}); err != nil {
							t.Fatalf("Consume(%d) = %v", i, err)
						}
						synctest.Wait()
					}
				}

				// Run 1: events 1..4 complete, but writing cursor 4 fails.
				if err := c.Reset(t.Context()); err != nil {
					t.Fatal(err)
				}
				consume(1, 3)
				failSet.Store(true)
				consume(4, 4)
				failSet.Store(false)

				// Run 2 read cursor 3 before its Reset wrote 4.
				if err := c.Reset(t.Context()); err != nil {
					t.Fatalf("Reset = %v", err)
				}
				if got := store.Cursor("c"); got != "4" {
					t.Fatalf("cursor after Reset = %q, want 4", got)
				}
				consume(4, 7) // 4 again, then new events
				if err := c.Reset(t.Context()); err != nil {
					t.Fatalf("second Reset = %v", err)
				}
				if got := store.Cursor("c"); got != "7" {
					t.Errorf("cursor = %q, want 7", got)
				}
				if sets := store.Sets("c"); !slices.IsSortedFunc(sets, func(a, b string) int {
					x, _ := strconv.Atoi(a)
					y, _ := strconv.Atoi(b)
					return x - y
				}) {
					t.Errorf("cursor sets %v move backwards", sets)
				}
			})
		})
	}
}

// TestConcurrentReset: Reset() takes no context, as in luno/reflex: after
// Reset the consumer processes events until Stop, which waits for the
// workers (synctest fails if one is left) and writes the final cursor.
func TestConcurrentReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		cc := NewConcurrentConsumer(store, reflex.NewConsumer("conc", (&recorder{}).fn), 8)
		if err := cc.Reset(); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 1000; i++ {
			if err := cc.Consume(t.Context(), &reflex.Event{ID: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := cc.Stop(); err != nil {
			t.Fatal(err)
		}
		if c := store.Cursor("conc"); c != "1000" {
			t.Errorf("cursor = %q, want 1000", c)
		}
	})
}

// TestConcurrentInPlainSpec: a ConcurrentConsumer in a spec built with
// reflex.NewSpec is reset by Run through Reset(); its goroutines live until
// Stop, which ends them.
func TestConcurrentInPlainSpec(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		cc := NewConcurrentConsumer(store, reflex.NewConsumer("conc", (&recorder{}).fn), 4)
		spec := reflex.NewSpec(newLog(50).Stream, store, cc, reflex.WithStreamToHead())
		runToHead(t, spec)
		if err := spec.Stop(); err != nil {
			t.Fatal(err)
		}
		if c := store.Cursor("conc"); c != "50" {
			t.Errorf("cursor = %q, want 50", c)
		}
	})
}

// TestWorkersOwnedWithoutReset: a Consume before any Reset starts the
// workers and the cursor loop; Stop ends them and waits (synctest fails
// the test if a goroutine is left), for both pooled consumers.
func TestWorkersOwnedWithoutReset(t *testing.T) {
	for name, build := range map[string]func(reflex.CursorStore) interface {
		reflex.Consumer
		reflex.Stopper
	}{
		"concurrent": func(s reflex.CursorStore) interface {
			reflex.Consumer
			reflex.Stopper
		} {
			return NewConcurrentConsumer(s, reflex.NewConsumer("w", (&recorder{}).fn), 3)
		},
		"keyed": func(s reflex.CursorStore) interface {
			reflex.Consumer
			reflex.Stopper
		} {
			return NewKeyedConsumer(s, reflex.NewConsumer("w", (&recorder{}).fn), 3)
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := reflextest.NewCursorStore()
				c := build(store)
				for i := 1; i <= 10; i++ {
					if err := c.Consume(t.Context(), &reflex.Event{ID: strconv.Itoa(i), ForeignID: strconv.Itoa(i % 3)}); err != nil {
						t.Fatal(err)
					}
				}
				synctest.Wait()
				if err := c.Stop(); err != nil {
					t.Fatal(err)
				}
				if err := c.Stop(); err != nil {
					t.Fatalf("second Stop = %v", err)
				}
				if got := store.Cursor("w"); got != "10" {
					t.Errorf("cursor = %q, want 10", got)
				}
			})
		})
	}
}
