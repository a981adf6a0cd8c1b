package rpatterns

import (
	"context"
	"strings"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// TestNilOptions: a nil option is a programming error: every constructor
// panics at once with an "rpatterns:" message naming itself, instead of
// dereferencing nil later or panicking in package reflex.
func TestNilOptions(t *testing.T) {
	var (
		store   = reflextest.NewCursorStore()
		stream  = reflextest.NewLog().Stream
		fn      = func(context.Context, *reflex.Event) error { return nil }
		ackFn   = func(context.Context, *AckEvent) error { return nil }
		batchFn = func(context.Context, Batch) error { return nil }
		inner   = reflex.NewConsumer("c", fn)
		ac      = NewAckConsumer("a", store, ackFn)
		getCtx  = func(int) context.Context { return context.Background() }
		shard   = ConsumerShards("s", 2)[0]
	)
	tests := []struct {
		name string
		call func()
	}{
		{"ConsumerShards", func() { ConsumerShards("s", 2, nil) }},
		{"ParallelSpecs", func() { ParallelSpecs("s", 2, stream, store, fn, WithHashOption(HashOptionEventID), nil) }},
		{"ParallelSpecs", func() { ParallelSpecs("s", 2, stream, store, fn, WithStreamOpts(nil)) }},
		{"Parallel", func() { Parallel(getCtx, func(int) reflex.Consumer { return inner }, 2, stream, store, nil) }},
		{"ParallelAck", func() { ParallelAck(getCtx, func(int) AckConsumer { return *ac }, 2, stream, nil) }},
		{"ParallelConsumer", func() { ParallelConsumer(shard, fn, nil) }},
		{"ParallelAckConsumer", func() { ParallelAckConsumer(shard, store, ackFn, nil) }},
		{"NewAckConsumer", func() { NewAckConsumer("a", store, ackFn, nil) }},
		{"NewAckSpec", func() { NewAckSpec(stream, ac, nil) }},
		{"NewBatchConsumer", func() { NewBatchConsumer("b", store, batchFn, 0, 1, nil) }},
		{"NewBatchSpec", func() { NewBatchSpec(stream, NewBatchConsumer("b", store, batchFn, 0, 1), nil) }},
		{"NewConcurrentSpec", func() { NewConcurrentSpec(stream, NewConcurrentConsumer(store, inner, 1), nil) }},
		{"NewKeyedConsumer", func() { NewKeyedConsumer(store, inner, 1, nil) }},
		{"NewKeyedSpec", func() { NewKeyedSpec(stream, NewKeyedConsumer(store, inner, 1), nil) }},
		{"NewBootstrapSpec", func() { NewBootstrapSpec(stream, store, inner, nil) }},
		{"NewBootstrapConsumable", func() { NewBootstrapConsumable(stream, store, nil) }},
		{"NewBestEffortConsumer", func() { NewBestEffortConsumer("b", 1, fn, nil) }},
		{"NewDeadLetterConsumer", func() {
			NewDeadLetterConsumer("d", 1, fn, func(context.Context, string, string, string) error { return nil }, nil)
		}},
		{"MemCursorStore", func() { MemCursorStore(WithMemCursor("a", "1"), nil) }},
		{"NewPoller", func() {
			NewPoller(func(context.Context, string, ...reflex.StreamOption) ([]reflex.Event, error) { return nil, nil }, nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if want := "rpatterns: " + tc.name + ": "; !strings.HasPrefix(msg, want) {
					t.Errorf("panic %v, want a message starting %q", r, want)
				}
			}()
			tc.call()
		})
	}
}
