package rpatterns_test

import (
	"context"
	"fmt"

	"golang.org/x/time/rate"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

type exampleType int

func (t exampleType) ReflexType() int { return int(t) }

// ExampleNewFanInSpec feeds one consumer from the streams of two
// services; each source keeps its own cursor under "name/source".
func ExampleNewFanInSpec() {
	users, orders := reflextest.NewLog(), reflextest.NewLog() // stand in for two services' streams
	users.Append(reflex.Event{ForeignID: "alice", Type: exampleType(1)})
	orders.Append(reflex.Event{ForeignID: "order-7", Type: exampleType(2)}, reflex.Event{ForeignID: "order-8", Type: exampleType(2)})

	seen := 0
	consumer := reflex.NewConsumer("audit", func(ctx context.Context, e *reflex.Event) error {
		seen++
		return nil
	})
	store := rpatterns.MemCursorStore()
	spec := rpatterns.NewFanInSpec([]rpatterns.FanInSource{
		{Name: "users", Stream: users.Stream},
		{Name: "orders", Stream: orders.Stream},
	}, store, consumer, reflex.WithStreamToHead())

	err := reflex.Run(context.Background(), spec)
	fmt.Println(reflex.IsHeadReachedErr(err), seen)
	for _, src := range []string{"users", "orders"} {
		cursor, _ := store.GetCursor(context.Background(), rpatterns.FanInCursorName("audit", src))
		fmt.Printf("%s: %s\n", rpatterns.FanInCursorName("audit", src), cursor)
	}
	// Output:
	// true 3
	// audit/users: 1
	// audit/orders: 2
}

// ExampleNewDedupeConsumer skips events consumed already (by ID here),
// and ExampleNewRateLimitConsumer bounds the rate: the two stack.
func ExampleNewDedupeConsumer() {
	events := reflextest.NewLog()
	events.Append(reflex.Event{ID: "1", ForeignID: "a", Type: exampleType(1)})
	inner := reflex.NewConsumer("mailer", func(ctx context.Context, e *reflex.Event) error {
		fmt.Println("mail for", e.ForeignID)
		return nil
	})
	c := rpatterns.NewDedupeConsumer(
		rpatterns.NewRateLimitConsumer(inner, rate.NewLimiter(rate.Inf, 1)),
		rpatterns.WithDedupeSize(1000))
	for range 2 { // the same event twice, as after a restart whose cursor was lost
		_ = reflex.Run(context.Background(), reflex.NewSpec(events.Stream, rpatterns.MemCursorStore(), c, reflex.WithStreamToHead()))
	}
	// Output:
	// mail for a
}
