package rsql_test

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// openTx begins a transaction that inserts one event and returns it with
// the event's ID; the caller commits or rolls back.
func openTx(t testing.TB, db *sql.DB, table *rsql.EventsTable, fid string) (*sql.Tx, int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	if _, err := table.Insert(ctx, tx, fid, testType(1)); err != nil {
		t.Fatalf("Insert: %v", err)
	}
	var id int64
	if err := tx.QueryRowContext(ctx, engineOf(db).lastID).Scan(&id); err != nil {
		t.Fatalf("last insert id: %v", err)
	}
	return tx, id
}

// stopGaps stops the table's gap listeners at cleanup.
func stopGaps(t testing.TB, gl rsql.GapListenable) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		if err := rsql.StopFillingGaps(ctx, gl); err != nil {
			t.Errorf("StopFillingGaps: %v", err)
		}
	})
}

func openStream(t testing.TB, table *rsql.EventsTable, db *sql.DB, after string, opts ...reflex.StreamOption) reflex.StreamClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return openStreamCtx(ctx, t, table, db, after, opts...)
}

// openStreamCtx is openStream under the caller's context.
func openStreamCtx(ctx context.Context, t testing.TB, table *rsql.EventsTable, db *sql.DB, after string, opts ...reflex.StreamOption) reflex.StreamClient {
	t.Helper()
	cl, err := table.ToStream(db)(ctx, after, opts...)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	t.Cleanup(func() { closeClient(cl) })
	return cl
}

func TestGapRollbackIsFilled(t *testing.T) { forEngines(t, testGapRollbackIsFilled) }

func testGapRollbackIsFilled(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatalf("FillGaps: %v", err)
	}
	stopGaps(t, table)

	insertN(t, db, table, 1, 1)
	tx, id := openTx(t, db, table, "2")
	insertN(t, db, table, 3, 1)
	if id != 2 {
		t.Fatalf("open transaction has ID %d, want 2", id)
	}

	cl := openStream(t, table, db, "")
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("first event %s, want 1", e.ID)
	}
	// The stream stops at the open transaction's ID.
	if got := drain(t, table.ToStream(db), "1"); len(got) != 0 {
		t.Fatalf("to-head stream after 1 returned %v while 2 is open, want nothing", ids(got))
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if e := recvWithin(t, cl); e.ID != "3" {
		t.Fatalf("event after the rolled-back 2 is %s, want 3", e.ID)
	}

	// The filled ID is a noop, visible only with WithIncludeNoopEvents.
	withNoops := table.Clone(rsql.WithIncludeNoopEvents())
	stopGaps(t, withNoops)
	got := drain(t, withNoops.ToStream(db), "")
	if !equal(ids(got), seq(1, 3)) {
		t.Fatalf("with noops: %v, want 1..3", ids(got))
	}
	if n := got[1]; n.ForeignID != "0" || n.Type.ReflexType() != 0 {
		t.Errorf("event 2 = (fid %q, type %d), want the noop (\"0\", 0)", n.ForeignID, n.Type.ReflexType())
	}
	if got := drain(t, table.ToStream(db), ""); !equal(ids(got), []string{"1", "3"}) {
		t.Errorf("without noops: %v, want [1 3]", ids(got))
	}
}

func TestGapCommitStreamsInOrder(t *testing.T) { forEngines(t, testGapCommitStreamsInOrder) }

func testGapCommitStreamsInOrder(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db) // no filler: temporary gaps need none
	insertN(t, db, table, 1, 1)
	tx, _ := openTx(t, db, table, "2")
	insertN(t, db, table, 3, 1)

	cl := openStream(t, table, db, "")
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("first event %s, want 1", e.ID)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2", "3"} {
		if e := recvWithin(t, cl); e.ID != want {
			t.Fatalf("got event %s, want %s", e.ID, want)
		}
	}
}

func TestGapBlocksWithoutFiller(t *testing.T) { forEngines(t, testGapBlocksWithoutFiller) }

func testGapBlocksWithoutFiller(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	insertN(t, db, table, 1, 1)
	tx, _ := openTx(t, db, table, "2")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	insertN(t, db, table, 3, 2)
	// Twice: the gap is permanent without a filler.
	for range 2 {
		if got := drain(t, table.ToStream(db), ""); !equal(ids(got), []string{"1"}) {
			t.Fatalf("streamed %v, want only [1] before the gap", ids(got))
		}
	}
	gauge := metrics.NewEventsTable(table.Name()).BlockingGap
	if v := value(gauge); v != 1 {
		t.Errorf("blocking gap gauge = %v, want 1", v)
	}
}

