package compat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

// The rpatterns API as code written against luno/reflex uses it: each
// function assigned to a variable of its luno/reflex type, each type used
// as luno/reflex declares it. Where this module returns a concrete type
// that luno/reflex returns as an interface (MemCursorStore,
// ReadThroughCursorStore), the result is assigned to the interface.
var (
	// Ack consumers.
	_ func(string, reflex.CursorStore, rpatterns.AckConsumerFunc, ...reflex.ConsumerOption) *rpatterns.AckConsumer                        = rpatterns.NewAckConsumer
	_ func(string, reflex.CursorStore, func(context.Context, *rpatterns.AckEvent) error, ...reflex.ConsumerOption) *rpatterns.AckConsumer = rpatterns.NewAckConsumer
	_ func(reflex.StreamFunc, *rpatterns.AckConsumer, ...reflex.StreamOption) reflex.Spec                                                 = rpatterns.NewAckSpec
	_ func(*rpatterns.AckEvent, context.Context) error                                                                                    = (*rpatterns.AckEvent).Ack
	_ reflex.Consumer                                                                                                                     = (*rpatterns.AckConsumer)(nil)

	// Batch consumers.
	_ func(string, reflex.CursorStore, func(context.Context, rpatterns.Batch) error, time.Duration, int, ...reflex.ConsumerOption) *rpatterns.BatchConsumer = rpatterns.NewBatchConsumer
	_ func(reflex.StreamFunc, *rpatterns.BatchConsumer, ...reflex.StreamOption) reflex.Spec                                                                 = rpatterns.NewBatchSpec
	_ func(*rpatterns.BatchConsumer, context.Context) error                                                                                                 = (*rpatterns.BatchConsumer).Reset
	_ func(*rpatterns.BatchConsumer) error                                                                                                                  = (*rpatterns.BatchConsumer).Stop
	_ func(*rpatterns.BatchConsumer) string                                                                                                                 = (*rpatterns.BatchConsumer).Name
	_ func(*rpatterns.BatchConsumer, context.Context, *reflex.Event) error                                                                                  = (*rpatterns.BatchConsumer).Consume
	_ error                                                                                                                                                 = rpatterns.ErrBatchState

	// Concurrent consumers: Reset takes no context.
	_ func(reflex.CursorStore, reflex.Consumer, int) *rpatterns.ConcurrentConsumer               = rpatterns.NewConcurrentConsumer
	_ func(reflex.StreamFunc, *rpatterns.ConcurrentConsumer, ...reflex.StreamOption) reflex.Spec = rpatterns.NewConcurrentSpec
	_ func(*rpatterns.ConcurrentConsumer) error                                                  = (*rpatterns.ConcurrentConsumer).Reset
	_ interface {
		reflex.Consumer
		Reset() error
	} = (*rpatterns.ConcurrentConsumer)(nil)

	// Sharding and parallel consumers.
	_ func(string, int, ...rpatterns.ParallelOption) []rpatterns.ConsumerShard                                                                      = rpatterns.ConsumerShards
	_ func(rpatterns.ConsumerShard) rpatterns.EventFilter                                                                                           = rpatterns.ConsumerShard.GetFilter
	_ func(rpatterns.ConsumerShard, reflex.CursorStore, func(context.Context, *rpatterns.AckEvent) error, ...reflex.ConsumerOption) reflex.Consumer = rpatterns.ParallelAckConsumer
	_ func(rpatterns.HashOption) rpatterns.ParallelOption                                                                                           = rpatterns.WithHashOption
	_ func(func(*reflex.Event) ([]byte, error)) rpatterns.ParallelOption                                                                            = rpatterns.WithHashFn
	_ func(func(string, int, int) string) rpatterns.ParallelOption                                                                                  = rpatterns.WithNameFormatter
	_ func(...reflex.StreamOption) rpatterns.ParallelOption                                                                                         = rpatterns.WithStreamOpts
	_ func(rpatterns.ShardConsumerOpts) rpatterns.ParallelOption                                                                                    = rpatterns.WithConsumerSpecificOpts
	//lint:ignore SA1019 luno/reflex users call Parallel and ParallelAck; they compile, deprecated.
	_ func(func(int) context.Context, func(int) reflex.Consumer, int, reflex.StreamFunc, reflex.CursorStore, ...rpatterns.ParallelOption) = rpatterns.Parallel
	//lint:ignore SA1019 see above.
	_ func(func(int) context.Context, func(int) rpatterns.AckConsumer, int, reflex.StreamFunc, ...rpatterns.ParallelOption) = rpatterns.ParallelAck
	_                                                                                                                       = []rpatterns.HashOption{rpatterns.HashOptionEventID, rpatterns.HashOptionEventType, rpatterns.HashOptionEventForeignID, rpatterns.HashOptionCustomHashFn}

	// Poller: NewPoller returns a Poller value, options are func(*Poller).
	_ func(rpatterns.PollFunc, ...func(*rpatterns.Poller)) rpatterns.Poller                                = rpatterns.NewPoller
	_ func(rpatterns.Poller, context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) = rpatterns.Poller.Stream
	_ func(time.Duration) func(*rpatterns.Poller)                                                          = rpatterns.WithPollBackoff

	// Cursor stores.
	_ func(string, string) rpatterns.MemOpt = rpatterns.WithMemCursor
	_ func(string, int64) rpatterns.MemOpt  = rpatterns.WithMemCursorInt

	// GapSequence: CurrentMax has a value receiver.
	_ func() *rpatterns.GapSequence             = rpatterns.NewGapSequence
	_ func(rpatterns.GapSequence) int64         = rpatterns.GapSequence.CurrentMax
	_ func(*rpatterns.GapSequence, int64)       = (*rpatterns.GapSequence).Doing
	_ func(*rpatterns.GapSequence, int64)       = (*rpatterns.GapSequence).Done
	_ func(func() context.Context, reflex.Spec) = rpatterns.RunForever

	// Other consumers, specs and helpers.
	_ func(string, int, reflex.ConsumerFunc, reflex.ErrorInsertFunc, ...reflex.ConsumerOption) reflex.Consumer = rpatterns.NewDeadLetterConsumer
	_ func(reflex.StreamFunc, reflex.CursorStore, reflex.Consumer, ...reflex.StreamOption) reflex.Spec         = rpatterns.NewBootstrapSpec
	_ func(context.Context, reflex.StreamFunc, func() (bool, error), string, ...reflex.EventType) error        = rpatterns.Await
)

