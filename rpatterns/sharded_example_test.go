package rpatterns_test

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

func ExampleRunLeased() {
	// Every replica runs the same call; one at a time consumes. In
	// production the leases and cursors are rsql tables in one database.
	leases := rpatterns.NewMemLeaseStore()
	cursors := rpatterns.MemCursorStore()
	log := orders(3)

	ctx, cancel := context.WithCancel(context.Background())
	projector := reflex.NewConsumer("projector", func(ctx context.Context, e *reflex.Event) error {
		fmt.Println("project", e.ForeignID)
		if e.ID == "3" {
			cancel() // stop the example once the log is consumed
		}
		return nil
	})
	err := rpatterns.RunLeased(ctx, leases, log.Stream, cursors, projector)
	cursor, _ := cursors.GetCursor(context.Background(), "projector")
	fmt.Println(err, "cursor", cursor)
	// Output:
	// project o1
	// project o2
	// project o3
	// context canceled cursor 3
}

func ExampleRunSharded() {
	leases := rpatterns.NewMemLeaseStore()
	cursors := rpatterns.MemCursorStore()
	log := orders(6)

	var (
		mu   sync.Mutex
		seen []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	fn := func(ctx context.Context, e *reflex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e.ForeignID)
		return nil
	}
	// Stop the example once both shards' cursors have passed the log's
	// last event (each shard moves its cursor past the other's events).
	shards := rpatterns.ConsumerShards("invoicer", 2, rpatterns.WithHashOption(rpatterns.HashOptionEventForeignID))
	store := stopAtEnd{CursorStore: cursors, shards: shards, last: "6", stop: cancel}
	// Two shards by foreign ID: this process is the only member, so it
	// runs both. Run the same call in other processes to share them.
	err := rpatterns.RunSharded(ctx, leases, "invoicer", 2, log.Stream, store, fn)
	slices.Sort(seen)
	fmt.Println(err, seen)
	for _, s := range shards {
		c, _ := cursors.GetCursor(context.Background(), s.Name)
		fmt.Println(s.Name, "at", c)
	}
	// Output:
	// context canceled [o1 o2 o3 o4 o5 o6]
	// invoicer_1_of_2 at 6
	// invoicer_2_of_2 at 6
}

func ExampleHoldLease() {
	// A job that must run in one process at a time, such as a gap filler.
	leases := rpatterns.NewMemLeaseStore()
	err := rpatterns.HoldLease(context.Background(), leases, "gap-filler", func(ctx context.Context, l rpatterns.Lease) error {
		fmt.Println("holding", l.Name, "epoch", l.Epoch)
		return nil // returning releases the lease and ends HoldLease
	})
	fmt.Println(err)
	// Output:
	// holding gap-filler epoch 1
	// <nil>
}

// stopAtEnd is a cursor store that calls stop once the cursor of every
// shard is last.
type stopAtEnd struct {
	reflex.CursorStore
	shards []rpatterns.ConsumerShard
	last   string
	stop   func()
}

func (s stopAtEnd) SetCursor(ctx context.Context, name, cursor string) error {
	if err := s.CursorStore.SetCursor(ctx, name, cursor); err != nil {
		return err
	}
	for _, sh := range s.shards {
		if c, err := s.CursorStore.GetCursor(ctx, sh.Name); err != nil || c != s.last {
			return err
		}
	}
	s.stop()
	return nil
}
