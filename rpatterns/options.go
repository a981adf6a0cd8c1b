package rpatterns

import (
	"fmt"

	"github.com/seed-e488ba2e/reflex"
)

// mustOptions panics, naming the function fn and the kind of option, if an
// option of opts is nil: a programming error, caught when the value is
// built rather than when an event is consumed.
func mustOptions[F ~func(C), C any](fn, kind string, opts []F) {
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("rpatterns: %s: %s %d is nil", fn, kind, i))
		}
	}
}

// newSpec is reflex.NewSpec for the function named fn, which panics with
// its own name if a stream option is nil.
func newSpec(fn string, stream reflex.StreamFunc, store reflex.CursorStore, c reflex.Consumer, opts []reflex.StreamOption) reflex.Spec {
	mustOptions(fn, "stream option", opts)
	return reflex.NewSpec(stream, store, c, opts...)
}

// newConsumer is reflex.NewConsumer for the function named fn, which
// panics with its own name if a consumer option is nil.
func newConsumer(fn, name string, consume reflex.ConsumerFunc, opts []reflex.ConsumerOption) reflex.Consumer {
	mustOptions(fn, "consumer option", opts)
	return reflex.NewConsumer(name, consume, opts...)
}