// TestRpatterns uses the values the way a luno/reflex user's code does.
func TestRpatterns(t *testing.T) {
	ctx := t.Context()

	// MemOpt and the stores, held as reflex.CursorStore.
	opts := []rpatterns.MemOpt{rpatterns.WithMemCursor("a", "1"), rpatterns.WithMemCursorInt("b", 2)}
	var store reflex.CursorStore = rpatterns.MemCursorStore(opts...)
	store = rpatterns.ReadThroughCursorStore(store, rpatterns.MemCursorStore())
	if c, err := store.GetCursor(ctx, "b"); err != nil || c != "2" {
		t.Fatalf("GetCursor = %q, %v; want 2", c, err)
	}

	// AckConsumerFunc and BatchConsumeFn as named function types.
	var ack rpatterns.AckConsumerFunc = func(ctx context.Context, e *rpatterns.AckEvent) error { return e.Ack(ctx) }
	ac := rpatterns.NewAckConsumer("acker", store, ack)
	var batch rpatterns.BatchConsumeFn = func(context.Context, rpatterns.Batch) error { return nil }
	bc := rpatterns.NewBatchConsumer("batcher", store, batch, 0, 2)
	// BatchConsumer embeds *AckConsumer.
	var embedded *rpatterns.AckConsumer = bc.AckConsumer
	if bc.Name() != "batcher" || embedded.Name() != "batcher" {
		t.Errorf("names %q, %q; want batcher", bc.Name(), embedded.Name())
	}
	if err := bc.Stop(); err != nil {
		t.Fatal(err)
	}

	// EventFilter and ShardConsumerOpts.
	shards := rpatterns.ConsumerShards("s", 2)
	var filter rpatterns.EventFilter = shards[0].GetFilter()
	if _, err := filter(&reflex.Event{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	var perShard rpatterns.ShardConsumerOpts = func(string) []reflex.ConsumerOption { return nil }
	_ = rpatterns.ParallelSpecs("s", 2, reflex.NewMockStream(nil, errors.New("end")), store,
		func(context.Context, *reflex.Event) error { return nil }, rpatterns.WithConsumerSpecificOpts(perShard))

	// Consumers built from function literals.
	fn := func(context.Context, *reflex.Event) error { return nil }
	_ = rpatterns.ParallelConsumer(shards[0], fn)
	_ = rpatterns.NewBestEffortConsumer("best", 3, fn)
	//lint:ignore SA1019 deprecated in luno/reflex too; it must still compile.
	_ = rpatterns.NewBootstrapConsumable(reflex.NewMockStream(nil, errors.New("end")), store)

	// ParallelAckConsumer returns a reflex.Consumer (an *AckConsumer).
	var pc reflex.Consumer = rpatterns.ParallelAckConsumer(shards[1], store, ack)
	_ = rpatterns.NewAckSpec(reflex.NewMockStream(nil, errors.New("end")), pc.(*rpatterns.AckConsumer))
	_ = rpatterns.NewAckSpec(reflex.NewMockStream(nil, errors.New("end")), ac)

	// ConcurrentConsumer.Reset() error.
	cc := rpatterns.NewConcurrentConsumer(store, reflex.NewConsumer("conc", func(context.Context, *reflex.Event) error { return nil }), 4)
	if err := cc.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := cc.Stop(); err != nil {
		t.Fatal(err)
	}

	// NewPoller with WithPollBackoff and WithSleep(t, ...), used as a
	// Poller value.
	poll := func(context.Context, string, ...reflex.StreamOption) ([]reflex.Event, error) {
		return []reflex.Event{{ID: "1"}}, nil
	}
	var p rpatterns.Poller = rpatterns.NewPoller(poll, rpatterns.WithPollBackoff(time.Second),
		rpatterns.WithSleep(t, func(d time.Duration) <-chan time.Time { return time.After(d) }))
	var stream reflex.StreamFunc = p.Stream
	cl, err := stream(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := cl.Recv(); err != nil || e.ID != "1" {
		t.Fatalf("Recv = %v, %v; want event 1", e, err)
	}

	// GapSequence.CurrentMax on a value.
	seq := rpatterns.NewGapSequence()
	seq.Doing(1)
	seq.Done(1)
	if got := (*seq).CurrentMax(); got != 1 {
		t.Errorf("CurrentMax = %d, want 1", got)
	}
}
