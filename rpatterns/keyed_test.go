package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// orderChecker records, per foreign ID, the order in which events are
// processed.
type orderChecker struct {
	mu    sync.Mutex
	byFID map[string][]int64
	total int
}

func (o *orderChecker) fn(ctx context.Context, e *reflex.Event) error {
	jitterWork()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byFID == nil {
		o.byFID = make(map[string][]int64)
	}
	o.byFID[e.ForeignID] = append(o.byFID[e.ForeignID], e.IDInt())
	o.total++
	return nil
}

func (o *orderChecker) check(t *testing.T, wantTotal int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for fid, seq := range o.byFID {
		if !slices.IsSorted(seq) {
			t.Errorf("events of %s processed out of order: %v", fid, seq)
		}
	}
	if o.total != wantTotal {
		t.Errorf("processed %d events, want %d", o.total, wantTotal)
	}
}

func TestKeyedConsumerOrder(t *testing.T) {
	const n = 3000
	log := reflextest.NewLog()
	for i := range n {
		log.Append(reflex.Event{ForeignID: "k" + strconv.Itoa(i*7%23)})
	}
	store := reflextest.NewCursorStore()
	var oc orderChecker
	kc := NewKeyedConsumer(store, reflex.NewConsumer("keyed", oc.fn), 4, WithKeyedQueueLen(8))
	spec := NewKeyedSpec(log.Stream, kc)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- reflex.Run(ctx, spec) }()
	waitCursor(t, store, "keyed", n)
	cancel()
	<-res
	if err := spec.Stop(); err != nil {
		t.Fatal(err)
	}
	oc.check(t, n)
}

// waitCursor polls until the cursor reaches want, failing if it stops
// moving for a minute (a bound on progress, not on the work's length).
func waitCursor(t *testing.T, store *reflextest.CursorStore, name string, want int64) {
	t.Helper()
	err := testguard.Poll(time.Minute, time.Millisecond, "cursor of "+name, func() (int64, bool, error) {
		c, _ := strconv.ParseInt(store.Cursor(name), 10, 64)
		return c, c >= want, nil
	})
	if err != nil {
		t.Fatalf("cursor never reached %d: %v", want, err)
	}
}

// twoKeys returns two keys that the FNV-1 hash puts on different workers of
// n.
func twoKeys(n int) (string, string) {
	a := "a"
	for i := 0; ; i++ {
		b := "b" + strconv.Itoa(i)
		if fnv1(a)%uint32(n) != fnv1(b)%uint32(n) {
			return a, b
		}
	}
}

// TestKeyedConcurrentKeysAndCursor: while an event of one key blocks,
// later events of another key complete, but the cursor stays below the
// blocked event.
func TestKeyedConcurrentKeysAndCursor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := twoKeys(2)
		gate := make(chan struct{})
		var seen recorder
		store := reflextest.NewCursorStore()
		kc := NewKeyedConsumer(store, reflex.NewConsumer("keyed", func(ctx context.Context, e *reflex.Event) error {
			if e.ID == "2" {
				<-gate
			}
			seen.add(e.ID)
			return nil
		}), 2)
		if err := kc.Reset(t.Context()); err != nil {
			t.Fatal(err)
		}
		events := []reflex.Event{{ID: "1", ForeignID: a}, {ID: "2", ForeignID: a}, {ID: "3", ForeignID: b}, {ID: "4", ForeignID: a}, {ID: "5", ForeignID: b}}
		for _, e := range events {
			if err := kc.Consume(t.Context(), &e); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := sortedInts(seen.got()); !slices.Equal(got, []string{"1", "3", "5"}) {
			t.Errorf("processed %q while event 2 blocks, want 1, 3 and 5", got)
		}
		if c := store.Cursor("keyed"); c != "1" {
			t.Errorf("cursor = %q while event 2 blocks, want 1", c)
		}
		close(gate)
		synctest.Wait()
		if c := store.Cursor("keyed"); c != "5" {
			t.Fatalf("cursor = %q, want 5", c)
		}
		if got := seen.got(); len(got) != 5 || !slices.Equal(got[3:], []string{"2", "4"}) {
			t.Fatalf("processed %q, want 1, 3, 5 (any order), then 2, 4", got)
		}
		_ = kc.Stop()
	})
}

