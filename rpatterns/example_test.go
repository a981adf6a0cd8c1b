package rpatterns_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

type orderEvent int

const (
	OrderPlaced  orderEvent = 1
	OrderShipped orderEvent = 2
)

func (t orderEvent) ReflexType() int { return int(t) }

// orders returns a log with n events of type OrderPlaced for orders
// "o1".."on".
func orders(n int) *reflextest.Log {
	log := reflextest.NewLog()
	for i := 1; i <= n; i++ {
		log.Append(reflex.Event{ForeignID: "o" + strconv.Itoa(i), Type: OrderPlaced})
	}
	return log
}

func ExampleNewAckSpec() {
	cursors := rpatterns.MemCursorStore()
	var pending []*rpatterns.AckEvent
	ac := rpatterns.NewAckConsumer("invoicer", cursors, func(ctx context.Context, e *rpatterns.AckEvent) error {
		// Collect two events, then invoice them together and acknowledge the
		// last one: the cursor moves only on Ack.
		pending = append(pending, e)
		if len(pending) < 2 {
			return nil
		}
		fmt.Println("invoice", pending[0].ForeignID, pending[1].ForeignID)
		last := pending[1]
		pending = nil
		return last.Ack(ctx)
	})
	err := reflex.Run(context.Background(), rpatterns.NewAckSpec(orders(5).Stream, ac, reflex.WithStreamToHead()))
	cursor, _ := cursors.GetCursor(context.Background(), "invoicer")
	fmt.Println(reflex.IsHeadReachedErr(err), "cursor", cursor)
	// Output:
	// invoice o1 o2
	// invoice o3 o4
	// true cursor 4
}

func ExampleAwait() {
	log := reflextest.NewLog()
	listening := make(chan struct{})
	stream := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		defer close(listening)
		return log.Stream(ctx, after, opts...)
	}
	go func() {
		// Another service ships the order once Await listens.
		<-listening
		log.Append(reflex.Event{ForeignID: "o7", Type: OrderShipped})
	}()
	shipped := func() (bool, error) { return false, nil } // e.g. query the order's state
	err := rpatterns.Await(context.Background(), stream, shipped, "o7", OrderShipped)
	fmt.Println("shipped:", err == nil)
	// Output:
	// shipped: true
}

func ExampleNewBatchSpec() {
	cursors := rpatterns.MemCursorStore()
	bc := rpatterns.NewBatchConsumer("exporter", cursors, func(ctx context.Context, b rpatterns.Batch) error {
		fmt.Println("export", len(b), "events up to", b[len(b)-1].ID)
		return nil
	}, 0, 3) // batches of 3 events, no period
	spec := rpatterns.NewBatchSpec(orders(7).Stream, bc, reflex.WithStreamToHead())
	_ = reflex.Run(context.Background(), spec)
	_ = spec.Stop()
	cursor, _ := cursors.GetCursor(context.Background(), "exporter")
	fmt.Println("cursor", cursor) // event 7 waits for a full batch
	// Output:
	// export 3 events up to 3
	// export 3 events up to 6
	// cursor 6
}

func ExampleNewBestEffortConsumer() {
	c := rpatterns.NewBestEffortConsumer("notifier", 1, func(ctx context.Context, e *reflex.Event) error {
		if e.ForeignID == "o2" {
			return errors.New("mail server rejected the message")
		}
		fmt.Println("notified", e.ForeignID)
		return nil
	})
	cursors := rpatterns.MemCursorStore()
	spec := reflex.NewSpec(orders(3).Stream, cursors, c, reflex.WithStreamToHead())
	fmt.Println(reflex.Run(context.Background(), spec)) // o2 fails once ...
	fmt.Println(reflex.Run(context.Background(), spec)) // ... then is skipped
	// Output:
	// notified o1
	// consume error: mail server rejected the message
	// notified o3
	// recv error: the event stream has reached the current head
}

func ExampleNewBootstrapSpec() {
	log := orders(3) // history the new consumer does not need
	atHead := make(chan struct{})
	stream := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		defer close(atHead)
		return log.Stream(ctx, after, opts...)
	}
	consumed := make(chan struct{})
	c := reflex.NewConsumer("new-feature", func(ctx context.Context, e *reflex.Event) error {
		fmt.Println("consumed", e.ForeignID)
		close(consumed)
		return nil
	})
	cursors := rpatterns.MemCursorStore()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = reflex.Run(ctx, rpatterns.NewBootstrapSpec(stream, cursors, c))
	}()
	<-atHead
	log.Append(reflex.Event{ForeignID: "o4", Type: OrderPlaced})
	<-consumed
	cancel()
	<-done
	cursor, _ := cursors.GetCursor(context.Background(), "new-feature")
	fmt.Println("cursor", cursor)
	// Output:
	// consumed o4
	// cursor 4
}

