package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// metricValue returns the value of a gauge or counter series.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.GetGauge().GetValue()
	}
	return d.GetCounter().GetValue()
}

const (
	testTTL      = 3 * time.Second
	testInterval = time.Second
)

var errCut = errors.New("test: lease store unreachable")

// cutStore is a member's view of a shared lease store that the test can
// cut off, as a network partition would: every call fails while cut. Fenced
// writes still reach the shared store (they are checked there).
type cutStore struct {
	LeaseStore
	cut atomic.Bool
}

func (c *cutStore) ScanLeases(ctx context.Context, name string) ([]LeaseState, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.LeaseStore.ScanLeases(ctx, name)
}

func (c *cutStore) ClaimLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if c.cut.Load() {
		return Lease{}, errCut
	}
	return c.LeaseStore.ClaimLease(ctx, l, ttl)
}

func (c *cutStore) RenewLeases(ctx context.Context, ls []Lease, ttl time.Duration) (int, error) {
	if c.cut.Load() {
		return 0, errCut
	}
	return c.LeaseStore.RenewLeases(ctx, ls, ttl)
}

func (c *cutStore) ReleaseLeases(ctx context.Context, ls []Lease) error {
	if c.cut.Load() {
		return errCut
	}
	return c.LeaseStore.ReleaseLeases(ctx, ls)
}

// runLog records the runs of shards: who ran which shard when.
type runLog struct {
	mu   sync.Mutex
	runs []shardRunRec
}

type shardRunRec struct {
	owner      string
	shard      int
	start, end time.Time // end zero while running
}

func (l *runLog) begin(owner string, shard int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, shardRunRec{owner: owner, shard: shard, start: time.Now()})
	return len(l.runs) - 1
}

func (l *runLog) finish(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[i].end = time.Now()
}

func (l *runLog) all() []shardRunRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.runs)
}

// running returns, per shard, the owners running it now.
func (l *runLog) running(n int) [][]string {
	out := make([][]string, n)
	for _, r := range l.all() {
		if r.end.IsZero() {
			out[r.shard] = append(out[r.shard], r.owner)
		}
	}
	return out
}

// testMember is one RunShardedSpecs member in the test's bubble.
type testMember struct {
	owner  string
	store  *cutStore
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startMember starts a member named owner running name with n shards over
// log, recording its runs in rl; each shard's consumer records events in
// rec and writes its cursor to cursors (fenced).
func startMember(t *testing.T, leases LeaseStore, owner, name string, n int, log *reflextest.Log, cursors reflex.CursorStore, rl *runLog, rec *recorder, opts ...LeaseOption) *testMember {
	ctx, cancel := context.WithCancel(context.Background())
	m := &testMember{owner: owner, store: &cutStore{LeaseStore: leases}, cancel: cancel, done: make(chan struct{})}
	spec := func(shard ConsumerShard, store reflex.CursorStore) reflex.Spec {
		m := shard.m
		stream := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
			i := rl.begin(owner, m)
			context.AfterFunc(ctx, func() { rl.finish(i) })
			return log.Stream(ctx, after, opts...)
		}
		return reflex.NewSpec(stream, store, ParallelConsumer(shard, rec.fn))
	}
	opts = append([]LeaseOption{WithLeaseOwner(owner), WithLeaseTTL(testTTL), WithLeaseRenewInterval(testInterval)}, opts...)
	go func() {
		defer close(m.done)
		m.err = RunShardedSpecs(ctx, m.store, name, n, cursors, spec, opts...)
	}()
	t.Cleanup(m.stop)
	return m
}

// stop cancels the member and waits for RunShardedSpecs to return.
func (m *testMember) stop() {
	m.cancel()
	<-m.done
}

