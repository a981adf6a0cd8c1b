package reflex

import (
	"context"
	"fmt"
)

// ConsumeFunc streams events to a consumer until an error occurs.
//
// Deprecated: Use Spec and Run.
type ConsumeFunc func(ctx context.Context, c Consumer, opts ...StreamOption) error

// Consumable consumes a stream with a cursor store.
//
// Deprecated: Use Spec and Run.
type Consumable interface {
	// Consume blocks while events are streamed to c. It always returns a
	// non-nil error.
	Consume(ctx context.Context, c Consumer, opts ...StreamOption) error
}

// NewConsumable returns a Consumable whose Consume runs
// Run(ctx, NewSpec(stream, store, c, append(opts, consumeOpts...)...)).
// It panics, as NewSpec does, if an option is nil.
//
// Deprecated: Use NewSpec and Run.
func NewConsumable(stream StreamFunc, store CursorStore, opts ...StreamOption) Consumable {
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("reflex: NewConsumable: stream option %d is nil", i))
		}
	}
	return consumable{stream: stream, store: store, opts: opts}
}

type consumable struct {
	stream StreamFunc
	store  CursorStore
	opts   []StreamOption
}

func (c consumable) Consume(ctx context.Context, con Consumer, opts ...StreamOption) error {
	all := append(append([]StreamOption(nil), c.opts...), opts...)
	return Run(ctx, NewSpec(c.stream, c.store, con, all...))
}
