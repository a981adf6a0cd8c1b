package rpatterns

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

const benchEvents = 1_000_000

var (
	benchLogOnce sync.Once
	benchLog     *reflextest.Log
)

// millionEvents returns a shared in-memory log of 1,000,000 events.
func millionEvents() *reflextest.Log {
	benchLogOnce.Do(func() {
		benchLog = reflextest.NewLog()
		events := make([]reflex.Event, benchEvents)
		for i := range events {
			events[i] = reflex.Event{ForeignID: strconv.Itoa(i % 1000), Type: testType(1)}
		}
		benchLog.Append(events...)
	})
	return benchLog
}

// benchSpec runs the spec built by newSpec over the million events once per
// iteration, and reports events/s and allocations per event.
func benchSpec(b *testing.B, newSpec func(store reflex.CursorStore) (reflex.Spec, string)) {
	millionEvents()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		store := MemCursorStore()
		spec, name := newSpec(store)
		if err := reflex.Run(context.Background(), spec); !reflex.IsHeadReachedErr(err) {
			b.Fatalf("Run = %v", err)
		}
		if err := spec.Stop(); err != nil {
			b.Fatal(err)
		}
		if c, _ := store.GetCursor(context.Background(), name); c != strconv.Itoa(benchEvents) {
			b.Fatalf("cursor = %q, want %d", c, benchEvents)
		}
		n += benchEvents
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "allocs/event")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n), "B/event")
}

// BenchmarkBatchConsumer: batches of 1,000 events, instrumented consumer,
// in-memory log and cursor store. The batch period (1 hour) runs the
// background goroutine without firing: a period batch at the head would
// leave the last events buffered (the log's events are older than any
// shorter period, so they would wait only the 100ms minimum).
func BenchmarkBatchConsumer(b *testing.B) {
	benchSpec(b, func(store reflex.CursorStore) (reflex.Spec, string) {
		bc := NewBatchConsumer("bench_batch", store, func(context.Context, Batch) error { return nil }, time.Hour, 1000)
		return NewBatchSpec(millionEvents().Stream, bc, reflex.WithStreamToHead()), "bench_batch"
	})
}

// BenchmarkConcurrentConsumer: up to 64 events in flight, instrumented inner
// consumer, in-memory log and cursor store.
func BenchmarkConcurrentConsumer(b *testing.B) {
	benchSpec(b, func(store reflex.CursorStore) (reflex.Spec, string) {
		inner := reflex.NewConsumer("bench_concurrent", func(context.Context, *reflex.Event) error { return nil })
		return NewConcurrentSpec(millionEvents().Stream, NewConcurrentConsumer(store, inner, 64), reflex.WithStreamToHead()), "bench_concurrent"
	})
}

// BenchmarkKeyedConsumer: 8 workers, instrumented inner consumer.
func BenchmarkKeyedConsumer(b *testing.B) {
	benchSpec(b, func(store reflex.CursorStore) (reflex.Spec, string) {
		inner := reflex.NewConsumer("bench_keyed", func(context.Context, *reflex.Event) error { return nil })
		kc := NewKeyedConsumer(store, inner, 8)
		// The workers end with the run, dropping queued events: at the head,
		// wait for them before ending the run.
		drained := func() bool {
			kc.p.prog.mu.Lock()
			defer kc.p.prog.mu.Unlock()
			return kc.p.prog.seq.CurrentMax() == benchEvents
		}
		stream := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
			cl, err := millionEvents().Stream(ctx, after, opts...)
			return drainClient{cl, drained}, err
		}
		return NewKeyedSpec(stream, kc, reflex.WithStreamToHead()), "bench_keyed"
	})
}

type drainClient struct {
	reflex.StreamClient
	drained func() bool
}

func (c drainClient) Recv() (*reflex.Event, error) {
	e, err := c.StreamClient.Recv()
	if reflex.IsHeadReachedErr(err) {
		for !c.drained() {
			runtime.Gosched()
		}
	}
	return e, err
}