func ExampleNewConcurrentSpec() {
	cursors := rpatterns.MemCursorStore()
	var mu sync.Mutex
	var done []string
	inner := reflex.NewConsumer("thumbnailer", func(ctx context.Context, e *reflex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		done = append(done, e.ForeignID)
		return nil
	})
	cc := rpatterns.NewConcurrentConsumer(cursors, inner, 4) // up to 4 at once, any order
	spec := rpatterns.NewConcurrentSpec(orders(6).Stream, cc, reflex.WithStreamToHead())
	_ = reflex.Run(context.Background(), spec)
	_ = spec.Stop() // waits for the events in flight and writes the cursor
	slices.Sort(done)
	cursor, _ := cursors.GetCursor(context.Background(), "thumbnailer")
	fmt.Println(done, "cursor", cursor)
	// Output:
	// [o1 o2 o3 o4 o5 o6] cursor 6
}

func ExampleNewKeyedSpec() {
	log := reflextest.NewLog()
	for i := range 9 {
		// Three orders, each placed and then shipped, interleaved.
		typ := OrderPlaced
		if i >= 3 {
			typ = OrderShipped
		}
		log.Append(reflex.Event{ForeignID: "o" + strconv.Itoa(i%3), Type: typ})
	}
	cursors := rpatterns.MemCursorStore()
	var mu sync.Mutex
	history := make(map[string][]int)
	all := make(chan struct{})
	inner := reflex.NewConsumer("order-sync", func(ctx context.Context, e *reflex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		history[e.ForeignID] = append(history[e.ForeignID], e.Type.ReflexType())
		if len(history["o0"])+len(history["o1"])+len(history["o2"]) == 9 {
			close(all)
		}
		return nil
	})
	// Orders are synced concurrently, but the events of each order in order.
	kc := rpatterns.NewKeyedConsumer(cursors, inner, 3)
	spec := rpatterns.NewKeyedSpec(log.Stream, kc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = reflex.Run(ctx, spec)
	}()
	<-all
	cancel()
	<-done
	_ = spec.Stop() // writes the final cursor
	cursor, _ := cursors.GetCursor(context.Background(), "order-sync")
	fmt.Println("cursor", cursor)
	fmt.Println(history["o0"], history["o1"], history["o2"])
	// Output:
	// cursor 9
	// [1 2 2] [1 2 2] [1 2 2]
}

func ExampleMemCursorStore() {
	cursors := rpatterns.MemCursorStore(rpatterns.WithMemCursorInt("reporter", 2))
	c := reflex.NewConsumer("reporter", func(ctx context.Context, e *reflex.Event) error {
		fmt.Println("report", e.ID)
		return nil
	})
	_ = reflex.Run(context.Background(), reflex.NewSpec(orders(4).Stream, cursors, c, reflex.WithStreamToHead()))
	// Output:
	// report 3
	// report 4
}

func ExampleReadThroughCursorStore() {
	ctx := context.Background()
	old := rpatterns.MemCursorStore(rpatterns.WithMemCursor("mailer", "41"))
	next := rpatterns.MemCursorStore()
	// Migrating stores: the first read copies the old cursor.
	store := rpatterns.ReadThroughCursorStore(next, old)
	c, _ := store.GetCursor(ctx, "mailer")
	copied, _ := next.GetCursor(ctx, "mailer")
	fmt.Println(c, copied)
	// Output:
	// 41 41
}

func ExampleNewDeadLetterConsumer() {
	record := func(ctx context.Context, consumerName, eventID, errMsg string) error {
		// In production: rsql.NewErrorsTable().ToErrorInsertFunc(db).
		fmt.Printf("dead letter: consumer=%s event=%s error=%q\n", consumerName, eventID, errMsg)
		return nil
	}
	c := rpatterns.NewDeadLetterConsumer("payments", 0, func(ctx context.Context, e *reflex.Event) error {
		if e.ForeignID == "o2" {
			return errors.New("card declined")
		}
		fmt.Println("paid", e.ForeignID)
		return nil
	}, record)
	err := reflex.Run(context.Background(), reflex.NewSpec(orders(3).Stream, rpatterns.MemCursorStore(), c, reflex.WithStreamToHead()))
	fmt.Println(reflex.IsHeadReachedErr(err))
	// Output:
	// paid o1
	// dead letter: consumer=payments event=2 error="card declined"
	// paid o3
	// true
}

func ExampleParallelSpecs() {
	cursors := rpatterns.MemCursorStore()
	var mu sync.Mutex
	seen := make(map[string]string)
	fn := func(ctx context.Context, e *reflex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen[e.ID] = e.ForeignID
		return nil
	}
	// Three consumers split the stream by event ID; run each, here one
	// after the other to the head (RunParallel runs them together).
	specs := rpatterns.ParallelSpecs("indexer", 3, orders(9).Stream, cursors, fn,
		rpatterns.WithStreamOpts(reflex.WithStreamToHead()))
	for _, s := range specs {
		_ = reflex.Run(context.Background(), s)
		c, _ := cursors.GetCursor(context.Background(), s.Name())
		fmt.Println(s.Name(), "cursor", c)
	}
	fmt.Println(len(seen), "events indexed once")
	// Output:
	// indexer_1_of_3 cursor 9
	// indexer_2_of_3 cursor 9
	// indexer_3_of_3 cursor 9
	// 9 events indexed once
}