func TestGapDoubleRollback(t *testing.T) { forEngines(t, testGapDoubleRollback) }

func testGapDoubleRollback(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	insertN(t, db, table, 1, 1)
	tx2, _ := openTx(t, db, table, "2")
	tx3, _ := openTx(t, db, table, "3")
	insertN(t, db, table, 4, 1)
	_ = tx2.Rollback()
	_ = tx3.Rollback()
	cl := openStream(t, table, db, "")
	for _, want := range []string{"1", "4"} {
		if e := recvWithin(t, cl); e.ID != want {
			t.Fatalf("got event %s, want %s", e.ID, want)
		}
	}
}

// TestGapFirstEventInFlight checks that a stream from the beginning does
// not start after an ID that is still being written.
func TestGapFirstEventInFlight(t *testing.T) { forEngines(t, testGapFirstEventInFlight) }

func testGapFirstEventInFlight(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	tx, id := openTx(t, db, table, "1")
	insertN(t, db, table, 2, 1)
	if id != 1 {
		t.Fatalf("open transaction has ID %d, want 1", id)
	}
	if got := drain(t, table.ToStream(db), ""); len(got) != 0 {
		t.Fatalf("streamed %v while 1 is open, want nothing", ids(got))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, table.ToStream(db), ""); !equal(ids(got), seq(1, 2)) {
		t.Fatalf("streamed %v, want [1 2]", ids(got))
	}

	// A table whose IDs start high streams from its first ID.
	high := newEngineTable(t, e, db)
	restart := "ALTER TABLE " + high.Name() + " AUTO_INCREMENT = 100"
	if e.d == rsql.PostgreSQL {
		restart = "ALTER TABLE " + high.Name() + " ALTER COLUMN id RESTART WITH 100"
	}
	if _, err := db.Exec(restart); err != nil {
		t.Fatal(err)
	}
	insertN(t, db, high, 1, 2)
	if got := drain(t, high.ToStream(db), ""); !equal(ids(got), seq(100, 101)) {
		t.Fatalf("streamed %v, want [100 101]", ids(got))
	}
}

func TestGapRandomTransactions(t *testing.T) { forEngines(t, testGapRandomTransactions) }

func testGapRandomTransactions(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	var (
		mu        sync.Mutex
		committed []string
		wg        sync.WaitGroup
	)
	for i := range 8 {
		wg.Go(func() {
			tx, id := openTx(t, db, table, strconv.Itoa(i))
			if rand.IntN(2) == 0 {
				_ = tx.Rollback()
				return
			}
			if err := tx.Commit(); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			committed = append(committed, strconv.FormatInt(id, 10))
			mu.Unlock()
		})
	}
	wg.Wait()
	tx, id := openTx(t, db, table, "final")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	committed = append(committed, strconv.FormatInt(id, 10))
	slices.SortFunc(committed, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return cmp.Compare(x, y)
	})

	cl := openStream(t, table, db, "")
	var got []string
	for len(got) < len(committed) {
		got = append(got, recvWithin(t, cl).ID)
	}
	if !equal(got, committed) {
		t.Fatalf("streamed %v, want the committed %v", got, committed)
	}
}

func TestGapTwoReadersNoDeadlock(t *testing.T) { forEngines(t, testGapTwoReadersNoDeadlock) }

