package rblob_test

import (
	"context"
	"fmt"
	"io"

	"gocloud.dev/blob/memblob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// ExampleBucket_Stream streams a bucket of JSON objects to its head. Event
// IDs are cursors: key|NN|offset, and key|eof for an object's last record.
func ExampleBucket_Stream() {
	ctx := context.Background()
	raw := memblob.OpenBucket(nil)
	defer raw.Close()
	_ = raw.WriteAll(ctx, "2026/05/01/a", []byte(`{"user":1}`+"\n"+`{"user":2}`+"\n"), nil)
	_ = raw.WriteAll(ctx, "2026/05/02/a", []byte(`{"user":3}`), nil)

	bucket := rblob.NewBucket("example", raw)
	cl, err := bucket.Stream(ctx, "", reflex.WithStreamToHead())
	if err != nil {
		fmt.Println(err)
		return
	}
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			break
		} else if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(e.ID, string(e.MetaData))
	}

	// Resume after a cursor.
	cl, _ = bucket.Stream(ctx, "2026/05/01/a|01|0", reflex.WithStreamToHead())
	e, _ := cl.Recv()
	fmt.Println("resumed at", e.ID)
	// Output:
	// 2026/05/01/a|01|0 {"user":1}
	// 2026/05/01/a|eof {"user":2}
	// 2026/05/02/a|eof {"user":3}
	// resumed at 2026/05/01/a|eof
}

type orderEvent int

func (t orderEvent) ReflexType() int { return int(t) }

// ExampleArchiver archives a stream into a bucket and replays it. The
// archiver sets its own cursor, only once events are written.
func ExampleArchiver() {
	ctx := context.Background()
	events := reflextest.NewLog() // stands in for an rsql events table
	for i := range 5 {
		events.Append(reflex.Event{ForeignID: fmt.Sprint("order-", i), Type: orderEvent(1 + i%2)})
	}

	raw := memblob.OpenBucket(nil)
	defer raw.Close()
	archiver := rblob.NewArchiver(raw, "orders-archive", rblob.WithArchiveMaxEvents(2))
	defer archiver.Close()
	cursors := reflextest.NewCursorStore()

	err := reflex.Run(ctx, archiver.Spec(events.Stream, cursors, reflex.WithStreamToHead()))
	fmt.Println(err)
	fmt.Println("cursor before flush:", cursors.Cursor("orders-archive"))
	_ = archiver.Flush(ctx) // write the last, partial object
	fmt.Println("cursor after flush:", cursors.Cursor("orders-archive"))

	cl, _ := rblob.NewBucket("orders", raw).Stream(ctx, "", reflex.WithStreamToHead())
	for {
		e, err := cl.Recv()
		if err != nil {
			break
		}
		orig, _ := rblob.DecodeArchived(e)
		fmt.Println(e.ID, "=> event", orig.ID, orig.ForeignID, orig.Type.ReflexType())
	}
	// Output:
	// recv error: the event stream has reached the current head
	// cursor before flush: 4
	// cursor after flush: 5
	// 00000000000000000001.jsonl|01|0 => event 1 order-0 1
	// 00000000000000000001.jsonl|eof => event 2 order-1 2
	// 00000000000000000003.jsonl|01|0 => event 3 order-2 1
	// 00000000000000000003.jsonl|eof => event 4 order-3 2
	// 00000000000000000005.jsonl|eof => event 5 order-4 1
}

// ExampleBucket_StreamArchived replays the history an Archiver wrote as
// the original events, from any event ID: the stream opens the object that
// holds the next event and none before it.
func ExampleBucket_StreamArchived() {
	ctx := context.Background()
	events := reflextest.NewLog() // stands in for an rsql events table
	for i := range 5 {
		events.Append(reflex.Event{ForeignID: fmt.Sprint("order-", i), Type: orderEvent(1 + i%2), MetaData: []byte("paid")})
	}
	raw := memblob.OpenBucket(nil)
	defer raw.Close()
	archiver := rblob.NewArchiver(raw, "orders-archive", rblob.WithArchiveMaxEvents(2))
	defer archiver.Close()
	_ = reflex.Run(ctx, archiver.Spec(events.Stream, reflextest.NewCursorStore(), reflex.WithStreamToHead()))
	_ = archiver.Flush(ctx)

	bucket := rblob.NewBucket("orders", raw)
	cl, err := bucket.StreamArchived(ctx, "2", reflex.WithStreamToHead()) // after event 2
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.(io.Closer).Close()
	for {
		e, err := cl.Recv()
		if err != nil {
			fmt.Println("head reached:", reflex.IsHeadReachedErr(err))
			break
		}
		fmt.Println(e.ID, e.ForeignID, e.Type.ReflexType(), string(e.MetaData))
	}
	// Output:
	// 3 order-2 1 paid
	// 4 order-3 2 paid
	// 5 order-4 1 paid
	// head reached: true
}

// ExampleParseCursor shows the cursor forms.
func ExampleParseCursor() {
	for _, s := range []string{"logs/a|02|10", "logs/a|eof", "logs/a|7"} {
		c, err := rblob.ParseCursor(s)
		fmt.Printf("key %s offset %d eof %v (%v): %s\n", c.Key, c.Offset, c.EOF, err, c)
	}
	// Output:
	// key logs/a offset 10 eof false (<nil>): logs/a|02|10
	// key logs/a offset 0 eof true (<nil>): logs/a|eof
	// key logs/a offset 7 eof false (<nil>): logs/a|01|7
}