// owned returns the shards each owner holds a live lease for.
func owned(t *testing.T, leases LeaseStore, name string) map[string][]int {
	t.Helper()
	states, err := leases.ScanLeases(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	for _, s := range states {
		if s.Shard >= 0 && !s.free() {
			out[s.Owner] = append(out[s.Owner], s.Shard)
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func sizes(m map[string][]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// checkOneRunner fails if a shard is run by two members at once.
func checkOneRunner(t *testing.T, rl *runLog, n int) {
	t.Helper()
	for s, owners := range rl.running(n) {
		if len(owners) > 1 {
			t.Errorf("shard %d is run by %v at once", s, owners)
		}
	}
}

func TestRunShardedSharesAndRebalances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const name, n = "shares-and-rebalances", 8
		leases := NewMemLeaseStore()
		log := newLog(40)
		cursors := MemCursorStore()
		rl := &runLog{}
		rec := &recorder{}

		// Metrics are process-wide: compare with their values before.
		rebalances0 := metricValue(t, metrics.LeaseRebalances(name))
		claims0 := 0.0
		for s := range n {
			claims0 += metricValue(t, metrics.LeaseClaims(name, s))
		}
		a := startMember(t, leases, "a", name, n, log, cursors, rl, rec)
		time.Sleep(testInterval / 2)
		synctest.Wait()
		if got := sizes(owned(t, leases, name)); got["a"] != n {
			t.Fatalf("one member holds %v, want all %d shards", got, n)
		}

		b := startMember(t, leases, "b", name, n, log, cursors, rl, rec)
		time.Sleep(3 * testInterval)
		synctest.Wait()
		if got := sizes(owned(t, leases, name)); got["a"] != 4 || got["b"] != 4 {
			t.Fatalf("two members hold %v, want 4 each", got)
		}
		checkOneRunner(t, rl, n)

		// A third member takes 2 shards; the 6 others keep running.
		before := owned(t, leases, name)
		mark := len(rl.all())
		c := startMember(t, leases, "c", name, n, log, cursors, rl, rec)
		time.Sleep(3 * testInterval)
		synctest.Wait()
		after := owned(t, leases, name)
		if got := sizes(after); got["a"] != 3 || got["b"] != 3 || got["c"] != 2 {
			t.Fatalf("three members hold %v, want 3/3/2", got)
		}
		for _, r := range rl.all()[:mark] {
			stays := slices.Contains(after[r.owner], r.shard)
			if stays && !r.end.IsZero() {
				t.Errorf("shard %d of %s stopped when c joined, but it stayed with %s", r.shard, r.owner, r.owner)
			}
		}
		for _, r := range rl.all()[mark:] {
			if r.owner != "c" {
				t.Errorf("shard %d restarted on %s when c joined", r.shard, r.owner)
			}
		}
		_ = before
		checkOneRunner(t, rl, n)
		// Metrics: 8 shards owned in this process, 14 claims (8, 4, 2),
		// 6 releases to rebalance (4 when b joined, 2 when c did).
		if got := metricValue(t, metrics.LeaseShardsOwned(name)); got != n {
			t.Errorf("reflex_lease_shards_owned = %v, want %d", got, n)
		}
		if got := metricValue(t, metrics.LeaseRebalances(name)) - rebalances0; got != 6 {
			t.Errorf("reflex_lease_rebalances_total = %v, want 6", got)
		}
		claims := -claims0
		for s := range n {
			claims += metricValue(t, metrics.LeaseClaims(name, s))
		}
		if claims != 14 {
			t.Errorf("reflex_lease_claims_total sums to %v, want 14", claims)
		}

		// Every event was consumed by its shard, at least once.
		log.Append(reflex.Event{ForeignID: "late", Type: testType(1)})
		time.Sleep(testInterval)
		synctest.Wait()
		seen := map[string]bool{}
		for _, id := range rec.got() {
			seen[id] = true
		}
		for i := 1; i <= 41; i++ {
			if !seen[strconv.Itoa(i)] {
				t.Errorf("event %d never consumed", i)
			}
		}

		// A graceful stop hands c's shards over within one interval.
		cShards := after["c"]
		c.stop()
		if c.err != context.Canceled {
			t.Errorf("RunShardedSpecs = %v, want context.Canceled", c.err)
		}
		stopped := time.Now()
		if got := owned(t, leases, name)["c"]; len(got) != 0 {
			t.Fatalf("c still holds %v after its stop", got)
		}
		time.Sleep(testInterval)
		synctest.Wait()
		got := owned(t, leases, name)
		if s := sizes(got); s["a"] != 4 || s["b"] != 4 {
			t.Fatalf("after c stopped, leases %v, want 4/4", got)
		}
		for _, r := range rl.all() {
			if slices.Contains(cShards, r.shard) && r.owner != "c" && r.start.After(stopped) {
				if d := r.start.Sub(stopped); d > testInterval {
					t.Errorf("shard %d taken over %v after c stopped, want within %v", r.shard, d, testInterval)
				}
			}
		}
		checkOneRunner(t, rl, n)
		a.stop()
		b.stop()
		synctest.Wait() // the test's record of the runs' ends
		if got := owned(t, leases, name); len(got) != 0 {
			t.Fatalf("leases %v held after every member stopped", got)
		}
		for _, r := range rl.all() {
			if r.end.IsZero() {
				t.Errorf("run of shard %d by %s still running after its member returned", r.shard, r.owner)
			}
		}
	})
}

// TestRunShardedPartitionStopsBeforeExpiry cuts a member off the lease
// store: it stops its runs before its leases can expire, and the other
// member takes them over within the TTL plus one interval.
func TestRunShardedPartitionStopsBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const name, n = "orders", 4
		leases := NewMemLeaseStore()
		log := newLog(10)
		cursors := MemCursorStore()
		rl := &runLog{}
		rec := &recorder{}
		a := startMember(t, leases, "a", name, n, log, cursors, rl, rec)
		b := startMember(t, leases, "b", name, n, log, cursors, rl, rec)
		time.Sleep(5 * testInterval)
		synctest.Wait()
		held := owned(t, leases, name)
		if s := sizes(held); s["a"] != 2 || s["b"] != 2 {
			t.Fatalf("leases %v, want 2 each", held)
		}
		// Expiry of b's leases: TTL after its last renewal, which was at
		// most one interval ago.
		states, _ := leases.ScanLeases(context.Background(), name)
		var expiry time.Time
		for _, s := range states {
			if s.Owner == "b" && s.Shard >= 0 {
				expiry = time.Now().Add(s.Left)
			}
		}
		cut := time.Now()
		b.store.cut.Store(true)

		time.Sleep(testTTL + 2*testInterval)
		synctest.Wait()
		if s := sizes(owned(t, leases, name)); s["a"] != n {
			t.Fatalf("after b was cut off, leases %v, want all %d with a", owned(t, leases, name), n)
		}
		for _, r := range rl.all() {
			switch {
			case r.owner == "b" && slices.Contains(held["b"], r.shard):
				if r.end.IsZero() || !r.end.Before(expiry) {
					t.Errorf("b's run of shard %d ended at %v, want before its lease expired at %v", r.shard, r.end.Sub(cut), expiry.Sub(cut))
				}
			case r.owner == "a" && slices.Contains(held["b"], r.shard) && r.start.After(cut):
				if r.start.Before(expiry) {
					t.Errorf("a took shard %d at %v, before b's lease expired at %v", r.shard, r.start.Sub(cut), expiry.Sub(cut))
				}
				if d := r.start.Sub(cut); d > testTTL+testInterval {
					t.Errorf("a took shard %d %v after b was cut off, want within TTL + interval = %v", r.shard, d, testTTL+testInterval)
				}
			}
		}
		checkOneRunner(t, rl, n)

		// b comes back: it rejoins and takes its share again.
		b.store.cut.Store(false)
		time.Sleep(4 * testInterval)
		synctest.Wait()
		if s := sizes(owned(t, leases, name)); s["a"] != 2 || s["b"] != 2 {
			t.Fatalf("after b came back, leases %v, want 2 each", owned(t, leases, name))
		}
		checkOneRunner(t, rl, n)
		a.stop()
		b.stop()
	})
}

