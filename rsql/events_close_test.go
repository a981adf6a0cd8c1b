package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// fillerWaiting makes table's gap filler wait for an open transaction
// holding ID 2 (1 and 3 are committed) and returns once it does.
func fillerWaiting(t *testing.T, db *sql.DB, table *rsql.EventsTable) {
	t.Helper()
	checked := make(chan struct{}, 1)
	rsql.SetFillCheckHook(func() {
		select {
		case checked <- struct{}{}:
		default:
		}
	})
	t.Cleanup(func() { rsql.SetFillCheckHook(nil) })
	insertN(t, db, table, 1, 1)
	openTx(t, db, table, "2") // rolled back at cleanup
	insertN(t, db, table, 3, 1)
	deadline := time.After(guard)
	for {
		drain(t, table.ToStream(db), "") // detects the gap, offers it to the filler
		select {
		case <-checked:
			return
		case <-deadline:
			t.Fatal("the gap filler never checked the gap")
		case <-time.After(10 * time.Millisecond): // offered while the filler was busy: offer again
		}
	}
}

// TestCloseStopsGapFiller: Close stops the table's gap-serving goroutine,
// aborting a filler waiting for a transaction, and waits for it; it is
// idempotent and safe concurrently.
func TestCloseStopsGapFiller(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	fillerWaiting(t, db, table)
	listening := metrics.NewEventsTable(table.Name()).GapListening
	if value(listening) != 1 {
		t.Fatal("gap listening gauge is not 1 while filling")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := table.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait() // a filler waiting for the open transaction does not hold Close
	if value(listening) != 0 {
		t.Error("gap listening gauge is not 0 after Close")
	}
	if err := rsql.FillGaps(db, table); !errors.Is(err, rsql.ErrGapListenerStopped) {
		t.Errorf("FillGaps after Close: %v, want ErrGapListenerStopped", err)
	}
	if err := table.ListenGaps(func(rsql.Gap) {}); !errors.Is(err, rsql.ErrGapListenerStopped) {
		t.Errorf("ListenGaps after Close: %v, want ErrGapListenerStopped", err)
	}
	if err := table.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Inserts and streams still work; streams load unprepared.
	if _, err := table.Insert(t.Context(), db, "after", testType(1)); err != nil {
		t.Fatalf("Insert after Close: %v", err)
	}
	if got := drain(t, table.ToStream(db), "3"); !equal(ids(got), []string{"4"}) {
		t.Errorf("stream after Close past the gap: %v, want [4]", ids(got))
	}
	if got, err := table.LoadEvents(t.Context(), db, 2, 0); err != nil || len(got) != 2 {
		t.Errorf("LoadEvents after Close = %d events, %v; want 2", len(got), err)
	}
}

// TestCloseClone: a clone of a filled table runs its own filler, which the
// clone's Close stops without stopping the original's.
func TestCloseClone(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { table.Close() })
	clone := table.Clone()
	if err := clone.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rsql.FillGaps(db, clone); !errors.Is(err, rsql.ErrGapListenerStopped) {
		t.Errorf("FillGaps on a closed clone: %v, want ErrGapListenerStopped", err)
	}
	if err := table.ListenGaps(func(rsql.Gap) {}); err != nil {
		t.Errorf("ListenGaps on the original after the clone's Close: %v", err)
	}
	// A table that started nothing closes at once.
	if err := rsql.NewEventsTable("never_used").Close(); err != nil {
		t.Error(err)
	}
}

// TestCloseThenRecv: after Close, Recv returns at once an error wrapping
// context.Canceled, whatever the client was doing; Close is idempotent,
// safe concurrently, and returns nil.
func TestCloseThenRecv(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	insertN(t, db, table, 1, 12_000)
	for _, tc := range []struct {
		name string
		open func(t *testing.T) reflex.StreamClient
		recv int // events received before Close
	}{
		{"new", func(t *testing.T) reflex.StreamClient { return openStream(t, table, db, "") }, 0},
		{"catching up", func(t *testing.T) reflex.StreamClient { return openStream(t, table, db, "") }, 1500},
		{"at the head", func(t *testing.T) reflex.StreamClient { return openStream(t, table, db, "12000") }, -1},
		{"lazy", func(t *testing.T) reflex.StreamClient { return table.Stream(t.Context(), db, "") }, 0},
		{"invalid cursor", func(t *testing.T) reflex.StreamClient { return table.Stream(t.Context(), db, "abc") }, 0},
		{"from head", func(t *testing.T) reflex.StreamClient {
			return openStream(t, table, db, "", reflex.WithStreamFromHead())
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := tc.open(t)
			for range tc.recv {
				if _, err := cl.Recv(); err != nil {
					t.Fatal(err)
				}
			}
			blocked := make(chan error, 1)
			if tc.recv < 0 { // a Recv waiting at the head when Close is called
				waiting := make(chan struct{}, 1)
				rsql.SetBeforeWaitHook(func() {
					select {
					case waiting <- struct{}{}:
					default:
					}
				})
				defer rsql.SetBeforeWaitHook(nil)
				go func() {
					_, err := cl.Recv()
					blocked <- err
				}()
				<-waiting
			}
			closer := cl.(interface{ Close() error })
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					if err := closer.Close(); err != nil {
						t.Errorf("Close = %v, want nil", err)
					}
				})
			}
			wg.Wait()
			if tc.recv < 0 {
				if err := <-blocked; !errors.Is(err, context.Canceled) {
					t.Errorf("Recv waiting during Close = %v, want context.Canceled", err)
				}
			}
			for range 2 {
				if e, err := cl.Recv(); !errors.Is(err, context.Canceled) || e != nil {
					t.Errorf("Recv after Close = %v, %v; want context.Canceled", e, err)
				}
			}
			if err := closer.Close(); err != nil {
				t.Errorf("Close again = %v", err)
			}
		})
	}
}

// TestLastStreamStopsPoller: the release of the last stream of a head
// watcher cancels the poller's query and waits for the poller, so no poll
// outlives the streams (here the poll is blocked by a table lock).
func TestLastStreamStopsPoller(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db, rsql.WithEventsBackoff(5*time.Millisecond))
	insertN(t, db, table, 1, 1)
	var pollers atomic.Int64
	rsql.SetPollerHook(func(d int) { pollers.Add(int64(d)) })
	t.Cleanup(func() { rsql.SetPollerHook(nil) })
	waiting := make(chan struct{}, 1)
	rsql.SetBeforeWaitHook(func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	})
	t.Cleanup(func() { rsql.SetBeforeWaitHook(nil) })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cl, err := table.ToStream(db)(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := cl.Recv()
		done <- err
	}()
	<-waiting

	// Block the poll query: a session holding a write lock on the table.
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "LOCK TABLES "+table.Name()+" WRITE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "UNLOCK TABLES")
	waitFor(t, "a poll blocked by the lock", func() bool {
		var n int
		err := db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE ? AND STATE LIKE 'Waiting%'",
			"SELECT MAX(%"+table.Name()+"%").Scan(&n)
		return err == nil && n > 0
	})

	if err := cl.(interface{ Close() error }).Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv = %v, want context.Canceled", err)
	}
	if n := pollers.Load(); n != 0 {
		t.Errorf("%d pollers run after the last stream returned, want 0", n)
	}
	if n := rsql.ActiveWatchers(); n != 0 {
		t.Errorf("%d watchers remain, want 0", n)
	}
}
