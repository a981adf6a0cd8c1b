package rsql_test

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// leaseStmtCounter counts the statements run through it.
type leaseStmtCounter struct {
	rsql.DBC
	n atomic.Int64
}

func (c *leaseStmtCounter) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	c.n.Add(1)
	return c.DBC.ExecContext(ctx, q, args...)
}

func (c *leaseStmtCounter) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.n.Add(1)
	return c.DBC.QueryContext(ctx, q, args...)
}

func (c *leaseStmtCounter) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	c.n.Add(1)
	return c.DBC.QueryRowContext(ctx, q, args...)
}

// TestLeasesSteadyStateStatements counts the statements of the lease
// store of each of two members running a consumer with 8 shards, once
// the shares are settled: per member and renew interval, one renewal of
// all its leases and one reading of the consumer's leases, whether events
// flow or not. Cursor writes are not lease statements (the fence is part
// of the cursor write).
func TestLeasesSteadyStateStatements(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping a test of several seconds in -short mode")
	}
	db := dbtest.Open(t)
	ctx := t.Context()
	f := newTxFixture(t, leaseDB{"MariaDB", db, rsql.MySQL}, 0, rsql.WithCursorAsyncPeriod(50*time.Millisecond))
	if _, err := db.ExecContext(ctx, rsql.LeasesSchema(rsql.MySQL, "leases")); err != nil {
		t.Fatal(err)
	}
	const (
		interval = 200 * time.Millisecond
		window   = 10 * interval
		// ttl is long for the interval, so that a busy machine does not
		// make a member lose a lease (and claim it again) in the window.
		ttl = 10 * interval
	)
	var consumed atomic.Int64
	fn := func(context.Context, *reflex.Event) error { consumed.Add(1); return nil }
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	counters := []*leaseStmtCounter{{DBC: db}, {DBC: db}}
	for i, c := range counters {
		store := rsql.NewLeasesTable("leases").ToStore(c)
		wg.Go(func() {
			_ = rpatterns.RunSharded(runCtx, store, "overhead", 8, f.events.ToStream(db), f.cursors.ToStore(db), fn,
				rpatterns.WithLeaseOwner(string(rune('a'+i))), rpatterns.WithLeaseTTL(ttl), rpatterns.WithLeaseRenewInterval(interval))
		})
	}
	defer func() { stop(); wg.Wait() }()
	// Settled: each member holds 4 live leases.
	err := testguard.Poll(time.Minute, 50*time.Millisecond, "the shares", func() (int64, bool, error) {
		held := epochs(t, db)
		n := map[string]int{}
		for _, h := range held {
			n[h.owner]++
		}
		return int64(len(held)), n["a"] == 4 && n["b"] == 4, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	measure := func(what string, produce bool) {
		var prod sync.WaitGroup
		pctx, stopProd := context.WithCancel(ctx)
		if produce {
			prod.Go(func() {
				for pctx.Err() == nil {
					f.insert(t, 200)
				}
			})
		}
		before := []int64{counters[0].n.Load(), counters[1].n.Load()}
		c0 := consumed.Load()
		start := time.Now()
		<-time.After(window)
		elapsed := time.Since(start)
		stopProd()
		prod.Wait()
		ticks := float64(elapsed) / float64(interval)
		for i, c := range counters {
			n := c.n.Load() - before[i]
			t.Logf("%s: member %c ran %d lease statements in %v (%.1f renew intervals): %.2f per interval, %.2f per owned shard and interval; %d events consumed",
				what, 'a'+i, n, elapsed.Round(time.Millisecond), ticks, float64(n)/ticks, float64(n)/ticks/4, consumed.Load()-c0)
			if limit := 2 * (int64(ticks) + 1); n > limit {
				t.Errorf("%s: member %c ran %d lease statements in %.1f intervals, want at most 2 per interval (%d)", what, 'a'+i, n, ticks, limit)
			}
		}
	}
	measure("idle", false)
	measure("events flowing", true)

	// One lease (HoldLease, RunLeased, RunSharded with one shard): the
	// holder renews with one statement per interval, a waiting runner
	// reads with one.
	single := []*leaseStmtCounter{{DBC: db}, {DBC: db}}
	var holding atomic.Int32
	for i, c := range single {
		store := rsql.NewLeasesTable("leases").ToStore(c)
		wg.Go(func() {
			_ = rpatterns.HoldLease(runCtx, store, "single", func(ctx context.Context, _ rpatterns.Lease) error {
				holding.Add(1)
				<-ctx.Done()
				holding.Add(-1)
				return nil
			}, rpatterns.WithLeaseOwner(string(rune('x'+i))), rpatterns.WithLeaseTTL(ttl), rpatterns.WithLeaseRenewInterval(interval))
		})
	}
	if err := testguard.Poll(time.Minute, 10*time.Millisecond, "a holder", func() (int64, bool, error) {
		return 0, holding.Load() == 1, nil
	}); err != nil {
		t.Fatal(err)
	}
	<-time.After(2 * interval) // the first claim and catalog reads are done
	before := []int64{single[0].n.Load(), single[1].n.Load()}
	start := time.Now()
	<-time.After(window)
	ticks := float64(time.Since(start)) / float64(interval)
	for i, c := range single {
		n := c.n.Load() - before[i]
		t.Logf("one lease: runner %c ran %d statements in %.1f intervals: %.2f per interval", 'x'+i, n, ticks, float64(n)/ticks)
		if limit := int64(ticks) + 1; n > limit {
			t.Errorf("one lease: runner %c ran %d statements in %.1f intervals, want at most 1 per interval", 'x'+i, n, ticks)
		}
	}
}