// TestRunShardedStaleWriteRejected pauses a member's runs past the expiry
// of its lease (its renewals fail and its deadline timer is held off, as a
// paused process would be): its cursor writes are then refused with
// ErrLeaseLost and change nothing.
func TestRunShardedStaleWriteRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := NewMemLeaseStore()
		cursors := MemCursorStore()
		l, err := leases.ClaimLease(context.Background(), Lease{Name: "c", Shards: 1, Owner: "old"}, testTTL)
		if err != nil {
			t.Fatal(err)
		}
		var lost atomic.Int32
		stale, err := leases.FenceCursorStore(cursors, l, func() { lost.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		if err := stale.SetCursor(context.Background(), "c", "5"); err != nil {
			t.Fatalf("SetCursor while held: %v", err)
		}
		time.Sleep(testTTL + time.Millisecond)
		l2, err := leases.ClaimLease(context.Background(), Lease{Name: "c", Shards: 1, Owner: "new", Epoch: l.Epoch}, testTTL)
		if err != nil {
			t.Fatal(err)
		}
		if l2.Epoch != l.Epoch+1 {
			t.Fatalf("new epoch %d, want %d", l2.Epoch, l.Epoch+1)
		}
		fresh, _ := leases.FenceCursorStore(cursors, l2, nil)
		if err := fresh.SetCursor(context.Background(), "c", "7"); err != nil {
			t.Fatal(err)
		}
		err = stale.SetCursor(context.Background(), "c", "6")
		if !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("stale SetCursor = %v, want ErrLeaseLost", err)
		}
		if got, _ := cursors.GetCursor(context.Background(), "c"); got != "7" {
			t.Fatalf("cursor %q after the stale write, want 7", got)
		}
		if lost.Load() != 1 {
			t.Errorf("lost called %d times, want 1", lost.Load())
		}
		// Renewing and claiming with the old epoch fail too.
		if n, _ := leases.RenewLeases(context.Background(), []Lease{l}, testTTL); n != 0 {
			t.Errorf("stale renewal renewed %d", n)
		}
		if _, err := leases.ClaimLease(context.Background(), Lease{Name: "c", Shards: 1, Owner: "old", Epoch: l.Epoch}, testTTL); !errors.Is(err, ErrLeaseTaken) {
			t.Errorf("claim with a stale epoch = %v, want ErrLeaseTaken", err)
		}
	})
}