func testGapTwoReadersNoDeadlock(t *testing.T, e engine) {
	db := e.openDB(t)
	table := newEngineTable(t, e, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	insertN(t, db, table, 1, 1)
	tx, _ := openTx(t, db, table, "2")
	insertN(t, db, table, 3, 1)
	a := openStream(t, table, db, "")
	b := openStream(t, table, db, "")
	var wg sync.WaitGroup
	for _, cl := range []reflex.StreamClient{a, b} {
		wg.Go(func() {
			for _, want := range []string{"1", "3"} {
				if e := recvWithin(t, cl); e.ID != want {
					t.Errorf("got %s, want %s", e.ID, want)
				}
			}
		})
	}
	_ = tx.Rollback()
	wg.Wait()
}

func TestGapListenerLifecycle(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	ctx := t.Context()

	// Stop without listeners returns at once and is idempotent.
	fresh := newTable(t, db)
	for range 2 {
		if err := fresh.StopGapListener(ctx); err != nil {
			t.Fatalf("StopGapListener without listeners: %v", err)
		}
	}
	if err := fresh.ListenGaps(func(rsql.Gap) {}); !errors.Is(err, rsql.ErrGapListenerStopped) {
		t.Errorf("ListenGaps after stop: %v, want ErrGapListenerStopped", err)
	}
	if err := rsql.FillGaps(db, fresh); !errors.Is(err, rsql.ErrGapListenerStopped) {
		t.Errorf("FillGaps after stop: %v, want ErrGapListenerStopped", err)
	}

	gaps := make(chan rsql.Gap, 10)
	if err := table.ListenGaps(func(g rsql.Gap) { gaps <- g }); err != nil {
		t.Fatal(err)
	}
	if err := table.ListenGaps(nil); err == nil {
		t.Error("ListenGaps(nil) succeeded")
	}
	listening := metrics.NewEventsTable(table.Name()).GapListening
	if v := value(listening); v != 1 {
		t.Errorf("gap listening gauge = %v, want 1", v)
	}
	insertN(t, db, table, 1, 1)
	tx, _ := openTx(t, db, table, "2")
	_ = tx.Rollback()
	insertN(t, db, table, 3, 1)

	// Streams offer the gap without blocking; the listener gets it once a
	// load happens while it waits.
	deadline := time.Now().Add(guard)
	var g rsql.Gap
	for got := false; !got; {
		drain(t, table.ToStream(db), "")
		select {
		case g = <-gaps:
			got = true
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("no gap offered")
			}
		}
	}
	if g != (rsql.Gap{Prev: 1, Next: 3}) {
		t.Errorf("gap = %+v, want {1 3}", g)
	}
	for range 2 {
		if err := table.StopGapListener(ctx); err != nil {
			t.Fatalf("StopGapListener: %v", err)
		}
	}
	if v := value(listening); v != 0 {
		t.Errorf("gap listening gauge after stop = %v, want 0", v)
	}
	if err := table.ListenGaps(func(rsql.Gap) {}); !errors.Is(err, rsql.ErrGapListenerStopped) {
		t.Errorf("ListenGaps after stop: %v, want ErrGapListenerStopped", err)
	}
}

// TestStopFillingGapsAbortsWait stops a filler that waits for an open
// transaction; afterwards the gap is no longer filled.
func TestStopFillingGapsAbortsWait(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	insertN(t, db, table, 1, 1)
	tx, _ := openTx(t, db, table, "2")
	insertN(t, db, table, 3, 1)
	drain(t, table.ToStream(db), "") // detects the gap; the filler waits for tx
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	if err := rsql.StopFillingGaps(ctx, table); err != nil {
		t.Fatalf("StopFillingGaps: %v", err)
	}
	_ = tx.Rollback()
	drain(t, table.ToStream(db), "")
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table.Name() + " WHERE id = 2").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("ID 2 was filled after StopFillingGaps")
	}
}

func TestFillGapsCustomIDColumn(t *testing.T) {
	db := dbtest.Open(t)
	if _, err := db.Exec("CREATE TABLE custom_events (event_id BIGINT AUTO_INCREMENT PRIMARY KEY, fid VARCHAR(255) NOT NULL, at DATETIME(6) NOT NULL, kind INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	table := rsql.NewEventsTable("custom_events", rsql.WithEventIDField("event_id"),
		rsql.WithEventForeignIDField("fid"), rsql.WithEventTimeField("at"), rsql.WithEventTypeField("kind"))
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	insertN(t, db, table, 1, 1)
	tx, _ := openTx(t, db, table, "2")
	_ = tx.Rollback()
	insertN(t, db, table, 3, 1)
	cl := openStream(t, table, db, "")
	for _, want := range []string{"1", "3"} {
		if e := recvWithin(t, cl); e.ID != want {
			t.Fatalf("got %s, want %s", e.ID, want)
		}
	}
}

