package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// ShardSpecFunc builds the spec that runs one shard of a consumer run by
// RunShardedSpecs, while this runner holds the shard's lease. store is the
// cursor store given to RunShardedSpecs, fenced by the lease: build the
// spec's consumer (or batch, acknowledging or transactional consumer) with
// it, named shard.Name, and keep only the shard's events (for example
// with ParallelConsumer or reflex.WithEventFilter(shard.GetFilter())). It
// is called once per claim of the shard, from the runner's goroutine.
type ShardSpecFunc func(shard ConsumerShard, store reflex.CursorStore) reflex.Spec

// RunSharded runs the consumer name, split into n shards, across every
// process that calls it with the same name, lease store and shard count:
// each shard is run by exactly one live member at a time, and the members
// share the shards fairly. Shard m runs fn for the events of
// ConsumerShards(name, n)[m], with the consumer
// ParallelConsumer(shard, fn, ...) named after the shard
// ("<name>_<m+1>_of_<n>" by default), its cursor in store fenced by the
// shard's lease. Events are hashed by foreign ID by default, so the events
// of one entity are processed in order by one member; see WithShardOptions
// for the hash, the names, consumer options and stream options.
//
// It blocks until ctx is done, then stops the runs of its shards, waits
// for them (their cursors are flushed), releases its leases so that the
// other members take the shards over at once, and returns ctx.Err().
//
// # Leases
//
// Every renew interval (default 5 s, a third of the 15 s TTL; see
// WithLeaseTTL and WithLeaseRenewInterval) a member renews all its leases
// in one call to the store and reads the leases of name in another (two
// statements with the rsql leases table, whatever the number of shards it
// holds and the event rate), then releases the shards over its fair share
// and claims free shards under it (one statement each, only when shares
// change). Members are the runners whose membership lease is live: a
// member that dies is replaced about a TTL plus an interval after its last
// renewal; one that stops releases its shards for the others to claim at
// their next interval; one that joins takes its share from the members
// over theirs, and the other shards keep running. With n = 1 the consumer
// runs in one member at a time, as with RunLeased.
//
// A member stops a shard's run, and refuses the shard's events, half an
// interval before its lease could expire when renewals fail (measured on
// the local monotonic clock from the start of the last renewal the store
// accepted), and when the store says another member holds it. A member
// that was paused past the expiry cannot move a cursor: cursor writes are
// fenced by the lease epoch and fail with ErrLeaseLost, which ends the
// shard's run. Consumers that write to other systems still see an event
// more than once now and then (at-least-once): make them idempotent.
//
// Each shard's run restarts after errors with the backoff of RunForever.
//
// # Errors
//
// Bad input (an empty name, n < 1, a nil argument, a TTL not larger than
// the renew interval, a store that leases cannot fence) returns an error
// wrapping ErrInvalidLease, and a live member running name with another
// shard count returns one wrapping ErrShardCount, before any shard is
// claimed. Store errors wrapping ErrInvalidLease are returned (after the
// shards are stopped); other store errors are retried every interval.
//
// Metrics: reflex_lease_shards_owned, reflex_lease_claims_total,
// reflex_lease_losses_total, reflex_lease_rebalances_total and
// reflex_lease_epoch, labelled with name (and the shard).
func RunSharded(ctx context.Context, leases LeaseStore, name string, n int, stream reflex.StreamFunc, store reflex.CursorStore, fn reflex.ConsumerFunc, opts ...LeaseOption) error {
	if stream == nil || fn == nil {
		return fmt.Errorf("%w: RunSharded: nil stream or consumer function", ErrInvalidLease)
	}
	cfg, err := newLeaseConfig("RunSharded", leases, name, n, opts)
	if err != nil {
		return err
	}
	pc := resolveParallel("RunSharded", cfg.shardOpts)
	build := func(shard ConsumerShard, store reflex.CursorStore, r *leaseRun) reflex.Spec {
		var copts []reflex.ConsumerOption
		if pc.consumerOpts != nil {
			copts = pc.consumerOpts(shard.Name)
		}
		return reflex.NewSpec(stream, store, ParallelConsumer(shard, r.guard(fn), copts...), pc.streamOpts...)
	}
	return runSharded(ctx, leases, name, n, store, cfg, build)
}

