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

	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// leaseTestStore is a lease store whose claims wait for gate (if not
// nil) and whose releases do nothing while dead is set (a process that
// died leaves its lease to expire).
type leaseTestStore struct {
	rpatterns.LeaseStore
	gate chan struct{}
	dead atomic.Bool
}

func (s *leaseTestStore) ClaimLease(ctx context.Context, l rpatterns.Lease, ttl time.Duration) (rpatterns.Lease, error) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return rpatterns.Lease{}, ctx.Err()
		}
	}
	return s.LeaseStore.ClaimLease(ctx, l, ttl)
}

func (s *leaseTestStore) ReleaseLeases(ctx context.Context, ls []rpatterns.Lease) error {
	if s.dead.Load() {
		return nil
	}
	return s.LeaseStore.ReleaseLeases(ctx, ls)
}

// newEngineLeases creates a fresh leases table in db of engine e and
// returns its store.
func newEngineLeases(t *testing.T, e engine, db *sql.DB) rpatterns.LeaseStore {
	t.Helper()
	name := fmt.Sprintf("leases_%d", tableSeq.Add(1))
	if _, err := db.ExecContext(t.Context(), rsql.LeasesSchema(e.d, name)); err != nil {
		t.Fatal(err)
	}
	return rsql.NewLeasesTable(name, rsql.WithLeasesDialect(e.d)).ToStore(db)
}

// replica is one FillGapsLeased call, as one replica of a service runs.
type replica struct {
	table  *rsql.EventsTable
	cancel context.CancelFunc
	done   chan error
}

// startReplica runs FillGapsLeased on table with leases as owner, with a
// lease TTL of 600 ms.
func startReplica(t *testing.T, db *sql.DB, table *rsql.EventsTable, leases rpatterns.LeaseStore, owner string) *replica {
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{table: table, cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- rsql.FillGapsLeased(ctx, db, table, leases, rpatterns.WithLeaseTTL(600*time.Millisecond), rpatterns.WithLeaseOwner(owner))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(guard):
			t.Errorf("FillGapsLeased of %s did not return after cancel", owner)
		}
	})
	return r
}

// stop cancels r and checks that FillGapsLeased returns context.Canceled.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("FillGapsLeased after cancel: %v, want context.Canceled", err)
		}
		r.done <- err // for the cleanup
	case <-time.After(guard):
		t.Fatal("FillGapsLeased did not return after cancel")
	}
}