func TestCloneCarriesGapFilling(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	clone := table.Clone(rsql.WithEventsBackoff(10 * time.Millisecond))
	stopGaps(t, clone)
	if got := metrics.NewEventsTable(table.Name()).GapListening; value(got) != 1 {
		t.Error("gap listening gauge is not 1 with a filled clone")
	}
	insertN(t, db, table, 1, 1)
	tx, _ := openTx(t, db, table, "2")
	_ = tx.Rollback()
	insertN(t, db, table, 3, 1)
	// Only the clone streams, so only the clone's filler hears the gap.
	cl := openStream(t, clone, db, "")
	for _, want := range []string{"1", "3"} {
		if e := recvWithin(t, cl); e.ID != want {
			t.Fatalf("got %s, want %s", e.ID, want)
		}
	}
	// The clone of a table whose filler was stopped is not filled.
	other := newTable(t, db)
	_ = rsql.FillGaps(db, other)
	if err := rsql.StopFillingGaps(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	if err := other.Clone().ListenGaps(func(rsql.Gap) {}); err != nil {
		t.Errorf("ListenGaps on a clone of a stopped table: %v", err)
	}
}

func TestGapMetrics(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	m := metrics.NewEventsTable(table.Name())
	insertN(t, db, table, 1, 1)
	tx, _ := openTx(t, db, table, "2")
	insertN(t, db, table, 3, 1)
	drain(t, table.ToStream(db), "")
	if v := value(m.OpenGaps); v != 1 {
		t.Errorf("open gaps = %v, want 1", v)
	}
	if v := value(m.GapDetected); v < 1 {
		t.Errorf("gaps detected = %v, want >= 1", v)
	}
	drain(t, table.ToStream(db), "")
	if v := value(m.OldestGapAge); v <= 0 {
		t.Errorf("oldest gap age = %v, want > 0", v)
	}
	_ = tx.Commit()
	drain(t, table.ToStream(db), "")
	if v := value(m.OpenGaps); v != 0 {
		t.Errorf("open gaps after commit = %v, want 0", v)
	}
	if v := value(m.OldestGapAge); v != 0 {
		t.Errorf("oldest gap age after commit = %v, want 0", v)
	}
	if v := value(m.BlockingGap); v != 0 {
		t.Errorf("blocking gap after commit = %v, want 0", v)
	}
}

// TestGapDetectorCustomLoader checks gap detection on a loader that is
// not SQL: the stream stops before the hole and the gap is offered.
func TestGapDetectorCustomLoader(t *testing.T) {
	events := []*reflex.Event{{ID: "1"}, {ID: "2"}, {ID: "4"}, {ID: "5"}}
	for _, e := range events {
		e.ForeignID, e.Type, e.Timestamp = "f"+e.ID, testType(1), time.Now()
	}
	loader := func(_ context.Context, _ *sql.DB, prev int64, _ time.Duration) ([]*reflex.Event, error) {
		var out []*reflex.Event
		for _, e := range events {
			if e.IDInt() > prev {
				out = append(out, e)
			}
		}
		return out, nil
	}
	table := rsql.NewEventsTable("memory", rsql.WithEventsLoader(loader), rsql.WithoutEventsCache())
	gaps := gapsOf(t, table, 1)
	stopGaps(t, table)
	var got []*reflex.Event
	deadline := time.Now().Add(guard)
	for len(gaps) == 0 {
		got = drain(t, table.ToStream(nil), "")
		if time.Now().After(deadline) {
			t.Fatal("no gap offered")
		}
	}
	if !equal(ids(got), []string{"1", "2"}) {
		t.Errorf("streamed %v, want [1 2]", ids(got))
	}
	if g := <-gaps; g != (rsql.Gap{Prev: 2, Next: 4}) {
		t.Errorf("gap %+v, want {2 4}", g)
	}
	// From after the gap, it streams on.
	if got := drain(t, table.ToStream(nil), "3"); !equal(ids(got), []string{"4", "5"}) {
		t.Errorf("after 3: %v, want [4 5]", ids(got))
	}

	// A loader returning a non-int or an old ID is an error.
	for _, bad := range []string{"x", "1"} {
		bl := func(_ context.Context, _ *sql.DB, prev int64, _ time.Duration) ([]*reflex.Event, error) {
			return []*reflex.Event{{ID: bad, Type: testType(1)}}, nil
		}
		cl := rsql.NewEventsTable("memory", rsql.WithEventsLoader(bl)).Stream(t.Context(), nil, "1", reflex.WithStreamToHead())
		_, err := cl.Recv()
		if bad == "x" && !errors.Is(err, rsql.ErrInvalidIntID) {
			t.Errorf("loader ID %q: Recv error %v, want ErrInvalidIntID", bad, err)
		}
		if bad == "1" && !errors.Is(err, rsql.ErrConsecEvent) {
			t.Errorf("loader ID %q after 1: Recv error %v, want ErrConsecEvent", bad, err)
		}
		closeClient(cl)
	}
}

var longFlag = flag.Bool("long", false, "run long variants (TestGapConformance with 100,000 events); also REFLEX_LONG=1")

func long() bool { return *longFlag || os.Getenv("REFLEX_LONG") == "1" }

// TestGapConformance: 16 concurrent writers, 10% of their transactions
// rolled back, random commit delays up to 50 ms, one transaction holding
// its ID open for 3 s, FillGaps running: a consumer tailing from the start
// sees every committed event exactly once, in ID order, and no noop. On
// MariaDB and PostgreSQL.
func TestGapConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: long test")
	}
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) { gapConformance(t, e) })
	}
}

