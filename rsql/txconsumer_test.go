package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

type leaseEvType int

func (t leaseEvType) ReflexType() int { return int(t) }

// txFixture is an events table with n events, a cursors table and an
// effects table (event_id unique) in ldb.
type txFixture struct {
	ldb     leaseDB
	events  *rsql.EventsTable
	cursors *rsql.CursorsTable
	leases  *rsql.LeasesTable
	effects string
}

func newTxFixture(t testing.TB, ldb leaseDB, n int, copts ...rsql.CursorsOption) *txFixture {
	t.Helper()
	seq := curSeq.Add(1)
	f := &txFixture{ldb: ldb, effects: fmt.Sprintf("effects_%d", seq)}
	evName := fmt.Sprintf("txevents_%d", seq)
	f.events = rsql.NewEventsTable(evName, rsql.WithEventsDialect(ldb.d))
	t.Cleanup(func() { f.events.Close() })
	rsqltest.Tables{Dialect: ldb.d}.CreateEventsTable(t, ldb.db, evName)
	lname, cname := fmt.Sprintf("txleases_%d", seq), fmt.Sprintf("txcursors_%d", seq)
	for _, ddl := range []string{
		rsql.LeasesSchema(ldb.d, lname),
		rsql.CursorsSchema(ldb.d, cname),
		"CREATE TABLE " + f.effects + " (event_id BIGINT NOT NULL PRIMARY KEY, n INT NOT NULL)",
	} {
		if _, err := ldb.db.ExecContext(context.Background(), ddl); err != nil {
			t.Fatal(err)
		}
	}
	f.cursors = rsql.NewCursorsTable(cname, append([]rsql.CursorsOption{rsql.WithCursorsDialect(ldb.d)}, copts...)...)
	t.Cleanup(func() { f.cursors.Close() })
	f.leases = rsql.NewLeasesTable(lname, rsql.WithLeasesDialect(ldb.d))
	f.insert(t, n)
	return f
}