// TestRunShardedLostLeaseEndsRun: when another member takes a shard (here
// by hand, after making it expire in the store), the member's run of it
// ends at its next renewal, and its writes are refused meanwhile.
func TestRunShardedLostLeaseEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := NewMemLeaseStore()
		log := newLog(3)
		cursors := MemCursorStore()
		rl := &runLog{}
		rec := &recorder{}
		a := startMember(t, leases, "a", "c", 2, log, cursors, rl, rec)
		time.Sleep(testInterval / 2)
		synctest.Wait()
		// Steal shard 0: expire it in the store and claim it for "thief".
		leases.mu.Lock()
		ml := leases.leases[memLeaseKey{"c", 0}]
		ml.expires = time.Now()
		epoch := ml.epoch
		leases.mu.Unlock()
		if _, err := leases.ClaimLease(context.Background(), Lease{Name: "c", Shard: 0, Shards: 2, Owner: "thief", Epoch: epoch}, time.Hour); err != nil {
			t.Fatal(err)
		}
		time.Sleep(testInterval)
		synctest.Wait()
		for _, r := range rl.all() {
			if r.shard == 0 && r.owner == "a" && r.end.IsZero() {
				t.Errorf("a still runs shard 0 after losing its lease")
			}
		}
		if got := owned(t, leases, "c"); !slices.Equal(got["a"], []int{1}) || !slices.Equal(got["thief"], []int{0}) {
			t.Errorf("leases %v, want a: [1], thief: [0]", got)
		}
		a.stop()
	})
}