func gapConformance(t *testing.T, e engine) {
	total := 20_000 // committed events at least
	if long() {
		total = 100_000
	}
	attempts := total*10/9 + 1000 // 10% are rolled back
	db := e.openDB(t)
	db.SetMaxOpenConns(64)
	table := newEngineTable(t, e, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)

	// The test ends when it stops making progress, not at a fixed time: a
	// busy machine makes it slower, not wrong. stall is far longer than any
	// pause the design allows (the held transaction's 3 s).
	const stall = 2 * time.Minute
	ctx, guard := testguard.Progress(t, stall, "gap conformance (writers and consumer)")

	const writers = 16
	var (
		mu        sync.Mutex
		committed = make(map[int64]string, total)
		wg        sync.WaitGroup
		perWriter = attempts / writers
		filled    atomic.Int64 // writers whose ID a noop took (PostgreSQL)
	)
	// Each transaction inserts a few events so that the total is reached
	// in reasonable time.
	const perTx = 10
	write := func(w int, held bool) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		var mine []int64
		n := perTx
		if held {
			n = 1
		}
		for range n {
			fid := fmt.Sprintf("w%d-%d", w, rand.Int64())
			if _, err := table.Insert(ctx, tx, fid, testType(1+w)); err != nil {
				_ = tx.Rollback()
				mu.Lock()
				for _, id := range mine {
					delete(committed, id)
				}
				mu.Unlock()
				if errors.Is(err, rsql.ErrIDFilled) {
					// The remaining race of PostgreSQL: the writer
					// fails, visibly, and rolls back; its events must
					// not be delivered.
					filled.Add(1)
					return nil
				}
				return err
			}
			var id int64
			if err := tx.QueryRowContext(ctx, e.lastID).Scan(&id); err != nil {
				_ = tx.Rollback()
				return err
			}
			mine = append(mine, id)
			mu.Lock()
			committed[id] = "" // reserved; set on commit
			mu.Unlock()
		}
		delay := time.Duration(rand.IntN(50)) * time.Millisecond
		if held {
			delay = 3 * time.Second
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		if rand.IntN(10) == 0 && !held {
			mu.Lock()
			for _, id := range mine {
				delete(committed, id)
			}
			mu.Unlock()
			return tx.Rollback()
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		guard.Tick()
		mu.Lock()
		for _, id := range mine {
			committed[id] = "ok"
		}
		mu.Unlock()
		return nil
	}

	consumed := make(chan []string, 1)
	var target atomic.Int64 // ID of the final event, once known
	cl := openStreamCtx(ctx, t, table, db, "")
	go func() {
		var got []string
		defer func() { consumed <- got }()
		for {
			e, err := cl.Recv()
			if err != nil {
				t.Errorf("Recv after %d events: %v (%v)", len(got), err, context.Cause(ctx))
				return
			}
			guard.Tick()
			got = append(got, e.ID)
			if e.ForeignID == "0" && e.Type.ReflexType() == 0 {
				t.Errorf("noop event %s delivered", e.ID)
			}
			if tg := target.Load(); tg != 0 && e.IDInt() >= tg {
				return
			}
		}
	}()

	wg.Go(func() {
		// Wait until writers have started, then hold one ID for 3 s.
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
		if err := write(99, true); err != nil {
			t.Errorf("held writer: %v", err)
		}
	})
	for w := range writers {
		wg.Go(func() {
			for range perWriter / perTx {
				if err := write(w, false); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// A final event marks the end; its ID is known before it commits.
	tx, last := openTx(t, db, table, "final")
	target.Store(last)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	var want []string
	mu.Lock()
	for id, st := range committed {
		if st == "ok" {
			want = append(want, strconv.FormatInt(id, 10))
		}
	}
	mu.Unlock()
	want = append(want, strconv.FormatInt(last, 10))
	slices.SortFunc(want, func(a, b string) int {
		x, _ := strconv.ParseInt(a, 10, 64)
		y, _ := strconv.ParseInt(b, 10, 64)
		return cmp.Compare(x, y)
	})

	var got []string
	select {
	case got = <-consumed:
	case <-ctx.Done():
		t.Fatalf("consumer did not reach the final event %d: %v", last, context.Cause(ctx))
	}
	if len(want) < total {
		t.Fatalf("only %d events committed, want >= %d", len(want), total)
	}
	if !equal(got, want) {
		t.Fatalf("consumer saw %d events, want %d committed ones in order (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	t.Logf("%d events committed and consumed in order; %v IDs filled with noops; %d writers failed with ErrIDFilled", len(want),
		value(metrics.NewEventsTable(table.Name()).GapFilled), filled.Load())
}

// firstDiff returns the first index where a and b differ.
func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// value returns the value of a gauge or counter.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if g := d.GetGauge(); g != nil {
		return g.GetValue()
	}
	return d.GetCounter().GetValue()
}

// TestGapFillerSparesRunningInsert: a multi-row INSERT allocates its IDs
// first and writes its rows one by one. An absent ID right after one that
// is written but uncommitted must not be filled at once, or the writer's
// next row would fail with a duplicate key.
func TestGapFillerSparesRunningInsert(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	defer rsql.SetGapConfirm(time.Hour)()
	checked := make(chan struct{}, 1)
	rsql.SetFillCheckHook(func() {
		select {
		case checked <- struct{}{}:
		default:
		}
	})
	defer rsql.SetFillCheckHook(nil)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatalf("FillGaps: %v", err)
	}
	stopGaps(t, table)

	q := table.QuotedName()
	row := func(dbc interface {
		Exec(string, ...any) (sql.Result, error)
	}, id int) error {
		_, err := dbc.Exec(fmt.Sprintf("INSERT INTO %s (id, foreign_id, timestamp, type) VALUES (%d, 'f%d', now(6), 1)", q, id, id))
		return err
	}
	if err := row(db, 1); err != nil {
		t.Fatal(err)
	}
	// The "statement" has written ID 2 and will write 3; ID 4 commits.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := row(tx, 2); err != nil {
		t.Fatal(err)
	}
	if err := row(db, 4); err != nil {
		t.Fatal(err)
	}

	cl := openStream(t, table, db, "")
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("first event %s, want 1", e.ID)
	}
	got := make(chan []string, 1)
	go func() {
		var ids []string
		for len(ids) < 3 {
			e, err := cl.Recv()
			if err != nil {
				break
			}
			ids = append(ids, e.ID+":"+e.ForeignID)
		}
		got <- ids
	}()
	select {
	case <-checked:
	case <-time.After(guard):
		t.Fatal("the gap filler never checked the gap at 2..3")
	}
	if err := row(tx, 3); err != nil {
		t.Fatalf("writing ID 3 after the filler checked it: %v (the filler filled an ID of a running insert)", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if ids := <-got; strings.Join(ids, ",") != "2:f2,3:f3,4:f4" {
		t.Errorf("events after 1 = %v, want 2:f2, 3:f3, 4:f4", ids)
	}
}

// gapsOf returns a channel of the gaps table reports, keeping the first n
// that the test has not received (later ones are dropped).
func gapsOf(t testing.TB, table *rsql.EventsTable, n int) <-chan rsql.Gap {
	t.Helper()
	gaps := make(chan rsql.Gap, n)
	if err := table.ListenGaps(func(g rsql.Gap) {
		select {
		case gaps <- g:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	return gaps
}