// insert adds n events, in batches of up to 1000.
func (f *txFixture) insert(t testing.TB, n int) {
	t.Helper()
	for n > 0 {
		k := min(n, 1000)
		evs := make([]rsql.EventToInsert, k)
		for i := range evs {
			evs[i] = rsql.EventToInsert{ForeignID: strconv.Itoa(i % 97), Type: leaseEvType(1)}
		}
		if _, err := f.events.InsertMany(context.Background(), f.ldb.db, evs); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
}

// effect is a TxFunc that records e in the effects table. A plain INSERT:
// a second effect of one event fails the transaction.
func (f *txFixture) effect(ctx context.Context, tx *sql.Tx, e *reflex.Event) error {
	ph := "?"
	if f.ldb.d == rsql.PostgreSQL {
		ph = "$1"
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO "+f.effects+" (event_id, n) VALUES ("+ph+", 1)", e.IDInt())
	return err
}

// effectsCount returns the number of effect rows and the largest event ID
// recorded.
func (f *txFixture) effectsCount(t testing.TB) (int, int64) {
	t.Helper()
	var n int
	var top sql.NullInt64
	if err := f.ldb.db.QueryRow("SELECT COUNT(*), MAX(event_id) FROM "+f.effects).Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	return n, top.Int64
}

func (f *txFixture) cursor(t testing.TB, name string) string {
	t.Helper()
	c, err := rsql.NewCursorsTable(f.cursors.Name(), rsql.WithCursorsDialect(f.ldb.d)).GetCursor(context.Background(), f.ldb.db, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTxConsumerExactlyOnce(t *testing.T) {
	for _, ldb := range leaseDBs(t) {
		t.Run(ldb.name, func(t *testing.T) {
			var commits atomic.Int64
			f := newTxFixture(t, ldb, 250, rsql.WithCursorSetCounter(func() { commits.Add(1) }))
			var fail atomic.Int64
			fail.Store(150)
			fn := func(ctx context.Context, tx *sql.Tx, e *reflex.Event) error {
				if e.IDInt() == fail.Load() {
					return errors.New("boom")
				}
				return f.effect(ctx, tx, e)
			}
			tc := rsql.NewTxConsumer("proj", ldb.db, f.cursors.ToStore(ldb.db), fn, rsql.WithTxBatch(100, 0))
			spec := rsql.NewTxSpec(f.events.ToStream(ldb.db), tc, reflex.WithStreamToHead())

			// A failure rolls back its whole batch: 101..149 are not kept.
			err := reflex.Run(t.Context(), spec)
			if err == nil || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("Run = %v, want the consumer's error", err)
			}
			_ = spec.Stop()
			if n, top := f.effectsCount(t); n != 100 || top != 100 {
				t.Fatalf("after a failure at 150: %d effects up to %d, want the first batch (100)", n, top)
			}
			if c := f.cursor(t, "proj"); c != "100" {
				t.Fatalf("cursor %q, want 100", c)
			}

			// The next run delivers 101.. again: every event once.
			fail.Store(0)
			if err := reflex.Run(t.Context(), spec); !reflex.IsHeadReachedErr(err) {
				t.Fatalf("Run = %v, want ErrHeadReached", err)
			}
			_ = spec.Stop()
			if n, top := f.effectsCount(t); n != 250 || top != 250 {
				t.Fatalf("%d effects up to %d, want 250", n, top)
			}
			if c := f.cursor(t, "proj"); c != "250" {
				t.Errorf("cursor %q, want 250", c)
			}
			// Commits: 100, then 200 and the final flush at 250.
			if got := commits.Load(); got != 3 {
				t.Errorf("%d commits, want 3 (batches of 100 and the final flush)", got)
			}
		})
	}
}

// TestTxConsumerPeriod: a transaction is committed once its period has
// passed, without more events.
func TestTxConsumerPeriod(t *testing.T) {
	db := dbtest.Open(t)
	f := newTxFixture(t, leaseDB{"MariaDB", db, rsql.MySQL}, 5)
	tc := rsql.NewTxConsumer("proj", db, f.cursors.ToStore(db), f.effect, rsql.WithTxBatch(1000, 20*time.Millisecond))
	spec := rsql.NewTxSpec(f.events.ToStream(db), tc)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- reflex.Run(ctx, spec) }()
	err := testguard.Poll(time.Minute, 10*time.Millisecond, "the period commit", func() (int64, bool, error) {
		return 0, f.cursor(t, "proj") == "5", nil
	})
	cancel()
	<-done
	_ = spec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := f.effectsCount(t); n != 5 {
		t.Errorf("%d effects, want 5", n)
	}
}

// TestTxConsumerSkippedEvents: events that a filter skips move the cursor
// with the next transaction, without effects.
func TestTxConsumerSkippedEvents(t *testing.T) {
	db := dbtest.Open(t)
	f := newTxFixture(t, leaseDB{"MariaDB", db, rsql.MySQL}, 30)
	odd := reflex.WithEventFilter(func(e *reflex.Event) (bool, error) { return e.IDInt()%2 == 1, nil })
	tc := rsql.NewTxConsumer("proj", db, f.cursors.ToStore(db), f.effect, rsql.WithTxBatch(7, 0), rsql.WithTxConsumerOptions(odd))
	spec := rsql.NewTxSpec(f.events.ToStream(db), tc, reflex.WithStreamToHead())
	if err := reflex.Run(t.Context(), spec); !reflex.IsHeadReachedErr(err) {
		t.Fatal(err)
	}
	_ = spec.Stop()
	if n, _ := f.effectsCount(t); n != 15 {
		t.Errorf("%d effects, want the 15 odd events", n)
	}
	if c := f.cursor(t, "proj"); c != "30" {
		t.Errorf("cursor %q, want 30", c)
	}
}

// TestTxConsumerLeaseLost: a fenced TxConsumer whose lease another member
// claimed commits nothing: its transaction fails with ErrLeaseLost and is
// rolled back, and the lease's lost function is called.
func TestTxConsumerLeaseLost(t *testing.T) {
	for _, ldb := range leaseDBs(t) {
		t.Run(ldb.name, func(t *testing.T) {
			ctx := t.Context()
			f := newTxFixture(t, ldb, 50)
			s := f.leases.ToStore(ldb.db)
			a, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "proj", Shards: 1, Owner: "a"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			var lost atomic.Int32
			fenced, _ := s.FenceCursorStore(f.cursors.ToStore(ldb.db), a, func() { lost.Add(1) })
			tc := rsql.NewTxConsumer("proj", ldb.db, fenced, f.effect, rsql.WithTxBatch(10, 0))
			spec := rsql.NewTxSpec(f.events.ToStream(ldb.db), tc, reflex.WithStreamToHead())
			if err := reflex.Run(ctx, spec); !reflex.IsHeadReachedErr(err) {
				t.Fatal(err)
			}
			if c := f.cursor(t, "proj"); c != "50" {
				t.Fatalf("cursor %q, want 50", c)
			}

			expire(t, ldb.db, f.leases)
			if _, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "proj", Shards: 1, Owner: "b", Epoch: a.Epoch}, time.Hour); err != nil {
				t.Fatal(err)
			}
			f.insert(t, 25)
			err = reflex.Run(ctx, spec)
			_ = spec.Stop()
			if !errors.Is(err, rsql.ErrLeaseLost) {
				t.Fatalf("Run after the lease was lost = %v, want ErrLeaseLost", err)
			}
			if n, top := f.effectsCount(t); n != 50 || top != 50 {
				t.Errorf("%d effects up to %d after the lease was lost, want 50", n, top)
			}
			if c := f.cursor(t, "proj"); c != "50" {
				t.Errorf("cursor %q, want 50", c)
			}
			if lost.Load() == 0 {
				t.Error("lost was not called")
			}
		})
	}
}