func TestRunShardedBadInput(t *testing.T) {
	leases := NewMemLeaseStore()
	store := MemCursorStore()
	spec := func(ConsumerShard, reflex.CursorStore) reflex.Spec { return reflex.Spec{} }
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"empty name", func() error { return RunShardedSpecs(ctx, leases, "", 4, store, spec) }, "empty consumer name"},
		{"zero shards", func() error { return RunShardedSpecs(ctx, leases, "x", 0, store, spec) }, "shard count 0"},
		{"ttl equal to interval", func() error {
			return RunShardedSpecs(ctx, leases, "x", 4, store, spec, WithLeaseTTL(time.Second), WithLeaseRenewInterval(time.Second))
		}, "not larger than the renew interval"},
		{"ttl below interval", func() error {
			return RunShardedSpecs(ctx, leases, "x", 4, store, spec, WithLeaseTTL(time.Second), WithLeaseRenewInterval(2*time.Second))
		}, "not larger than the renew interval"},
		{"negative ttl", func() error { return RunShardedSpecs(ctx, leases, "x", 4, store, spec, WithLeaseTTL(-time.Second)) }, "not positive"},
		{"nil leases", func() error { return RunShardedSpecs(ctx, nil, "x", 4, store, spec) }, "nil lease store"},
		{"nil store", func() error { return RunShardedSpecs(ctx, leases, "x", 4, nil, spec) }, "nil cursor store"},
		{"nil spec", func() error { return RunShardedSpecs(ctx, leases, "x", 4, store, nil) }, "nil spec function"},
		{"long name", func() error { return RunShardedSpecs(ctx, leases, string(make([]byte, 1<<20)), 4, store, spec) }, "longer than 255"},
		{"bad owner", func() error { return RunShardedSpecs(ctx, leases, "x", 4, store, spec, WithLeaseOwner("\xff")) }, "not valid UTF-8"},
		{"nil fn", func() error { return RunSharded(ctx, leases, "x", 4, newLog(1).Stream, store, nil) }, "nil stream or consumer function"},
		{"nil f", func() error { return HoldLease(ctx, leases, "x", nil) }, "nil function"},
		{"nil consumer", func() error { return RunLeased(ctx, leases, newLog(1).Stream, store, nil) }, "nil stream, cursor store or consumer"},
		{"nil option", func() error { return RunShardedSpecs(ctx, leases, "x", 4, store, spec, nil) }, "nil option"},
		{"nil shard option", func() error {
			return RunShardedSpecs(ctx, leases, "x", 4, store, spec, WithShardOptions(nil))
		}, "nil shard option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, ErrInvalidLease) || !containsStr(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalidLease saying %q", err, tc.want)
			}
			if len(err.Error()) > 512 {
				t.Errorf("error of %d bytes, want a bounded message", len(err.Error()))
			}
		})
	}
	if got := owned(t, leases, "x"); len(got) != 0 {
		t.Errorf("bad input claimed %v", got)
	}
}

func containsStr(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || containsStr(s[1:], sub)))
}

// TestRunShardedShardCountMismatch: a member that starts with another
// shard count while one runs gets ErrShardCount and claims nothing; the
// running member is not disturbed.
func TestRunShardedShardCountMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := NewMemLeaseStore()
		log := newLog(3)
		rl := &runLog{}
		rec := &recorder{}
		a := startMember(t, leases, "a", "c", 8, log, MemCursorStore(), rl, rec)
		time.Sleep(testInterval / 2)
		synctest.Wait()

		for _, n := range []int{4, 1} {
			b := startMember(t, leases, "b", "c", n, log, MemCursorStore(), rl, rec)
			<-b.done
			if !errors.Is(b.err, ErrShardCount) || !containsStr(b.err.Error(), "8 shards") {
				t.Fatalf("n=%d: RunShardedSpecs = %v, want ErrShardCount naming 8 shards", n, b.err)
			}
		}
		err := HoldLease(context.Background(), leases, "c", func(context.Context, Lease) error { return nil },
			WithLeaseTTL(testTTL), WithLeaseRenewInterval(testInterval))
		if !errors.Is(err, ErrShardCount) {
			t.Fatalf("HoldLease = %v, want ErrShardCount", err)
		}
		states, _ := leases.ScanLeases(context.Background(), "c")
		for _, s := range states {
			if s.Owner != "a" {
				t.Errorf("lease %+v held by another member than a", s)
			}
		}
		if got := sizes(owned(t, leases, "c")); got["a"] != 8 {
			t.Errorf("a holds %v, want 8", got)
		}
		for _, r := range rl.all() {
			if r.owner != "a" {
				t.Errorf("%s ran shard %d", r.owner, r.shard)
			}
		}
		a.stop()
	})
}

func TestHoldLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := NewMemLeaseStore()
		opts := []LeaseOption{WithLeaseTTL(testTTL), WithLeaseRenewInterval(testInterval)}
		var active atomic.Int32
		var mu sync.Mutex
		var holders []string
		hold := func(ctx context.Context, owner string) error {
			return HoldLease(ctx, leases, "filler", func(ctx context.Context, l Lease) error {
				if active.Add(1) != 1 {
					t.Errorf("two holders at once")
				}
				mu.Lock()
				holders = append(holders, fmt.Sprintf("%s@%d", l.Owner, l.Epoch))
				mu.Unlock()
				<-ctx.Done()
				active.Add(-1)
				return nil
			}, append(opts, WithLeaseOwner(owner))...)
		}
		ctxA, stopA := context.WithCancel(context.Background())
		ctxB, stopB := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var errA, errB error
		wg.Go(func() { errA = hold(ctxA, "a") })
		time.Sleep(time.Millisecond)
		wg.Go(func() { errB = hold(ctxB, "b") })
		time.Sleep(3 * testInterval)
		synctest.Wait()
		stopA()
		stopped := time.Now()
		time.Sleep(testInterval)
		synctest.Wait()
		mu.Lock()
		got := slices.Clone(holders)
		mu.Unlock()
		if !slices.Equal(got, []string{"a@1", "b@2"}) {
			t.Fatalf("holders %v, want a@1 then b@2", got)
		}
		_ = stopped
		stopB()
		wg.Wait()
		if errA != context.Canceled || errB != context.Canceled {
			t.Errorf("HoldLease = %v, %v; want context.Canceled", errA, errB)
		}
		if got := owned(t, leases, "filler"); len(got) != 0 {
			t.Errorf("lease held after both returned: %v", got)
		}

		// f returning on its own ends HoldLease with its error, released.
		errF := errors.New("done")
		if err := HoldLease(context.Background(), leases, "filler", func(context.Context, Lease) error { return errF }, opts...); err != errF {
			t.Errorf("HoldLease = %v, want f's error", err)
		}
		if got := owned(t, leases, "filler"); len(got) != 0 {
			t.Errorf("lease held after f returned: %v", got)
		}
	})
}

// TestRunLeasedOneAtATime runs one consumer in two runners: only one
// consumes; when it stops the other goes on from its cursor.
func TestRunLeasedOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := NewMemLeaseStore()
		log := newLog(5)
		cursors := MemCursorStore()
		opts := []LeaseOption{WithLeaseTTL(testTTL), WithLeaseRenewInterval(testInterval)}
		var byOwner [2]recorder
		var stops [2]context.CancelFunc
		var dones [2]chan error
		for i := range 2 {
			var ctx context.Context
			ctx, stops[i] = context.WithCancel(context.Background())
			dones[i] = make(chan error, 1)
			c := reflex.NewConsumer("projector", byOwner[i].fn)
			go func() {
				dones[i] <- RunLeased(ctx, leases, log.Stream, cursors, c, append(opts, WithLeaseOwner(strconv.Itoa(i)))...)
			}()
			t.Cleanup(func() { stops[i](); <-dones[i] })
			time.Sleep(time.Millisecond)
		}
		time.Sleep(2 * testInterval)
		synctest.Wait()
		if len(byOwner[0].got()) != 5 || len(byOwner[1].got()) != 0 {
			t.Fatalf("consumed %v and %v, want all 5 by the first", byOwner[0].got(), byOwner[1].got())
		}
		stops[0]()
		if err := <-dones[0]; err != context.Canceled {
			t.Errorf("RunLeased = %v, want context.Canceled", err)
		}
		dones[0] <- nil // for the cleanup
		stopped := time.Now()
		log.Append(reflex.Event{ForeignID: "x", Type: testType(1)})
		time.Sleep(testInterval)
		synctest.Wait()
		if got := byOwner[1].got(); !slices.Equal(got, []string{"6"}) {
			t.Fatalf("second runner consumed %v within %v of the first one's stop, want [6]", got, time.Since(stopped))
		}
		if c, _ := cursors.GetCursor(context.Background(), "projector"); c != "6" {
			t.Errorf("cursor %q, want 6", c)
		}
	})
}

