package rpatterns

import (
	"context"

	"github.com/seed-e488ba2e/reflex"
)

// AckEvent is an event delivered by an AckConsumer. The consumer's cursor
// moves past it only when Ack is called.
type AckEvent struct {
	reflex.Event

	store        reflex.CursorStore
	consumerName string
}

// Ack sets the consumer's cursor to the event's ID and flushes the cursor
// store, returning the store's error. Events may be acknowledged out of
// order, but a later Ack of an older event moves the cursor back (and the
// store may reject it), so acknowledge in stream order. It is safe for
// concurrent use if the store is.
func (e *AckEvent) Ack(ctx context.Context) error {
	return ack(ctx, e.store, e.consumerName, e.ID)
}

// ack sets the cursor of consumer name to id in store and flushes it.
func ack(ctx context.Context, store reflex.CursorStore, name, id string) error {
	if err := store.SetCursor(ctx, name, id); err != nil {
		return err
	}
	return store.Flush(ctx)
}

// AckConsumerFunc is the logic of an AckConsumer. It is an alias of the
// function type, so any func(context.Context, *AckEvent) error is one.
type AckConsumerFunc = func(ctx context.Context, e *AckEvent) error

// AckFunc is AckConsumerFunc.
//
// Deprecated: Use AckConsumerFunc, the name luno/reflex uses.
type AckFunc = AckConsumerFunc

// AckConsumer is a consumer whose cursor moves only when its logic
// acknowledges events (AckEvent.Ack). Run it with NewAckSpec.
type AckConsumer struct {
	name  string
	store reflex.CursorStore
	fn    AckConsumerFunc
	opts  []reflex.ConsumerOption
}

var _ reflex.Consumer = (*AckConsumer)(nil)

// NewAckConsumer returns a consumer named name that passes each event to fn
// as an AckEvent acknowledged into store. opts configure the instrumented
// consumer that NewAckSpec builds around it (filters, recovery, metrics).
// It panics if an option is nil, a programming error.
func NewAckConsumer(name string, store reflex.CursorStore, fn AckConsumerFunc, opts ...reflex.ConsumerOption) *AckConsumer {
	return newAckConsumer("NewAckConsumer", name, store, fn, opts)
}

// newAckConsumer is NewAckConsumer for the function named caller.
func newAckConsumer(caller, name string, store reflex.CursorStore, fn AckConsumerFunc, opts []reflex.ConsumerOption) *AckConsumer {
	mustOptions(caller, "consumer option", opts)
	return &AckConsumer{name: name, store: store, fn: fn, opts: opts}
}

// Name returns the consumer's name.
func (c *AckConsumer) Name() string { return c.name }

// Consume wraps e as an AckEvent and calls the consumer's logic. It applies
// none of the consumer options; NewAckSpec does.
func (c *AckConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	return c.fn(ctx, &AckEvent{Event: *e, store: c.store, consumerName: c.name})
}

// NewAckSpec returns a spec that runs ac, instrumented with its consumer
// options, over stream. Run's per-event SetCursor is dropped: the cursor
// moves only on AckEvent.Ack. GetCursor and Flush use ac's store. It
// panics if a stream option is nil.
func NewAckSpec(stream reflex.StreamFunc, ac *AckConsumer, opts ...reflex.StreamOption) reflex.Spec {
	return newSpec("NewAckSpec", stream, noSetStore{ac.store}, ac.instrumented(), opts)
}

// instrumented returns ac wrapped by reflex.NewConsumer with its options.
func (c *AckConsumer) instrumented() reflex.Consumer {
	return reflex.NewConsumer(c.name, c.Consume, c.opts...)
}