// waitHolder waits until the lease of the gap filler of table is held by
// owner.
func waitHolder(t *testing.T, leases rpatterns.LeaseStore, table *rsql.EventsTable, owner string) {
	t.Helper()
	var polls int64
	err := testguard.Poll(guard, 10*time.Millisecond, "the gap filler lease going to "+owner, func() (int64, bool, error) {
		polls++
		states, err := leases.ScanLeases(context.Background(), rsql.GapFillerLeaseName(table.Name()))
		if err != nil {
			return 0, false, err
		}
		for _, s := range states {
			if s.Owner == owner && s.Left > 0 {
				return polls, true, nil
			}
		}
		return 0, false, nil // no progress until it is held
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rolledBackGap makes a gap: an event whose transaction rolls back,
// followed by a committed one; it returns the missing ID.
func rolledBackGap(t *testing.T, db *sql.DB, table *rsql.EventsTable) int64 {
	t.Helper()
	tx, id := openTx(t, db, table, "rolled back")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	insertN(t, db, table, 1, 1)
	return id
}

// rowsWithID returns the number of rows of table with ID id.
func rowsWithID(t *testing.T, e engine, db *sql.DB, table *rsql.EventsTable, id int64) int {
	t.Helper()
	var n int
	if err := db.QueryRow(e.q("SELECT COUNT(*) FROM "+table.Name()+" WHERE id = ?"), id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFilled waits until the ID id of table is filled, reporting the
// fills of by as progress.
func waitFilled(t *testing.T, e engine, db *sql.DB, table, by *rsql.EventsTable, id int64) {
	t.Helper()
	err := testguard.Poll(guard, 10*time.Millisecond, fmt.Sprintf("filling ID %d", id), func() (int64, bool, error) {
		return by.GapFills(), rowsWithID(t, e, db, table, id) == 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFillGapsLeased runs two replicas of the gap filler of one table,
// each with its own EventsTable: only the lease holder fills, a stream of
// the other passes the gap, and after the holder stops (or dies: its
// lease is left to expire) the other takes over and fills the gaps left
// while nobody held the lease and those after.
func TestFillGapsLeased(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		for _, dies := range []bool{false, true} {
			t.Run(map[bool]string{false: "stops", true: "dies"}[dies], func(t *testing.T) { testFillGapsLeased(t, e, dies) })
		}
	})
}

func testFillGapsLeased(t *testing.T, e engine, dies bool) {
	db := e.openDB(t)
	tableA := newEngineTable(t, e, db)
	tableB := rsql.NewEventsTable(tableA.Name(), rsql.WithEventsDialect(e.d), rsql.WithEventMetadataField("metadata"), rsql.WithEventTraceField("trace"))
	t.Cleanup(func() { tableB.Close() })
	leases := newEngineLeases(t, e, db)
	storeA := &leaseTestStore{LeaseStore: leases}
	storeB := &leaseTestStore{LeaseStore: leases, gate: make(chan struct{})}

	a := startReplica(t, db, tableA, storeA, "A")
	waitHolder(t, leases, tableA, "A")
	b := startReplica(t, db, tableB, storeB, "B") // its claims wait for the gate

	// A gap: A fills it; a stream of B passes it.
	insertN(t, db, tableA, 1, 1)
	gap1 := rolledBackGap(t, db, tableA)
	cl := openStream(t, tableB, db, strconv.FormatInt(gap1-1, 10))
	if ev := recvWithin(t, cl); ev.ID != strconv.FormatInt(gap1+1, 10) {
		t.Fatalf("B's stream after %d got %s, want %d", gap1-1, ev.ID, gap1+1)
	}
	closeClient(cl)
	if rowsWithID(t, e, db, tableA, gap1) != 1 {
		t.Fatalf("ID %d is not filled", gap1)
	}
	fillsA := tableA.GapFills()
	if fillsA == 0 || tableB.GapFills() != 0 {
		t.Fatalf("fills: A %d, B %d; want only A, the holder", fillsA, tableB.GapFills())
	}

	// A stops (or dies); B cannot claim yet: nobody fills a gap now.
	storeA.dead.Store(dies)
	a.stop(t)
	gap2 := rolledBackGap(t, db, tableA)
	if got := drain(t, tableA.ToStream(db), strconv.FormatInt(gap2-1, 10)); len(got) != 0 {
		t.Fatalf("stream of A passed the unfilled gap at %d: %v", gap2, ids(got))
	}
	if got := drain(t, tableB.ToStream(db), strconv.FormatInt(gap2-1, 10)); len(got) != 0 {
		t.Fatalf("stream of B passed the unfilled gap at %d: %v", gap2, ids(got))
	}
	if n := rowsWithID(t, e, db, tableA, gap2); n != 0 {
		t.Fatalf("ID %d was filled while nobody held the lease", gap2)
	}

	// B takes over (after A's lease expires if A died) and finds the gap
	// made while nobody held the lease, with no stream of its own.
	close(storeB.gate)
	waitHolder(t, leases, tableB, "B")
	waitFilled(t, e, db, tableA, tableB, gap2)

	// And fills the gaps after: a stream of A passes them.
	gap3 := rolledBackGap(t, db, tableA)
	cl = openStream(t, tableA, db, strconv.FormatInt(gap3-1, 10))
	if ev := recvWithin(t, cl); ev.ID != strconv.FormatInt(gap3+1, 10) {
		t.Fatalf("A's stream after %d got %s, want %d", gap3-1, ev.ID, gap3+1)
	}
	closeClient(cl)
	if got := tableA.GapFills(); got != fillsA {
		t.Errorf("A filled %d gaps after it stopped", got-fillsA)
	}
	if tableB.GapFills() == 0 {
		t.Error("B filled no gap")
	}

	// Nothing runs after both stop.
	b.stop(t)
	if v := value(metrics.NewEventsTable(tableA.Name()).GapListening); v != 0 {
		t.Errorf("gap listening gauge after both stopped = %v, want 0", v)
	}
}

// TestFillGapsLeasedStoppedTable: a table whose gap listeners are stopped
// ends FillGapsLeased with ErrGapListenerStopped, before and while it
// runs; ListenGaps and FillGaps on it work as before meanwhile.
func TestFillGapsLeasedStoppedTable(t *testing.T) {
	e := mariaDB
	db := e.openDB(t)
	leases := newEngineLeases(t, e, db)
	opts := []rpatterns.LeaseOption{rpatterns.WithLeaseTTL(600 * time.Millisecond)}

	closed := newEngineTable(t, e, db)
	closed.Close()
	if err := rsql.FillGapsLeased(t.Context(), db, closed, leases, opts...); !errors.Is(err, rsql.ErrGapListenerStopped) {
		t.Errorf("FillGapsLeased on a closed table: %v, want ErrGapListenerStopped", err)
	}

	table := newEngineTable(t, e, db)
	gaps := gapsOf(t, table, 100)
	r := startReplica(t, db, table, leases, "A")
	waitHolder(t, leases, table, "A")
	// The listener still hears the gaps, which the leased filler fills.
	insertN(t, db, table, 1, 1)
	gap := rolledBackGap(t, db, table)
	waitFilled(t, e, db, table, table, gap)
	select {
	case g := <-gaps:
		if g.Prev != gap-1 || g.Next != gap+1 {
			t.Errorf("listener got %+v, want the gap at %d", g, gap)
		}
	case <-time.After(guard):
		t.Error("the listener heard no gap")
	}
	if err := table.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		if !errors.Is(err, rsql.ErrGapListenerStopped) {
			t.Errorf("FillGapsLeased after Close: %v, want ErrGapListenerStopped", err)
		}
		r.done <- err
	case <-time.After(guard):
		t.Fatal("FillGapsLeased did not return after Close")
	}
	// It released the lease.
	states, err := leases.ScanLeases(t.Context(), rsql.GapFillerLeaseName(table.Name()))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Owner != "" && s.Left > 0 {
			t.Errorf("lease still held after FillGapsLeased returned: %+v", s)
		}
	}
}

// TestFillGapsLeasedWithFillGaps: a FillGaps on the same table fills as
// documented while FillGapsLeased holds the lease and after it stops.
func TestFillGapsLeasedWithFillGaps(t *testing.T) {
	e := mariaDB
	db := e.openDB(t)
	leases := newEngineLeases(t, e, db)
	table := newEngineTable(t, e, db)
	r := startReplica(t, db, table, leases, "A")
	waitHolder(t, leases, table, "A")
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	insertN(t, db, table, 1, 1)
	gap := rolledBackGap(t, db, table)
	waitFilled(t, e, db, table, table, gap)
	r.stop(t)
	// The plain filler goes on after the leased one stopped.
	gap = rolledBackGap(t, db, table)
	cl := openStream(t, table, db, strconv.FormatInt(gap-1, 10))
	if ev := recvWithin(t, cl); ev.ID != strconv.FormatInt(gap+1, 10) {
		t.Fatalf("stream after %d got %s, want %d", gap-1, ev.ID, gap+1)
	}
}

func TestFillGapsLeasedBadInput(t *testing.T) {
	e := mariaDB
	db := e.openDB(t)
	leases := newEngineLeases(t, e, db)
	table := newEngineTable(t, e, db)
	ctx := t.Context()
	for _, c := range []struct {
		name   string
		db     *sql.DB
		gl     rsql.GapListenable
		leases rpatterns.LeaseStore
		opts   []rpatterns.LeaseOption
		want   string
	}{
		{"nil db", nil, table, leases, nil, "nil *sql.DB"},
		{"nil table", db, nil, leases, nil, "nil events table"},
		{"nil *EventsTable", db, (*rsql.EventsTable)(nil), leases, nil, "nil events table"},
		{"nil *EventsTableInt", db, (*rsql.EventsTableInt)(nil), leases, nil, "nil events table"},
		{"zero EventsTable", db, &rsql.EventsTable{}, leases, nil, "not made by NewEventsTable"},
		{"nil leases", db, table, nil, nil, "nil lease store"},
		{"bad TTL", db, table, leases, []rpatterns.LeaseOption{rpatterns.WithLeaseTTL(time.Second), rpatterns.WithLeaseRenewInterval(time.Second)}, "not larger than the renew interval"},
	} {
		err := rsql.FillGapsLeased(ctx, c.db, c.gl, c.leases, c.opts...)
		if !errors.Is(err, rpatterns.ErrInvalidLease) || !strings.Contains(fmt.Sprint(err), c.want) {
			t.Errorf("%s: %v, want ErrInvalidLease with %q", c.name, err, c.want)
		}
	}

	// A lease name longer than the leases table's name column.
	if _, err := db.Exec("CREATE TABLE narrow_leases (name VARBINARY(20) NOT NULL, shard INT NOT NULL, shards INT NOT NULL, " +
		"owner VARBINARY(255) NOT NULL, epoch BIGINT NOT NULL, expires_at DATETIME(6) NOT NULL, PRIMARY KEY (name, shard))"); err != nil {
		t.Fatal(err)
	}
	narrow := rsql.NewLeasesTable("narrow_leases").ToStore(db)
	err := rsql.FillGapsLeased(ctx, db, table, narrow, rpatterns.WithLeaseTTL(600*time.Millisecond))
	if !errors.Is(err, rpatterns.ErrInvalidLease) {
		t.Errorf("lease name too long for the leases table: %v, want ErrInvalidLease", err)
	}
	t.Logf("too long: %v", err)

	if got, want := rsql.GapFillerLeaseName("`app`.`events`"), "rsql_gap_filler_app.events"; got != want {
		t.Errorf("GapFillerLeaseName = %q, want %q", got, want)
	}
}
