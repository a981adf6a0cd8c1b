package rpatterns

import (
	"context"
	"sync/atomic"

	"github.com/seed-e488ba2e/reflex"
)

// NewBootstrapSpec returns a spec like reflex.NewSpec(stream, store,
// consumer, opts...) except that a consumer without a cursor starts at the
// head of the stream (WithStreamFromHead) instead of its beginning: a new
// consumer sees only new events. Once the consumer has a cursor, runs
// resume from it as usual. It panics if an option is nil.
func NewBootstrapSpec(stream reflex.StreamFunc, store reflex.CursorStore, consumer reflex.Consumer, opts ...reflex.StreamOption) reflex.Spec {
	bs := &bootstrapStore{CursorStore: store}
	return newSpec("NewBootstrapSpec", bs.wrap(stream), bs, consumer, opts)
}

// NewBootstrapConsumable returns a Consumable whose Consume runs
// NewBootstrapSpec(stream, store, consumer, opts...) with the Consume call's
// options appended. It panics if an option is nil.
//
// Deprecated: Use NewBootstrapSpec and reflex.Run.
func NewBootstrapConsumable(stream reflex.StreamFunc, store reflex.CursorStore, opts ...reflex.StreamOption) reflex.Consumable {
	mustOptions("NewBootstrapConsumable", "stream option", opts)
	return bootstrapConsumable{stream: stream, store: store, opts: opts}
}

type bootstrapConsumable struct {
	stream reflex.StreamFunc
	store  reflex.CursorStore
	opts   []reflex.StreamOption
}

func (b bootstrapConsumable) Consume(ctx context.Context, c reflex.Consumer, opts ...reflex.StreamOption) error {
	all := append(append([]reflex.StreamOption(nil), b.opts...), opts...)
	return reflex.Run(ctx, NewBootstrapSpec(b.stream, b.store, c, all...))
}

// bootstrapStore remembers whether the last GetCursor found no cursor.
type bootstrapStore struct {
	reflex.CursorStore
	empty atomic.Bool
}

func (s *bootstrapStore) GetCursor(ctx context.Context, name string) (string, error) {
	c, err := s.CursorStore.GetCursor(ctx, name)
	if err != nil {
		return "", err
	}
	s.empty.Store(c == "")
	return c, nil
}

func (s *bootstrapStore) wrap(stream reflex.StreamFunc) reflex.StreamFunc {
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		if s.empty.Load() {
			opts = append(append([]reflex.StreamOption(nil), opts...), reflex.WithStreamFromHead())
		}
		return stream(ctx, after, opts...)
	}
}