// TestTxConsumerConcurrentWriter: without a lease, a second runner of one
// consumer name that read the cursor before the first committed cannot
// commit the same events: its transaction fails and is rolled back.
func TestTxConsumerConcurrentWriter(t *testing.T) {
	db := dbtest.Open(t)
	ctx := t.Context()
	f := newTxFixture(t, leaseDB{"MariaDB", db, rsql.MySQL}, 20)
	// No unique key on the effects of this test: the cursor alone must
	// keep them exactly once.
	if _, err := db.ExecContext(ctx, "ALTER TABLE "+f.effects+" DROP PRIMARY KEY"); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	stream := f.events.ToStream(db)
	held := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		close(entered) // B read the cursor (Run opens the stream after)
		<-release      // wait for A to commit
		return stream(ctx, after, opts...)
	}
	tcA := rsql.NewTxConsumer("proj", db, f.cursors.ToStore(db), f.effect, rsql.WithTxBatch(5, 0))
	tcB := rsql.NewTxConsumer("proj", db, f.cursors.ToStore(db), f.effect, rsql.WithTxBatch(5, 0))
	bDone := make(chan error, 1)
	go func() { bDone <- reflex.Run(ctx, rsql.NewTxSpec(held, tcB, reflex.WithStreamToHead())) }()
	<-entered
	if err := reflex.Run(ctx, rsql.NewTxSpec(stream, tcA, reflex.WithStreamToHead())); !reflex.IsHeadReachedErr(err) {
		t.Fatal(err)
	}
	close(release)
	err := <-bDone
	_ = tcA.Stop()
	_ = tcB.Stop()
	var n, distinct int
	if err := db.QueryRow("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM "+f.effects).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != 20 || distinct != 20 {
		t.Fatalf("%d effects (%d events), want each of 20 once; B's run: %v", n, distinct, err)
	}
	if err != nil && !errors.Is(err, rsql.ErrConcurrentWriter) && !reflex.IsHeadReachedErr(err) {
		t.Errorf("B's run = %v, want ErrConcurrentWriter (or nothing to do)", err)
	}
}

