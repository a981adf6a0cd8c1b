package rsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// queryCounter counts the loads and polls of tables by quoted name.
type queryCounter struct {
	mu sync.Mutex
	n  map[string]map[string]int
}

func countQueries(t *testing.T) *queryCounter {
	c := &queryCounter{n: make(map[string]map[string]int)}
	rsql.SetQueryHook(func(table, kind string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n[table] == nil {
			c.n[table] = make(map[string]int)
		}
		c.n[table][kind]++
	})
	t.Cleanup(func() { rsql.SetQueryHook(nil) })
	return c
}

func (c *queryCounter) get(table string) (loads, polls int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[table]["load"], c.n[table]["poll"]
}

// rawInsert inserts n events with plain SQL, as a writer in another
// process would: no NotifyFunc wakes anyone.
func rawInsert(t testing.TB, db *sql.DB, table string, n int) {
	t.Helper()
	if err := rawInsertErr(db, table, n); err != nil {
		t.Fatal(err)
	}
}

func rawInsertErr(db *sql.DB, table string, n int) error {
	for range n {
		if _, err := db.Exec("INSERT INTO " + table + " (foreign_id, timestamp, type) VALUES ('x', " + engineOf(db).now() + ", 1)"); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	return nil
}

// tailPhase runs consumers streams of table tailing from "", while
// batches of events are inserted with plain SQL at a fixed pace, and
// returns the queries issued for the table meanwhile. Every consumer must
// see every event in order.
func tailPhase(t *testing.T, db *sql.DB, table *rsql.EventsTable, consumers int, qc *queryCounter) (loads, polls int) {
	t.Helper()
	const (
		batches  = 10
		perBatch = 5
		pace     = 100 * time.Millisecond // between batches: two poll intervals
	)
	total := batches * perBatch
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()

	var wg sync.WaitGroup
	var ready sync.WaitGroup
	ready.Add(consumers)
	for range consumers {
		wg.Go(func() {
			cl, err := table.ToStream(db)(ctx, "")
			if err != nil {
				t.Error(err)
				ready.Done()
				return
			}
			defer closeClient(cl)
			ready.Done()
			for i := 1; i <= total; i++ {
				e, err := cl.Recv()
				if err != nil {
					t.Errorf("Recv %d: %v", i, err)
					return
				}
				if e.ID != strconv.Itoa(i) {
					t.Errorf("event %d has ID %s", i, e.ID)
					return
				}
			}
		})
	}
	ready.Wait()
	l0, p0 := qc.get(table.QuotedName())
	tick := time.NewTicker(pace)
	defer tick.Stop()
	for range batches {
		<-tick.C
		rawInsert(t, db, table.Name(), perBatch)
	}
	wg.Wait()
	l1, p1 := qc.get(table.QuotedName())
	return l1 - l0, p1 - p0
}

// TestHeadWatcherShared checks that 32 consumers tailing one table issue
// at most twice the queries of one consumer over the same workload, and
// all see every event.
func TestHeadWatcherShared(t *testing.T) {
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) { headWatcherShared(t, e) })
	}
}

func headWatcherShared(t *testing.T, e engine) {
	db := e.openDB(t)
	qc := countQueries(t)
	one := newEngineTable(t, e, db)
	many := newEngineTable(t, e, db)
	l1, p1 := tailPhase(t, db, one, 1, qc)
	l32, p32 := tailPhase(t, db, many, 32, qc)
	t.Logf("1 consumer: %d loads + %d polls; 32 consumers: %d loads + %d polls", l1, p1, l32, p32)
	if l32+p32 > 2*(l1+p1) {
		t.Errorf("32 consumers issued %d queries, more than twice the %d of one consumer", l32+p32, l1+p1)
	}
}

