//go:build unix

package faulttest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/internal/wait"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// The targets every scenario asserts.
const (
	// recoveryTarget bounds the time from the moment a faulty peer is
	// reachable again (the proxy heals, the server answers a ping or
	// accepts connections) to the first new event (not a redelivery)
	// consumed after it.
	recoveryTarget = 2 * time.Second
	// shutdownBound bounds the time from cancelling a consumer's run to
	// RunForever returning, and the time CursorsTable.Close takes, even
	// while the database does not answer: the 10 s the library documents
	// as the timeout of Run's final flush and of the flush of Close, plus
	// a margin for a busy machine.
	shutdownBound = reflex.RunFlushTimeout + 2*time.Second
)

// Hang guards: long enough for any slow machine, short enough that a
// stuck scenario ends with a clear cause.
const (
	// stallGuard ends a scenario when nothing was produced, consumed or
	// done for this long.
	stallGuard = 2 * time.Minute
	// recoveryGuard ends the wait for the first event after a fault:
	// RunForever waits up to a minute between runs.
	recoveryGuard = 90 * time.Second
	// insertTimeout bounds one insert of a producer, which hangs while the
	// database is frozen or partitioned.
	insertTimeout = 3 * time.Second
)

type evType int

func (t evType) ReflexType() int { return int(t) }

// runErr is an error a run of the consumer ended with.
type runErr struct {
	at    time.Time
	where string
	err   string
}

// ledger records what producers committed and what the consumer consumed,
// and checks the invariants: every committed event consumed at least
// once, event IDs strictly increasing within a run (and past the cursor
// the run started from), no noop event, and a stored cursor never ahead of
// what was consumed. It is safe for concurrent use.
type ledger struct {
	mu        sync.Mutex // protects the following fields
	committed map[string]bool
	failed    int            // inserts that returned an error (maybe committed)
	consumed  map[string]int // foreign ID -> deliveries
	ids       map[int64]bool // IDs of consumed events
	maxID     int64
	times     []time.Time // of each consumed event, in order
	fresh     []bool      // for each: its ID is above every ID consumed before
	runs      int
	runFrom   int64 // the cursor the current run started from
	runLast   int64 // the last ID consumed in the current run
	bad       []string
	badCount  int
	errs      []runErr
	errCount  int
}

func newLedger() *ledger {
	return &ledger{
		committed: map[string]bool{},
		consumed:  map[string]int{},
		ids:       map[int64]bool{},
	}
}

// violationLocked records a broken invariant (the first 20 are kept).
func (l *ledger) violationLocked(format string, args ...any) {
	l.badCount++
	if len(l.bad) < 20 {
		l.bad = append(l.bad, fmt.Sprintf(format, args...))
	}
}

func (l *ledger) commit(fids ...string) {
	l.mu.Lock()
	for _, f := range fids {
		l.committed[f] = true
	}
	l.mu.Unlock()
}

func (l *ledger) insertFailed() {
	l.mu.Lock()
	l.failed++
	l.mu.Unlock()
}

// startRun records the start of a run from cursor (GetCursor's result).
func (l *ledger) startRun(cursor string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs++
	l.runLast = 0
	l.runFrom = 0
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil {
			l.violationLocked("run %d starts from cursor %q, not an event ID", l.runs, cursor)
		}
		l.runFrom = n
	}
}

// consume records a consumed event and checks it.
func (l *ledger) consume(e *reflex.Event) {
	now := time.Now()
	id := e.IDInt()
	l.mu.Lock()
	if e.ForeignID == "0" && (e.Type == nil || e.Type.ReflexType() == 0) {
		l.violationLocked("run %d: noop event %s delivered", l.runs, e.ID)
	}
	if id <= l.runLast {
		l.violationLocked("run %d: event %d after event %d", l.runs, id, l.runLast)
	}
	if id <= l.runFrom {
		l.violationLocked("run %d: event %d at or before the cursor %d it started from", l.runs, id, l.runFrom)
	}
	l.runLast = id
	l.consumed[e.ForeignID]++
	l.ids[id] = true
	l.times = append(l.times, now)
	l.fresh = append(l.fresh, id > l.maxID)
	l.maxID = max(l.maxID, id)
	l.mu.Unlock()
}

func (l *ledger) runError(where string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errCount++
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	l.errs = append(l.errs, runErr{at: time.Now(), where: where, err: msg})
	if len(l.errs) > 50 {
		l.errs = l.errs[1:]
	}
}

// firstNewAfter returns the time of the first new event (one above every
// event consumed before it: not a redelivery) consumed at or after t0.
func (l *ledger) firstNewAfter(t0 time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.times, t0, func(a, b time.Time) int { return a.Compare(b) })
	for ; i < len(l.times); i++ {
		if l.fresh[i] {
			return l.times[i], true
		}
	}
	return time.Time{}, false
}