func ExampleConsumerShards() {
	shards := rpatterns.ConsumerShards("mailer", 2, rpatterns.WithHashOption(rpatterns.HashOptionEventForeignID))
	for _, id := range []string{"100", "200", "100"} {
		for _, s := range shards {
			if ok, _ := s.GetFilter()(&reflex.Event{ForeignID: id}); ok {
				fmt.Println(id, "->", s.Name)
			}
		}
	}
	// Output:
	// 100 -> mailer_1_of_2
	// 200 -> mailer_2_of_2
	// 100 -> mailer_1_of_2
}

func ExampleNewPoller() {
	// A paged API with events 1..5, two per page.
	poll := func(ctx context.Context, after string, opts ...reflex.StreamOption) ([]reflex.Event, error) {
		from, _ := strconv.Atoi(after)
		var page []reflex.Event
		for i := from + 1; i <= 5 && len(page) < 2; i++ {
			page = append(page, reflex.Event{ID: strconv.Itoa(i)})
		}
		return page, nil
	}
	p := rpatterns.NewPoller(poll, rpatterns.WithPollBackoff(time.Second))
	c := reflex.NewConsumer("poller-demo", func(ctx context.Context, e *reflex.Event) error {
		fmt.Print(e.ID, " ")
		return nil
	})
	err := reflex.Run(context.Background(), reflex.NewSpec(p.Stream, rpatterns.MemCursorStore(), c, reflex.WithStreamToHead()))
	fmt.Println(reflex.IsHeadReachedErr(err))
	// Output:
	// 1 2 3 4 5 true
}

func ExampleRunForeverCtx() {
	log := orders(3)
	ctx, cancel := context.WithCancel(context.Background())
	c := reflex.NewConsumer("forever", func(ctx context.Context, e *reflex.Event) error {
		fmt.Println("consumed", e.ForeignID)
		if e.ID == "3" {
			cancel() // stop everything, e.g. on shutdown
		}
		return nil
	})
	err := rpatterns.RunForeverCtx(ctx, nil, reflex.NewSpec(log.Stream, rpatterns.MemCursorStore(), c))
	fmt.Println(err)
	// Output:
	// consumed o1
	// consumed o2
	// consumed o3
	// context canceled
}

func ExampleRunForever() {
	ctx, cancel := context.WithCancel(context.Background())
	c := reflex.NewConsumer("forever", func(ctx context.Context, e *reflex.Event) error {
		fmt.Println("consumed", e.ForeignID)
		cancel()
		return nil
	})
	// Returns once the context it gets from the function is done.
	rpatterns.RunForever(func() context.Context { return ctx }, reflex.NewSpec(orders(1).Stream, rpatterns.MemCursorStore(), c))
	fmt.Println("stopped")
	// Output:
	// consumed o1
	// stopped
}

func ExampleGapSequence() {
	seq := rpatterns.NewGapSequence()
	for _, id := range []int64{10, 11, 12, 15} { // 13 and 14 never happen
		seq.Doing(id)
	}
	seq.Done(11)
	fmt.Println(seq.CurrentMax()) // 10 is still running
	seq.Done(10)
	fmt.Println(seq.CurrentMax())
	seq.Done(15)
	seq.Done(12)
	fmt.Println(seq.CurrentMax())
	// Output:
	// 0
	// 11
	// 15
}

func ExampleRunParallel() {
	var mu sync.Mutex
	seen := 0
	ctx, cancel := context.WithCancel(context.Background())
	fn := func(ctx context.Context, e *reflex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if seen++; seen == 12 {
			cancel() // all consumed: shut down
		}
		return nil
	}
	specs := rpatterns.ParallelSpecs("indexer", 4, orders(12).Stream, rpatterns.MemCursorStore(), fn)
	err := rpatterns.RunParallel(ctx, specs) // blocks until ctx is done
	fmt.Println(seen, err)
	// Output:
	// 12 context canceled
}

func ExampleParallel() {
	const n = 2
	var mu sync.Mutex
	byConsumer := make(map[string]int)
	ctx, cancel := context.WithCancel(context.Background())
	all := make(chan struct{})
	// Parallel shards the stream itself: consumer m sees only shard m.
	rpatterns.Parallel(func(m int) context.Context { return ctx }, func(m int) reflex.Consumer {
		name := fmt.Sprintf("auditor_%d_of_%d", m+1, n)
		return reflex.NewConsumer(name, func(ctx context.Context, e *reflex.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if byConsumer[name]++; byConsumer["auditor_1_of_2"]+byConsumer["auditor_2_of_2"] == 6 {
				close(all)
			}
			return nil
		})
	}, n, orders(6).Stream, rpatterns.MemCursorStore(), rpatterns.WithHashOption(rpatterns.HashOptionEventForeignID))
	<-all
	cancel() // the goroutines return once their context is done
	mu.Lock()
	fmt.Println(byConsumer["auditor_1_of_2"] + byConsumer["auditor_2_of_2"])
	mu.Unlock()
	// Output:
	// 6
}