// TestHeadWatcherIdle checks that idle consumers at the head cost only the
// watcher's polls: no loads.
func TestHeadWatcherIdle(t *testing.T) {
	db := dbtest.Open(t)
	qc := countQueries(t)
	table := newTable(t, db, rsql.WithEventsBackoff(5*time.Millisecond))
	insertN(t, db, table, 1, 3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var consumed sync.WaitGroup
	consumed.Add(8)
	for range 8 {
		wg.Go(func() {
			cl := table.Stream(ctx, db, "")
			defer closeClient(cl)
			for range 3 {
				if _, err := cl.Recv(); err != nil {
					t.Error(err)
				}
			}
			consumed.Done()
			_, _ = cl.Recv() // waits at the head until cancelled
		})
	}
	consumed.Wait()
	l0, p0 := qc.get(table.QuotedName())
	// Wait for 20 polls.
	deadline := time.Now().Add(guard)
	for {
		_, p := qc.get(table.QuotedName())
		if p-p0 >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not poll")
		}
		time.Sleep(time.Millisecond)
	}
	l1, _ := qc.get(table.QuotedName())
	// A consumer may still be between its last empty load and its wait
	// when counting starts.
	if l1-l0 > 8 {
		t.Errorf("idle consumers issued %d loads during 20 polls, want none", l1-l0)
	}
	cancel()
	wg.Wait()
}

// TestHeadWatcherLostWakeup inserts and notifies between a stream's empty
// load and its wait: the stream must not sleep through it (its poll
// interval is an hour).
func TestHeadWatcherLostWakeup(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db, rsql.WithEventsBackoff(time.Hour))
	writer := rsql.NewEventsTable(table.Name()) // another instance, same table
	var once sync.Once
	rsql.SetBeforeWaitHook(func() {
		once.Do(func() {
			notify, err := writer.Insert(context.Background(), db, "late", testType(1))
			if err != nil {
				t.Error(err)
				return
			}
			notify()
		})
	})
	t.Cleanup(func() { rsql.SetBeforeWaitHook(nil) })
	cl := openStream(t, table, db, "")
	if e := recvWithin(t, cl); e.ForeignID != "late" {
		t.Fatalf("got %q, want the late event", e.ForeignID)
	}
}

// TestHeadWatcherSeesOtherWriters: rows inserted without a NotifyFunc
// (another process) reach a waiting stream through the watcher's polls.
func TestHeadWatcherSeesOtherWriters(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	cl := openStream(t, table, db, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rawInsertErr(db, table.Name(), 1); err != nil {
			t.Error(err)
		}
	}()
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("got %s, want 1", e.ID)
	}
	<-done
}

// TestEventsNotifierWakes: a custom notifier is a wake source.
func TestEventsNotifierWakes(t *testing.T) {
	db := dbtest.Open(t)
	n := &chanNotifier{ch: make(chan struct{}, 1)}
	table := newTable(t, db, rsql.WithEventsNotifier(n), rsql.WithEventsBackoff(time.Hour))
	var waiting atomic.Bool
	rsql.SetBeforeWaitHook(func() { waiting.Store(true) })
	t.Cleanup(func() { rsql.SetBeforeWaitHook(nil) })
	cl := openStream(t, table, db, "")
	go func() {
		for !waiting.Load() {
			time.Sleep(time.Millisecond)
		}
		if err := rawInsertErr(db, table.Name(), 1); err != nil {
			t.Error(err)
		}
		n.Notify()
	}()
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("got %s, want 1", e.ID)
	}
	// Inserts through the table call the notifier.
	notify, err := table.Insert(t.Context(), db, "2", testType(1))
	if err != nil {
		t.Fatal(err)
	}
	notify()
	select {
	case <-n.ch:
	default:
		t.Error("NotifyFunc did not call the notifier")
	}
}

type chanNotifier struct{ ch chan struct{} }

func (n *chanNotifier) C() <-chan struct{} { return n.ch }
func (n *chanNotifier) Notify() {
	select {
	case n.ch <- struct{}{}:
	default:
	}
}