func TestNewTxConsumerPanics(t *testing.T) {
	db := rsqltest.OpenSQLite(t)
	store := rsql.NewCursorsTable("c").ToStore(db)
	fn := func(context.Context, *sql.Tx, *reflex.Event) error { return nil }
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"nil db", func() { rsql.NewTxConsumer("x", nil, store, fn) }},
		{"nil fn", func() { rsql.NewTxConsumer("x", db, store, nil) }},
		{"other store", func() { rsql.NewTxConsumer("x", db, rpatterns.MemCursorStore(), fn) }},
		{"zero batch", func() { rsql.NewTxConsumer("x", db, store, fn, rsql.WithTxBatch(0, time.Second)) }},
		{"negative period", func() { rsql.NewTxConsumer("x", db, store, fn, rsql.WithTxBatch(1, -time.Second)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "rsql: ") {
					t.Errorf("panic %v, want an rsql: panic", r)
				}
			}()
			tc.f()
		})
	}
}

// TestTxConsumerIdleTimeout: the server rolls back a transaction that a
// stalled consumer left idle, releasing its row locks, so that another
// writer of those rows (the member that took the lease over) goes on.
func TestTxConsumerIdleTimeout(t *testing.T) { forEngines(t, txConsumerIdleTimeout) }

func txConsumerIdleTimeout(t *testing.T, e engine) {
	db := e.openDB(t)
	ctx := t.Context()
	f := newTxFixture(t, leaseDB{e.name, db, e.d}, 5)
	stalled := make(chan struct{})
	stream := f.events.ToStream(db)
	// The consumer stalls (as a paused process would) after the fifth
	// event, with its transaction open.
	fn := func(ctx context.Context, tx *sql.Tx, e *reflex.Event) error {
		if err := f.effect(ctx, tx, e); err != nil {
			return err
		}
		if e.IDInt() == 5 {
			close(stalled)
			<-ctx.Done()
		}
		return nil
	}
	tc := rsql.NewTxConsumer("proj", db, f.cursors.ToStore(db), fn, rsql.WithTxBatch(100, 0), rsql.WithTxIdleTimeout(time.Second))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reflex.Run(runCtx, rsql.NewTxSpec(stream, tc)) }()
	<-stalled

	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lockTimeout := "SET SESSION innodb_lock_wait_timeout = 20"
	if e.d == rsql.PostgreSQL {
		lockTimeout = "SET lock_timeout = '20s'"
	}
	if _, err := conn.ExecContext(ctx, lockTimeout); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := conn.ExecContext(ctx, "INSERT INTO "+f.effects+" (event_id, n) VALUES (1, 2)"); err != nil {
		t.Fatalf("insert of a row the stalled transaction had locked: %v", err)
	}
	t.Logf("the stalled transaction's lock was released after %v (idle timeout 1 s)", time.Since(start))
	cancel()
	<-done
	_ = tc.Stop()
	if c := f.cursor(t, "proj"); c != "" {
		t.Errorf("cursor %q, want none: the stalled transaction was rolled back", c)
	}
}

// TestTxConsumerIdleConnectionClosed: a consumer idle for longer than its
// idle timeout between transactions (no events) has its connection closed
// by the server; its next transaction takes another one.
func TestTxConsumerIdleConnectionClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping a test that idles for 2.5 s in -short mode")
	}
	db := dbtest.Open(t)
	ctx := t.Context()
	f := newTxFixture(t, leaseDB{"MariaDB", db, rsql.MySQL}, 3)
	tc := rsql.NewTxConsumer("proj", db, f.cursors.ToStore(db), f.effect, rsql.WithTxBatch(100, 10*time.Millisecond), rsql.WithTxIdleTimeout(time.Second))
	spec := rsql.NewTxSpec(f.events.ToStream(db), tc)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reflex.Run(runCtx, spec) }()
	defer func() { cancel(); <-done; _ = spec.Stop() }()
	wait := func(want string) {
		t.Helper()
		err := testguard.Poll(time.Minute, 10*time.Millisecond, "the cursor at "+want, func() (int64, bool, error) {
			return 0, f.cursor(t, "proj") == want, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	wait("3")
	// Idle past the server's timeout (this waits for the server's clock,
	// not for the consumer).
	<-time.After(2500 * time.Millisecond)
	f.insert(t, 2)
	wait("5")
	if n, _ := f.effectsCount(t); n != 5 {
		t.Errorf("%d effects, want 5", n)
	}
	select {
	case err := <-done:
		t.Fatalf("run ended: %v", err)
	default:
	}
}
