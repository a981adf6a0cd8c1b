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
	if err := e.store.SetCursor(ctx, e.consumerName, e.ID); err != nil {
		return err
	}
	return e.store.Flush(ctx)
}

// AckFunc is the logic of an AckConsumer.
type AckFunc func(ctx context.Context, e *AckEvent) error

// AckConsumer is a consumer whose cursor moves only when its logic
// acknowledges events (AckEvent.Ack). Run it with NewAckSpec.
type AckConsumer struct {
	name  string
	store reflex.CursorStore
	fn    AckFunc
	opts  []reflex.ConsumerOption
}

var _ reflex.Consumer = (*AckConsumer)(nil)

// NewAckConsumer returns a consumer named name that passes each event to fn
// as an AckEvent acknowledged into store. opts configure the instrumented
// consumer that NewAckSpec builds around it (filters, recovery, metrics).
func NewAckConsumer(name string, store reflex.CursorStore, fn AckFunc, opts ...reflex.ConsumerOption) *AckConsumer {
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
// moves only on AckEvent.Ack. GetCursor and Flush use ac's store.
func NewAckSpec(stream reflex.StreamFunc, ac *AckConsumer, opts ...reflex.StreamOption) reflex.Spec {
	c := reflex.NewConsumer(ac.name, ac.Consume, ac.opts...)
	return reflex.NewSpec(stream, noSetStore{ac.store}, c, opts...)
}