// TestInMemNotifierWakes: with WithEventsInMemNotifier, an insert through
// the table wakes a stream with an hour's backoff.
func TestInMemNotifierWakes(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db, rsql.WithEventsInMemNotifier(), rsql.WithEventsBackoff(time.Hour))
	cl := openStream(t, table, db, "")
	go func() {
		notify, err := table.Insert(context.Background(), db, "1", testType(1))
		if err != nil {
			t.Error(err)
		}
		notify()
	}()
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("got %s, want 1", e.ID)
	}
}

// TestHeadWatcherPollerExits: the poller runs only while a stream waits.
func TestHeadWatcherPollerExits(t *testing.T) {
	db := dbtest.Open(t)
	var running atomic.Int64
	rsql.SetPollerHook(func(d int) { running.Add(int64(d)) })
	t.Cleanup(func() { rsql.SetPollerHook(nil) })
	table := newTable(t, db)
	before := rsql.ActiveWatchers()

	ctx, cancel := context.WithCancel(t.Context())
	cl := table.Stream(ctx, db, "")
	errc := make(chan error, 1)
	go func() {
		_, err := cl.Recv()
		errc <- err
	}()
	waitFor(t, "a poller to start", func() bool { return running.Load() == 1 })
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Errorf("Recv after cancel = %v, want context.Canceled", err)
	}
	waitFor(t, "the poller to exit", func() bool { return running.Load() == 0 })
	waitFor(t, "the watcher to be dropped", func() bool { return rsql.ActiveWatchers() == before })
	closeClient(cl)
}

// waitFor polls cond until it holds, failing t after guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFromHeadResolvedAtOpen: ToStream resolves the head when the stream
// is opened, Stream at the first Recv.
func TestFromHeadResolvedAtOpen(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	insertN(t, db, table, 1, 3)

	cl := openStream(t, table, db, "", reflex.WithStreamFromHead())
	insertN(t, db, table, 4, 2)
	if e := recvWithin(t, cl); e.ID != "4" {
		t.Fatalf("ToStream from head: first event %s, want 4 (inserted after opening)", e.ID)
	}

	lazy := table.Stream(t.Context(), db, "", reflex.WithStreamFromHead(), reflex.WithStreamToHead())
	defer closeClient(lazy)
	insertN(t, db, table, 6, 2)
	if e, err := lazy.Recv(); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Stream from head: Recv = (%v, %v), want ErrHeadReached (head resolved at first Recv)", e, err)
	}

	// A failing head query fails the StreamFunc.
	closed := dbtest.Open(t)
	_ = closed.Close()
	if _, err := table.ToStream(closed)(t.Context(), "", reflex.WithStreamFromHead()); err == nil {
		t.Error("ToStream from head on a closed DB succeeded")
	}
}

// TestBusyPolling: backoff 0 polls without waiting.
func TestBusyPolling(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db, rsql.WithEventsBackoff(0))
	cl := openStream(t, table, db, "")
	go func() {
		if err := rawInsertErr(db, table.Name(), 1); err != nil {
			t.Error(err)
		}
	}()
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("got %s, want 1", e.ID)
	}
}