// RunShardedSpecs is RunSharded with the spec of each shard built by spec
// (see ShardSpecFunc), for consumers of any shape: batch, acknowledging or
// transactional (rsql.NewTxConsumer) consumers, stream options. The
// events of a shard are those of ConsumerShards(name, n, ...) with the
// options of WithShardOptions (by foreign ID by default); spec must keep
// only those. Its leases, blocking, errors and metrics are those of
// RunSharded. The run's context ends when the lease may no longer be
// used, but events that the consumer receives are not checked one by one
// as RunSharded does.
func RunShardedSpecs(ctx context.Context, leases LeaseStore, name string, n int, store reflex.CursorStore, spec ShardSpecFunc, opts ...LeaseOption) error {
	if spec == nil {
		return fmt.Errorf("%w: RunShardedSpecs: nil spec function", ErrInvalidLease)
	}
	cfg, err := newLeaseConfig("RunShardedSpecs", leases, name, n, opts)
	if err != nil {
		return err
	}
	return runSharded(ctx, leases, name, n, store, cfg, func(shard ConsumerShard, store reflex.CursorStore, _ *leaseRun) reflex.Spec {
		return spec(shard, store)
	})
}

// shardBuilder builds the spec of a shard for its fenced store and run.
type shardBuilder func(shard ConsumerShard, store reflex.CursorStore, r *leaseRun) reflex.Spec

// runSharded runs the shards with checked configuration.
func runSharded(ctx context.Context, leases LeaseStore, name string, n int, store reflex.CursorStore, cfg leaseConfig, build shardBuilder) error {
	if err := checkFence(leases, store, name, n, cfg.owner); err != nil {
		return err
	}
	shards := ConsumerShards(name, n, append([]ParallelOption{WithHashOption(HashOptionEventForeignID)}, cfg.shardOpts...)...)
	runShard := func(ctx context.Context, r *leaseRun) error {
		fenced, err := leases.FenceCursorStore(store, r.lease, func() { r.lose() })
		if err != nil {
			return err
		}
		return RunForeverCtx(ctx, nil, build(shards[r.lease.Shard], fenced, r))
	}
	if n == 1 {
		return holdLease(ctx, leases, name, cfg, runShard)
	}
	m := &member{
		cfg:    cfg,
		leases: leases,
		name:   name,
		n:      n,
		run:    runShard,
		met:    newLeaseMetrics(name),
		runs:   make(map[int]*leaseRun),
		wake:   make(chan struct{}, 1),
	}
	return m.loop(ctx)
}

// member is the loop of RunSharded with n > 1: one member of the consumer.
// Its fields are owned by the loop's goroutine; the runs' goroutines only
// call wakeUp and their leaseRun's methods.
type member struct {
	cfg    leaseConfig
	leases LeaseStore
	name   string
	n      int
	run    func(ctx context.Context, r *leaseRun) error
	met    *leaseMetrics

	base     context.Context // the caller's values, never cancelled
	slot     *Lease          // the membership lease; nil until joined
	verified bool            // a reading after joining found no other shard count
	runs     map[int]*leaseRun
	wake     chan struct{} // a run's goroutine returned; capacity 1
	wg       sync.WaitGroup
}

// loop runs the member until ctx is done or a permanent error, then stops
// its runs, waits for them and releases its membership.
func (m *member) loop(ctx context.Context) error {
	m.base = context.WithoutCancel(ctx)
	var tt tickTimer
	defer tt.stop()
	defer func() {
		m.wg.Wait() // every run has returned by now; this orders the exit
		m.met.setOwned(0)
	}()
	done := ctx.Done()
	var final error // the error to return once the runs have stopped
	tick := tt.next(time.Now(), 0)
	for {
		select {
		case <-done:
			done, final = nil, ctx.Err()
			m.stopAll()
		case <-m.wake:
			m.reap()
		case <-tick:
			start := time.Now()
			if err := m.tick(start, final != nil); err != nil && final == nil {
				final = err
				m.stopAll()
			}
			tick = tt.next(start, m.cfg.interval)
		}
		if final != nil && len(m.runs) == 0 {
			if m.slot != nil {
				octx, cancel := m.opCtx()
				_ = m.leases.ReleaseLeases(octx, []Lease{*m.slot})
				cancel()
				m.slot = nil
			}
			return final
		}
	}
}