// TestRunShardedOrphanLease: a lease the store gives a member that has no
// run for it (a claim whose answer was lost, a release that failed) is
// released and claimed again, not left held without a run.
func TestRunShardedOrphanLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := NewMemLeaseStore()
		if _, err := leases.ClaimLease(context.Background(), Lease{Name: "c", Shard: 1, Shards: 2, Owner: "a"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		rl := &runLog{}
		a := startMember(t, leases, "a", "c", 2, newLog(3), MemCursorStore(), rl, &recorder{})
		time.Sleep(3 * testInterval)
		synctest.Wait()
		if got := owned(t, leases, "c"); !slices.Equal(got["a"], []int{0, 1}) {
			t.Fatalf("leases %v, want a: [0 1]", got)
		}
		if st := rl.running(2); len(st[0]) != 1 || len(st[1]) != 1 {
			t.Fatalf("runs %v, want one run of each shard", st)
		}
		states, _ := leases.ScanLeases(context.Background(), "c")
		for _, s := range states {
			if s.Shard == 1 && s.Epoch != 2 {
				t.Errorf("shard 1 at epoch %d, want 2 (the orphan released, then claimed)", s.Epoch)
			}
		}
		a.stop()
	})
}

// countStore counts the calls to a lease store.
type countStore struct {
	LeaseStore
	scans, renews, claims atomic.Int64
}

func (c *countStore) ScanLeases(ctx context.Context, name string) ([]LeaseState, error) {
	c.scans.Add(1)
	return c.LeaseStore.ScanLeases(ctx, name)
}

func (c *countStore) RenewLeases(ctx context.Context, ls []Lease, ttl time.Duration) (int, error) {
	c.renews.Add(1)
	return c.LeaseStore.RenewLeases(ctx, ls, ttl)
}

func (c *countStore) ClaimLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	c.claims.Add(1)
	return c.LeaseStore.ClaimLease(ctx, l, ttl)
}

// TestLeaseRenewCadence: by default a member renews every third of the
// TTL: in steady state one renewal (of all its leases) and one reading per
// interval for a sharded consumer, one renewal per interval for a single
// lease, whatever the number of shards.
func TestLeaseRenewCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 3 * time.Second // interval 1 s by default
		ctx, cancel := context.WithCancel(context.Background())
		sharded := &countStore{LeaseStore: NewMemLeaseStore()}
		single := &countStore{LeaseStore: NewMemLeaseStore()}
		var wg sync.WaitGroup
		wg.Go(func() {
			_ = RunShardedSpecs(ctx, sharded, "c", 8, MemCursorStore(), func(s ConsumerShard, store reflex.CursorStore) reflex.Spec {
				return reflex.NewSpec(newLog(0).Stream, store, ParallelConsumer(s, func(context.Context, *reflex.Event) error { return nil }))
			}, WithLeaseTTL(ttl))
		})
		wg.Go(func() {
			_ = HoldLease(ctx, single, "c", func(ctx context.Context, _ Lease) error { <-ctx.Done(); return nil }, WithLeaseTTL(ttl))
		})
		time.Sleep(ttl / 6) // the first tick (join, claims) is done
		synctest.Wait()
		r0, s0, c0 := sharded.renews.Load(), sharded.scans.Load(), sharded.claims.Load()
		h0, hs0 := single.renews.Load(), single.scans.Load()
		time.Sleep(10 * ttl / 3)
		synctest.Wait()
		if r, s, c := sharded.renews.Load()-r0, sharded.scans.Load()-s0, sharded.claims.Load()-c0; r != 10 || s != 10 || c != 0 {
			t.Errorf("sharded member in 10 intervals: %d renewals, %d readings, %d claims; want 10, 10, 0", r, s, c)
		}
		if r, s := single.renews.Load()-h0, single.scans.Load()-hs0; r != 10 || s != 0 {
			t.Errorf("lease holder in 10 intervals: %d renewals, %d readings; want 10, 0", r, s)
		}
		cancel()
		wg.Wait()
	})
}