// TestTailOneLoadPerEvent: a consumer tailing a table, woken by each
// insert's NotifyFunc, issues one load per event, not an event load plus
// an empty one before each wait.
func TestTailOneLoadPerEvent(t *testing.T) {
	db := dbtest.Open(t)
	qc := countQueries(t)
	// An hour's backoff: only the NotifyFuncs wake the stream.
	table := newTable(t, db, rsql.WithEventsBackoff(time.Hour))
	waiting := make(chan struct{}, 1)
	rsql.SetBeforeWaitHook(func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	})
	t.Cleanup(func() { rsql.SetBeforeWaitHook(nil) })

	const n = 50
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	cl, err := table.ToStream(db)(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer closeClient(cl)
	errc := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			e, err := cl.Recv()
			if err != nil {
				errc <- fmt.Errorf("Recv %d: %w", i, err)
				return
			}
			if e.ID != strconv.Itoa(i) {
				errc <- fmt.Errorf("event %d has ID %s", i, e.ID)
				return
			}
		}
		errc <- nil
	}()
	for i := 1; i <= n; i++ {
		select {
		case <-waiting: // the stream waits at the head
		case err := <-errc:
			t.Fatalf("consumer ended early: %v", err)
		case <-ctx.Done():
			t.Fatalf("stream did not wait for event %d", i)
		}
		insertN(t, db, table, i, 1)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	loads, _ := qc.get(table.QuotedName())
	t.Logf("%d loads for %d events", loads, n)
	// One empty load before the first event, then one per event.
	if loads > n+1 {
		t.Errorf("%d loads for %d events, want at most %d", loads, n, n+1)
	}
}

// TestTailNoLostWakeupAfterHeadLoad: after a load that reached the head,
// a stream waits without loading; events committed meanwhile must still
// wake it, whether notified (the stream's poll interval is an hour) or
// written by another process (found by the head watcher). Closing the
// stream releases the watcher it kept.
func TestTailNoLostWakeupAfterHeadLoad(t *testing.T) {
	db := dbtest.Open(t)
	before := rsql.ActiveWatchers()

	t.Run("notified", func(t *testing.T) {
		table := newTable(t, db, rsql.WithEventsBackoff(time.Hour))
		writer := rsql.NewEventsTable(table.Name()) // another instance, same table
		insertN(t, db, table, 1, 1)
		cl := openStream(t, table, db, "")
		for i := 1; i <= 3; i++ {
			if e := recvWithin(t, cl); e.ID != strconv.Itoa(i) {
				t.Fatalf("got %s, want %d", e.ID, i)
			}
			// Committed and notified after the load that returned event
			// i, before the next Recv.
			notify, err := writer.Insert(t.Context(), db, "x", testType(1))
			if err != nil {
				t.Fatal(err)
			}
			notify()
		}
		closeClient(cl)
	})
	t.Run("other process", func(t *testing.T) {
		table := newTable(t, db)
		rawInsert(t, db, table.Name(), 1)
		cl := openStream(t, table, db, "")
		for i := 1; i <= 3; i++ {
			if e := recvWithin(t, cl); e.ID != strconv.Itoa(i) {
				t.Fatalf("got %s, want %d", e.ID, i)
			}
			rawInsert(t, db, table.Name(), 1)
		}
		closeClient(cl)
	})
	waitFor(t, "the watchers to be dropped", func() bool { return rsql.ActiveWatchers() == before })
}

// TestHeadWatcherGapAfterWait: while a stream waits at the head for ID 2,
// ID 2 is rolled back and ID 3 committed by another process, before the
// head watcher's first poll. The watcher must wake the stream so that it
// finds the gap, which the gap filler fills; the stream then gets 3. (A
// watcher that only woke streams when their next ID appeared, or when the
// maximum ID changed between two of its polls, left it waiting for ever.)
func TestHeadWatcherGapAfterWait(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	insertN(t, db, table, 1, 1)
	cl := openStream(t, table, db, "")
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("got %s, want 1", e.ID)
	}
	var once sync.Once
	rsql.SetQueryHook(func(tbl, kind string) {
		if tbl != table.QuotedName() || kind != "poll" {
			return
		}
		once.Do(func() { // on the poller's goroutine: no t.Fatal
			tx, err := db.Begin()
			if err != nil {
				t.Error(err)
				return
			}
			defer tx.Rollback()
			if _, err := table.Insert(context.Background(), tx, "rolled back", testType(1)); err != nil {
				t.Error(err)
				return
			}
			if err := rawInsertErr(db, table.Name(), 1); err != nil {
				t.Error(err)
			}
		})
	})
	t.Cleanup(func() { rsql.SetQueryHook(nil) })
	if e := recvWithin(t, cl); e.ID != "3" {
		t.Fatalf("got %s, want 3", e.ID)
	}
}