// opCtx returns the context of one call to the store: bounded by the
// renew interval, not cancelled with the caller's context (the member
// renews and releases while it stops).
func (m *member) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.base, m.cfg.opTimeout())
}

// tick renews the member's leases, then (unless stopping) reads the leases
// of the consumer and applies the plan. It returns a permanent error.
func (m *member) tick(start time.Time, stopping bool) error {
	if err := m.renew(start); err != nil && permanent(err) {
		return err
	}
	if stopping {
		return nil
	}
	octx, cancel := m.opCtx()
	defer cancel()
	if m.slot == nil {
		if err := m.join(octx); err != nil || m.slot == nil {
			if err != nil && permanent(err) {
				return err
			}
			return nil
		}
	}
	read := time.Now()
	states, err := m.leases.ScanLeases(octx, m.name)
	if err != nil {
		if permanent(err) {
			return err
		}
		return nil
	}
	return m.apply(octx, start, read, states)
}

// renew renews the membership lease and every lease of a run that has not
// ended (stopping runs too, until they release theirs), extending the
// runs' deadlines if the store renewed all of them.
func (m *member) renew(start time.Time) error {
	var ls []Lease
	var rs []*leaseRun
	if m.slot != nil {
		ls = append(ls, *m.slot)
	}
	for _, r := range m.runs {
		if ended, _ := r.state(); !ended && !r.exited() {
			ls = append(ls, r.lease)
			rs = append(rs, r)
		}
	}
	if len(ls) == 0 {
		return nil
	}
	octx, cancel := m.opCtx()
	defer cancel()
	got, err := m.leases.RenewLeases(octx, ls, m.cfg.ttl)
	if err == nil && got == len(ls) {
		until := start.Add(m.cfg.ttl - m.cfg.stopMargin())
		for _, r := range rs {
			r.extend(until)
		}
	}
	// Fewer renewed: the reading that follows tells which were lost.
	return err
}

// join checks that no live member runs another shard count, then claims
// the first free membership lease.
func (m *member) join(ctx context.Context) error {
	states, err := m.leases.ScanLeases(ctx, m.name)
	if err != nil {
		return err
	}
	if err := m.checkCount(states); err != nil {
		return err
	}
	seen := map[int]int64{}
	for _, s := range states {
		if s.Shard < 0 {
			if s.free() {
				seen[s.Shard] = s.Epoch
			} else {
				seen[s.Shard] = -1
			}
		}
	}
	slot := -1
	for seen[slot] < 0 {
		slot--
	}
	l, err := m.leases.ClaimLease(ctx, Lease{Name: m.name, Shard: slot, Shards: m.n, Owner: m.cfg.owner, Epoch: seen[slot]}, m.cfg.ttl)
	if err != nil {
		if errors.Is(err, ErrLeaseTaken) {
			return nil // another member joined first: try again next tick
		}
		return err
	}
	m.slot, m.verified = &l, false
	return nil
}

// checkCount returns an error wrapping ErrShardCount if a live lease of
// another member runs another shard count.
func (m *member) checkCount(states []LeaseState) error {
	for _, s := range states {
		if !s.free() && s.Owner != m.cfg.owner && s.Shards != m.n {
			return fmt.Errorf("%w: member %.64q runs consumer %.64q with %d shards, this one with %d", ErrShardCount, s.Owner, m.name, s.Shards, m.n)
		}
	}
	return nil
}