// lastBefore returns the time of the last event consumed before t0.
func (l *ledger) lastBefore(t0 time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.times, t0, func(a, b time.Time) int { return a.Compare(b) })
	if i == 0 {
		return time.Time{}, false
	}
	return l.times[i-1], true
}

// maxConsumed returns the highest event ID consumed.
func (l *ledger) maxConsumed() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxID
}

// counts returns the events consumed (deliveries) and the distinct
// committed events consumed.
func (l *ledger) counts() (deliveries, committedSeen, committed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for f := range l.committed {
		if l.consumed[f] > 0 {
			committedSeen++
		}
	}
	return len(l.times), committedSeen, len(l.committed)
}

func (l *ledger) runCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runs
}

func (l *ledger) delivered() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.times)
}

// checkCursor checks a stored cursor ("" for none) against the events
// consumed so far: it must be the ID of a consumed event.
func (l *ledger) checkCursor(t *testing.T, what, cursor string) {
	t.Helper()
	if cursor == "" {
		return
	}
	n, err := strconv.ParseInt(cursor, 10, 64)
	l.mu.Lock()
	ok, maxID := err == nil && l.ids[n], l.maxID
	l.mu.Unlock()
	if !ok {
		t.Errorf("%s: stored cursor %q is not a consumed event (consumed up to %d): ahead of consumption", what, cursor, maxID)
	}
}

// checkFinal checks the invariants at the end of a scenario and logs the
// counts.
func (l *ledger) checkFinal(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var missing []string
	for f := range l.committed {
		if l.consumed[f] == 0 {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("%d of %d committed events never consumed, e.g. %v", len(missing), len(l.committed), missing[:min(10, len(missing))])
	}
	if l.badCount > 0 {
		t.Errorf("%d invariant violations:\n%s", l.badCount, strings.Join(l.bad, "\n"))
	}
	t.Logf("committed %d events (%d more inserts failed), %d deliveries (%d redelivered), %d runs, %d run errors",
		len(l.committed), l.failed, len(l.times), len(l.times)-len(l.consumed), l.runs, l.errCount)
	for _, e := range l.errs[max(0, len(l.errs)-3):] {
		t.Logf("  last run errors: at %s (%s): %s", e.at.Format("15:04:05.000"), e.where, e.err)
	}
}

// logErrors logs the run errors since start (up to the last 50 kept).
func (l *ledger) logErrors(t *testing.T, start time.Time) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		if !e.at.Before(start) {
			t.Logf("  run error at %s (%s): %s", e.at.Format("15:04:05.000"), e.where, e.err)
		}
	}
}

// consumer records every event in its ledger after a simulated work time.
type consumer struct {
	name string
	l    *ledger
	work time.Duration
	t    wait.Timer // used by one Consume at a time (Run is sequential)
}

func (c *consumer) Name() string { return c.name }

func (c *consumer) Consume(ctx context.Context, e *reflex.Event) error {
	if err := c.t.Sleep(ctx, c.work); err != nil {
		return err
	}
	c.l.consume(e)
	return nil
}

// spyStore records the cursor each run starts from.
type spyStore struct {
	reflex.CursorStore
	l *ledger
}

func (s spyStore) GetCursor(ctx context.Context, name string) (string, error) {
	cur, err := s.CursorStore.GetCursor(ctx, name)
	if err != nil {
		s.l.runError("get cursor", err)
		return cur, err
	}
	s.l.startRun(cur)
	return cur, nil
}

func (s spyStore) SetCursor(ctx context.Context, name, cursor string) error {
	err := s.CursorStore.SetCursor(ctx, name, cursor)
	if err != nil {
		s.l.runError("set cursor", err)
	}
	return err
}

// spyStream records the errors of a stream.
func spyStream(l *ledger, sFn reflex.StreamFunc) reflex.StreamFunc {
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		cl, err := sFn(ctx, after, opts...)
		if err != nil {
			l.runError("open stream", err)
			return nil, err
		}
		return &spyClient{cl: cl, l: l}, nil
	}
}

type spyClient struct {
	cl reflex.StreamClient
	l  *ledger
}

func (c *spyClient) Recv() (*reflex.Event, error) {
	e, err := c.cl.Recv()
	if err != nil && !errors.Is(err, context.Canceled) {
		c.l.runError("recv", err)
	}
	return e, err
}

func (c *spyClient) Close() error {
	if cl, ok := c.cl.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// runner runs a spec under rpatterns.RunForever until stop.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
	stopAt time.Time // set by stop
}