// TestTailSharedOneLoadPerEvent: streams tailing one table share the load
// that finds each new event and, served from the cache, wait without an
// empty load of their own: about one load per event for all of them.
func TestTailSharedOneLoadPerEvent(t *testing.T) {
	db := dbtest.Open(t)
	qc := countQueries(t)
	table := newTable(t, db, rsql.WithEventsBackoff(time.Hour))
	var waits atomic.Int64
	rsql.SetBeforeWaitHook(func() { waits.Add(1) })
	t.Cleanup(func() { rsql.SetBeforeWaitHook(nil) })

	const n, streams = 40, 8
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	var got [streams]atomic.Int64
	errc := make(chan error, streams)
	for s := range streams {
		cl, err := table.ToStream(db)(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		defer closeClient(cl)
		go func() {
			for i := 1; i <= n; i++ {
				e, err := cl.Recv()
				if err != nil {
					errc <- fmt.Errorf("stream %d Recv %d: %w", s, i, err)
					return
				}
				if e.ID != strconv.Itoa(i) {
					errc <- fmt.Errorf("stream %d event %d has ID %s", s, i, e.ID)
					return
				}
				got[s].Store(int64(i))
			}
			errc <- nil
		}()
	}
	until := func(what string, cond func() bool) {
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			case <-time.After(time.Millisecond):
			}
		}
	}
	until("all streams to wait", func() bool { return waits.Load() >= streams })
	for i := 1; i <= n; i++ {
		before := waits.Load()
		insertN(t, db, table, i, 1)
		until(fmt.Sprintf("event %d everywhere", i), func() bool {
			for s := range streams {
				if got[s].Load() < int64(i) {
					return false
				}
			}
			return true
		})
		if i < n {
			until("the streams to wait again", func() bool { return waits.Load() >= before+streams })
		}
	}
	for range streams {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	loads, _ := qc.get(table.QuotedName())
	t.Logf("%d loads for %d events and %d streams", loads, n, streams)
	// One shared load per event (without sharing the head, twice as many).
	if max := n + n/4 + streams; loads > max {
		t.Errorf("%d loads for %d events, want at most %d", loads, n, max)
	}
}

// TestHeadWatcherStalePoll: a poll whose query was sent before an insert
// that the process then notified must not record its (stale) head as one
// streams may trust without loading.
func TestHeadWatcherStalePoll(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db, rsql.WithEventsBackoff(5*time.Millisecond))
	var (
		calls   atomic.Int64
		checked = make(chan [2]any, 1)
	)
	rsql.SetPollQueriedHook(func() {
		if calls.Add(1) == 1 {
			// The first poll read head 0; an event commits and is
			// notified before the poll records it.
			insertN(t, db, table, 1, 1)
		}
	})
	rsql.SetQueryHook(func(tab, kind string) {
		if kind == "poll" && tab == table.QuotedName() && calls.Load() == 1 {
			head, known, _ := table.WatcherHead(db)
			select {
			case checked <- [2]any{head, known}:
			default:
			}
		}
	})
	t.Cleanup(func() {
		rsql.SetPollQueriedHook(nil)
		rsql.SetQueryHook(nil)
	})
	cl := openStream(t, table, db, "")
	got := make(chan error, 1)
	go func() {
		_, err := cl.Recv()
		got <- err
		if err == nil {
			_, _ = cl.Recv() // keep waiting, so that the watcher polls again
		}
	}()
	select {
	case st := <-checked:
		if head, known := st[0].(int64), st[1].(bool); known && head < 1 {
			t.Errorf("after a notified insert the watcher trusts head %d, want it unknown or >= 1", head)
		}
	case <-time.After(guard):
		t.Fatal("the watcher did not poll twice")
	}
	if err := <-got; err != nil {
		t.Fatalf("Recv: %v", err)
	}
}