// TestKeyedFailure: a failed event stops its key (later events of the key
// do not run), holds the cursor below it and surfaces on a later Consume;
// the next run replays from the failed event in order.
func TestKeyedFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := twoKeys(2)
		var fail atomic.Bool
		fail.Store(true)
		var seen recorder
		store := reflextest.NewCursorStore()
		kc := NewKeyedConsumer(store, reflex.NewConsumer("keyed", func(ctx context.Context, e *reflex.Event) error {
			if e.ID == "2" && fail.Load() {
				return errTest
			}
			seen.add(e.ID)
			return nil
		}), 2)
		log := reflextest.NewLog()
		log.Append(reflex.Event{ForeignID: a}, reflex.Event{ForeignID: a}, reflex.Event{ForeignID: b}, reflex.Event{ForeignID: a})
		spec := NewKeyedSpec(log.Stream, kc)
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() { res <- reflex.Run(ctx, spec) }()
		synctest.Wait()
		log.Append(reflex.Event{ForeignID: b}) // the next Consume reports the failure
		err := <-res
		if !errors.Is(err, errTest) {
			t.Fatalf("Run = %v, want %v", err, errTest)
		}
		if slices.Contains(seen.got(), "4") {
			t.Fatalf("event 4 of key %s ran after event 2 of the same key failed", a)
		}
		cancel()
		_ = spec.Stop()
		if c := store.Cursor("keyed"); c != "1" {
			t.Fatalf("cursor = %q, want 1", c)
		}

		fail.Store(false)
		ctx, cancel = context.WithCancel(t.Context())
		go func() { res <- reflex.Run(ctx, spec) }()
		synctest.Wait()
		cancel()
		<-res
		_ = spec.Stop()
		got := seen.got()
		if i, j := slices.Index(got, "2"), slices.Index(got, "4"); i < 0 || j < i {
			t.Fatalf("processed %q, want 2 before 4", got)
		}
		if c := store.Cursor("keyed"); c != "5" {
			t.Fatalf("cursor = %q, want 5", c)
		}
	})
}

func TestKeyedKeyFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var oc orderChecker
		store := reflextest.NewCursorStore()
		byType := func(e *reflex.Event) string { return fmt.Sprint(e.Type.ReflexType()) }
		kc := NewKeyedConsumer(store, reflex.NewConsumer("keyed", func(ctx context.Context, e *reflex.Event) error {
			// Record by type so the checker verifies per-type order.
			return oc.fn(ctx, &reflex.Event{ID: e.ID, ForeignID: byType(e)})
		}), 3, WithKeyFunc(byType), WithKeyFunc(nil))
		for i := 1; i <= 300; i++ {
			if err := kc.Consume(t.Context(), &reflex.Event{ID: strconv.Itoa(i), Type: testType(i % 7)}); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		oc.check(t, 300)
		_ = kc.Stop()
		if c := store.Cursor("keyed"); c != "300" {
			t.Errorf("cursor = %q, want 300", c)
		}
	})
}

func TestKeyedBadInput(t *testing.T) {
	kc := NewKeyedConsumer(reflextest.NewCursorStore(), reflex.NewConsumer("keyed", (&recorder{}).fn), 1)
	if err := kc.Consume(t.Context(), &reflex.Event{ID: "x"}); !errors.Is(err, ErrEventIDNotInt) {
		t.Errorf("Consume(non-int ID) = %v, want ErrEventIDNotInt", err)
	}
	_ = kc.Stop()
	for name, f := range map[string]func(){
		"workers 0": func() { NewKeyedConsumer(reflextest.NewCursorStore(), reflex.NewConsumer("k", (&recorder{}).fn), 0) },
		"queue len 0": func() {
			NewKeyedConsumer(reflextest.NewCursorStore(), reflex.NewConsumer("k", (&recorder{}).fn), 1, WithKeyedQueueLen(0))
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// TestKeyedFullQueue: Consume blocks while the key's queue is full and
// returns ctx.Err() when ctx ends.
func TestKeyedFullQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		kc := NewKeyedConsumer(reflextest.NewCursorStore(), reflex.NewConsumer("keyed_full", func(context.Context, *reflex.Event) error {
			<-gate
			return nil
		}), 1, WithKeyedQueueLen(2))
		// One event in the worker, two queued.
		for i := 1; i <= 3; i++ {
			if err := kc.Consume(t.Context(), &reflex.Event{ID: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() { res <- kc.Consume(ctx, &reflex.Event{ID: "4"}) }()
		synctest.Wait()
		select {
		case err := <-res:
			t.Fatalf("Consume on a full queue returned %v, want it to block", err)
		default:
		}
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("Consume = %v, want context.Canceled", err)
		}
		if g := gaugeValue(t, "reflex_rpatterns_keyed_consumer_in_flight", "keyed_full"); g != 3 {
			t.Errorf("in-flight gauge = %v, want 3", g)
		}
		close(gate)
		synctest.Wait()
		if g := gaugeValue(t, "reflex_rpatterns_keyed_consumer_in_flight", "keyed_full"); g != 0 {
			t.Errorf("in-flight gauge = %v after completion, want 0", g)
		}
		_ = kc.Stop()
		_ = kc.Stop()
	})
}

// TestKeyedLifecycle: Reset and Stop reach the inner consumer; Stop before
// use is safe; Consume after Stop starts new workers.
func TestKeyedLifecycle(t *testing.T) {
	store := reflextest.NewCursorStore()
	inner := &lifecycle{Consumer: reflex.NewConsumer("keyed", (&recorder{}).fn)}
	kc := NewKeyedConsumer(store, inner, 2)
	if err := kc.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := kc.Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := kc.Consume(t.Context(), &reflex.Event{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	waitCursor(t, store, "keyed", 1)
	_ = kc.Stop()
	if err := kc.Consume(t.Context(), &reflex.Event{ID: "2"}); err != nil {
		t.Fatalf("Consume after Stop = %v", err)
	}
	waitCursor(t, store, "keyed", 2)
	_ = kc.Stop()
	if inner.resets.Load() != 1 || inner.stops.Load() != 3 {
		t.Errorf("inner resets %d, stops %d; want 1, 3", inner.resets.Load(), inner.stops.Load())
	}
}