func startRunner(t *testing.T, spec reflex.Spec) *runner {
	ctx, cancel := context.WithCancel(context.Background()) // the consumer's lifetime
	r := &runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		rpatterns.RunForever(func() context.Context { return ctx }, spec)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(recoveryGuard): // a hang guard
			t.Errorf("RunForever did not return %v after the test cancelled it", recoveryGuard)
		}
	})
	return r
}

// stop cancels the run and returns how long RunForever took to return,
// and whether it returned within shutdownBound; if not, the caller ends
// the fault and calls wait.
func (r *runner) stop() (time.Duration, bool) {
	r.stopAt = time.Now()
	start := r.stopAt
	r.cancel()
	t := time.NewTimer(shutdownBound)
	defer t.Stop()
	select {
	case <-r.done:
		return time.Since(start), true
	case <-t.C:
		return time.Since(start), false
	}
}

// wait waits for RunForever to return after stop, up to a hang guard,
// and returns the time since stop.
func (r *runner) wait(t *testing.T) time.Duration {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(recoveryGuard):
		t.Fatalf("RunForever did not return %v after its context was cancelled and the fault ended", recoveryGuard)
	}
	return time.Since(r.stopAt)
}

// producer inserts one event every period until stopped, recording those
// committed; a failed insert (the database is down) is simply followed by
// the next one.
type producer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startProducer(t *testing.T, l *ledger, db *sql.DB, table *rsql.EventsTable, period time.Duration) *producer {
	ctx, cancel := context.WithCancel(context.Background()) // the producer's lifetime
	p := &producer{cancel: cancel}
	p.wg.Go(func() {
		tk := time.NewTicker(period)
		defer tk.Stop()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			fid := "p" + strconv.Itoa(i)
			ictx, icancel := context.WithTimeout(ctx, insertTimeout)
			_, err := table.Insert(ictx, db, fid, evType(1+i%3))
			icancel()
			if err == nil {
				l.commit(fid)
			} else if ctx.Err() == nil {
				l.insertFailed()
			}
		}
	})
	t.Cleanup(p.stop)
	return p
}

// stop stops the producer and waits for it. It is idempotent.
func (p *producer) stop() {
	p.cancel()
	p.wg.Wait()
}

// insertBacklog commits n events with foreign IDs b1..bn, with metadata
// of metaSize bytes each (0 for none).
func insertBacklog(t *testing.T, l *ledger, db *sql.DB, table *rsql.EventsTable, n, metaSize int) {
	t.Helper()
	var meta []byte
	if metaSize > 0 {
		meta = []byte(strings.Repeat("m", metaSize))
	}
	const perInsert = 500
	for i := 0; i < n; i += perInsert {
		var evs []rsql.EventToInsert
		var fids []string
		for j := i; j < min(n, i+perInsert); j++ {
			fid := "b" + strconv.Itoa(j+1)
			evs = append(evs, rsql.EventToInsert{ForeignID: fid, Type: evType(1 + j%3), MetaData: meta})
			fids = append(fids, fid)
		}
		if _, err := table.InsertMany(t.Context(), db, evs); err != nil {
			t.Fatalf("insert backlog: %v", err)
		}
		l.commit(fids...)
	}
}

