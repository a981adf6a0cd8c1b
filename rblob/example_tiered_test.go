package rblob_test

import (
	"context"
	"fmt"

	"gocloud.dev/blob/memblob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// ExampleBucket_StreamTiered reads the whole history of a table whose
// first events were archived and trimmed: events 1 to 3 come from the
// archive, the others from the table, in one stream whose cursors are
// event IDs.
func ExampleBucket_StreamTiered() {
	ctx := context.Background()
	table := reflextest.NewLog() // stands in for an rsql events table
	for i := range 5 {
		table.Append(reflex.Event{ForeignID: fmt.Sprint("order-", i), Type: orderEvent(1)})
	}

	raw := memblob.OpenBucket(nil)
	defer raw.Close()
	archiver := rblob.NewArchiver(raw, "orders-archive")
	defer archiver.Close()
	_ = reflex.Run(ctx, archiver.Spec(table.Stream, reflextest.NewCursorStore(), reflex.WithStreamToHead()))
	_ = archiver.Flush(ctx)

	// With rsql: func(ctx context.Context) (int64, error) { return events.TrimmedThrough(ctx, db) }
	trimmed := func(context.Context) (int64, error) { return 3, nil }
	stream := rblob.NewBucket("orders", raw).StreamTiered(table.Stream, trimmed)

	for _, after := range []string{"", "4"} {
		cl, err := stream(ctx, after, reflex.WithStreamToHead())
		if err != nil {
			panic(err)
		}
		for {
			e, err := cl.Recv()
			if err != nil {
				fmt.Println(err)
				break
			}
			fmt.Println("event", e.ID, e.ForeignID)
		}
	}
	// Output:
	// event 1 order-0
	// event 2 order-1
	// event 3 order-2
	// event 4 order-3
	// event 5 order-4
	// the event stream has reached the current head
	// event 5 order-4
	// the event stream has reached the current head
}