// apply checks the member's leases against a reading of the store taken
// at read (local time) and carries out the plan of the tick that started
// at start.
func (m *member) apply(ctx context.Context, start, read time.Time, states []LeaseState) error {
	if !m.verified {
		// A member that joined at the same time with another shard count:
		// both leave (neither has claimed a shard).
		if err := m.checkCount(states); err != nil {
			return err
		}
		m.verified = true
	}
	var (
		members   = []string{m.cfg.owner}
		owners    = make([]string, m.n)
		free      = make([]bool, m.n)
		releasing = make([]bool, m.n)
		epochs    = make([]int64, m.n)
		rows      = make([]*LeaseState, m.n)
		slotValid = false
	)
	for i := range free {
		free[i] = true
	}
	for i := range states {
		s := &states[i]
		switch {
		case s.Shard < 0:
			if s.Owner == m.cfg.owner && s.Shard == m.slot.Shard && s.Epoch == m.slot.Epoch && s.Left > 0 {
				slotValid = true
			} else if !s.free() && s.Shards == m.n && !slices.Contains(members, s.Owner) {
				members = append(members, s.Owner)
			}
		case s.Shard < m.n:
			rows[s.Shard] = s
			epochs[s.Shard] = s.Epoch
			if !s.free() {
				free[s.Shard] = false
				owners[s.Shard] = s.Owner
			}
		}
	}
	if !slotValid {
		// Renewals failed for a TTL: every lease of the member is gone.
		// Stop everything and join again at the next tick.
		m.slot = nil
		for _, r := range m.runs {
			r.lose()
		}
		return nil
	}

	for s, r := range m.runs {
		row := rows[s]
		ok := row != nil && row.Owner == m.cfg.owner && row.Epoch == r.lease.Epoch && row.Left > 0
		ended, stopped := r.state()
		switch {
		case ok && !ended:
			r.extend(read.Add(row.Left - m.cfg.stopMargin()))
			releasing[s] = stopped
		case !ok:
			r.lose()
		}
		if !ok || ended || r.exited() {
			// Not ours to plan with: the old run is still stopping, or
			// the lease is someone else's.
			free[s] = false
			if owners[s] == m.cfg.owner {
				owners[s] = ""
			}
		}
	}

	// Leases the store gives this member but that have no run here: a
	// claim whose answer was lost (it timed out after the store made it),
	// or a release that failed. Release them; the next tick plans them.
	var orphans []Lease
	for s, o := range owners {
		if o == m.cfg.owner && m.runs[s] == nil {
			orphans = append(orphans, Lease{Name: m.name, Shard: s, Shards: m.n, Owner: m.cfg.owner, Epoch: epochs[s]})
			owners[s], free[s] = "", false
		}
	}
	if len(orphans) > 0 {
		if err := m.leases.ReleaseLeases(ctx, orphans); err != nil && permanent(err) {
			return err
		}
	}

	p := planShards(m.name, m.n, m.cfg.owner, members, owners, free, releasing)
	for _, s := range p.release {
		m.runs[s].stop()
		m.met.rebalances.Inc()
	}
	// Claims get what is left of half the interval: a claim can wait for
	// a row lock (a paused former holder's transaction), and the next
	// renewal must not be late. Claims left out are made next tick.
	ctx, cancel := context.WithDeadline(ctx, start.Add(m.cfg.interval/2))
	defer cancel()
	for _, s := range p.claim {
		claimed := time.Now()
		l, err := m.leases.ClaimLease(ctx, Lease{Name: m.name, Shard: s, Shards: m.n, Owner: m.cfg.owner, Epoch: epochs[s]}, m.cfg.ttl)
		if err != nil {
			if errors.Is(err, ErrLeaseTaken) {
				continue
			}
			if permanent(err) {
				return err
			}
			return nil
		}
		m.start(l, claimed)
	}
	m.countOwned()
	return nil
}

// start starts the run of the claimed lease l.
func (m *member) start(l Lease, claimed time.Time) {
	m.met.claimed(l)
	r := newLeaseRun(m.base, l, claimed.Add(m.cfg.ttl-m.cfg.stopMargin()), func() { m.met.lost(l) })
	m.runs[l.Shard] = r
	r.start(&m.wg, m.leases, m.cfg.opTimeout(), func(ctx context.Context) error { return m.run(ctx, r) }, m.wakeUp)
}

// stopAll stops every run gracefully (their leases are released).
func (m *member) stopAll() {
	for _, r := range m.runs {
		r.stop()
	}
}

// reap forgets the runs whose goroutine has returned.
func (m *member) reap() {
	for s, r := range m.runs {
		if r.exited() {
			m.met.ended(r.lease)
			delete(m.runs, s)
		}
	}
	m.countOwned()
}

// countOwned sets the owned gauge to the runs whose lease is not lost.
func (m *member) countOwned() {
	n := 0
	for _, r := range m.runs {
		if ended, _ := r.state(); !ended {
			n++
		}
	}
	m.met.setOwned(n)
}

// wakeUp wakes the loop; it never blocks.
func (m *member) wakeUp() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}