// waitFor polls cond until it is true, failing the test when the ledger
// (or cond's progress value) did not move for stallGuard.
func waitFor(t *testing.T, what string, cond func() (progress int64, done bool)) {
	t.Helper()
	err := testguard.Poll(stallGuard, 5*time.Millisecond, what, func() (int64, bool, error) {
		p, ok := cond()
		return p, ok, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitDelivered waits until the consumer has consumed n more events than
// from.
func waitDelivered(t *testing.T, l *ledger, from, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("consuming %d events", n), func() (int64, bool) {
		d := l.delivered()
		return int64(d), d >= from+n
	})
}

// waitAllConsumed waits until every committed event has been consumed.
func waitAllConsumed(t *testing.T, l *ledger) {
	t.Helper()
	waitFor(t, "consuming every committed event", func() (int64, bool) {
		_, seen, all := l.counts()
		return int64(seen), seen == all
	})
}

// recovery waits for the first new event (not a redelivery) consumed at
// or after reachable, the moment the faulty peer was reachable again, logs
// the delay and checks it against recoveryTarget; if it is too late, it
// logs the run errors since start, when the fault began.
func recovery(t *testing.T, l *ledger, what string, start, reachable time.Time) time.Duration {
	t.Helper()
	var at time.Time
	err := testguard.Poll(recoveryGuard, 5*time.Millisecond, what+": first event after the fault", func() (int64, bool, error) {
		var ok bool
		at, ok = l.firstNewAfter(reachable)
		return 0, ok, nil
	})
	if err != nil {
		l.logErrors(t, start)
		t.Fatal(err)
	}
	d := at.Sub(reachable)
	last, _ := l.lastBefore(reachable)
	t.Logf("RESULT %s: %s: recovery %v (fault at %s, reachable at %s; last event before at %s)", t.Name(), what,
		d.Round(time.Millisecond), start.Format("15:04:05.000"), reachable.Format("15:04:05.000"), last.Format("15:04:05.000"))
	if d > recoveryTarget {
		t.Errorf("%s: first new event consumed %v after the peer was reachable again, want <= %v", what, d.Round(time.Millisecond), recoveryTarget)
		l.logErrors(t, start)
	}
	return d
}

// storedCursor reads the stored cursor of name from the cursors table
// through db, retrying (the database may be restarting) until the hang
// guard.
func storedCursor(t *testing.T, db *sql.DB, table, name string) string {
	t.Helper()
	var cur sql.NullString
	err := testguard.Poll(stallGuard, 20*time.Millisecond, "reading the stored cursor", func() (int64, bool, error) {
		ctx, cancel := context.WithTimeout(t.Context(), insertTimeout)
		defer cancel()
		err := db.QueryRowContext(ctx, "SELECT last_event_id FROM "+table+" WHERE id = ?", name).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			cur = sql.NullString{}
			return 0, true, nil
		}
		return 0, err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return cur.String
}

// shutdown stops the consumer and closes its cursors table, checking both
// against shutdownBound; heal, if not nil, ends the fault that kept them
// from returning in time.
func shutdown(t *testing.T, r *runner, cursors *rsql.CursorsTable, heal func()) {
	t.Helper()
	stopRunner(t, r, heal)
	closeCursors(t, cursors, heal)
}

// stopRunner cancels the run, checks that RunForever returns within
// shutdownBound and logs the time; heal, if not nil, ends the fault that
// kept it from returning in time.
func stopRunner(t *testing.T, r *runner, heal func()) {
	t.Helper()
	d, ok := r.stop()
	if ok {
		t.Logf("RESULT %s: shutdown: RunForever returned %v after cancel", t.Name(), d.Round(time.Millisecond))
		return
	}
	t.Errorf("RunForever had not returned %v after its context was cancelled, want <= %v", d.Round(time.Millisecond), shutdownBound)
	healed := time.Now()
	if heal != nil {
		heal()
	}
	r.wait(t)
	t.Logf("RESULT %s: shutdown: RunForever had not returned %v after cancel; it returned %v after the fault ended",
		t.Name(), shutdownBound, time.Since(healed).Round(time.Millisecond))
}

// closeCursors closes the cursors table, checking the time against
// shutdownBound and, without a fault (heal is nil), that it returns nil;
// heal, if not nil, ends the fault that kept it from returning in time.
func closeCursors(t *testing.T, cursors *rsql.CursorsTable, heal func()) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cursors.Close() }()
	tm := time.NewTimer(shutdownBound)
	defer tm.Stop()
	var err error
	select {
	case err = <-done:
		t.Logf("RESULT %s: shutdown: CursorsTable.Close returned %v after %v", t.Name(), err, time.Since(start).Round(time.Millisecond))
	case <-tm.C:
		t.Errorf("CursorsTable.Close had not returned after %v, want <= %v", shutdownBound, shutdownBound)
		healed := time.Now()
		if heal != nil {
			heal()
		}
		select {
		case err = <-done:
		case <-time.After(recoveryGuard):
			t.Fatalf("CursorsTable.Close did not return %v after the fault ended", recoveryGuard)
		}
		t.Logf("RESULT %s: shutdown: CursorsTable.Close had not returned after %v; it returned %v %v after the fault ended",
			t.Name(), shutdownBound, err, time.Since(healed).Round(time.Millisecond))
	}
	if err != nil && heal == nil { // under a fault, a flush that times out is the bound at work
		t.Errorf("CursorsTable.Close: %v", err)
	}
}

// viaAddr returns dsn with its address replaced by addr (a proxy).
func viaAddr(t *testing.T, dsn, addr string) string {
	t.Helper()
	cfg := mustParseDSN(t, dsn)
	cfg.Addr = addr
	return cfg.FormatDSN()
}

func mustParseDSN(t *testing.T, dsn string) *mysql.Config {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// openDB opens a pool on dsn, closed when the test ends.
func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(20)
	t.Cleanup(func() { db.Close() })
	return db
}

var counter atomic.Int64

// uniqueName returns a consumer name unique in the test binary.
func uniqueName(prefix string) string {
	return prefix + "-" + strconv.FormatInt(counter.Add(1), 10)
}
