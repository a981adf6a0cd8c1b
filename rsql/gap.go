package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// Gap is a range of missing event IDs: every ID strictly between Prev and
// Next. Streams detect gaps and offer them to the table's gap listeners.
type Gap struct {
	Prev, Next int64
}

// GapListenFunc is called, one gap at a time, with the gaps streams
// detect. See ListenGaps.
type GapListenFunc func(Gap)

// GapListenable is a table whose gaps can be listened to and filled:
// *EventsTable and *EventsTableInt. It cannot be implemented outside this
// package.
type GapListenable interface {
	// ListenGaps registers a gap listener.
	ListenGaps(f GapListenFunc) error
	// StopGapListener stops all gap listeners.
	StopGapListener(ctx context.Context) error

	eventsTable() *EventsTable
}

var (
	_ GapListenable = (*EventsTable)(nil)
	_ GapListenable = (*EventsTableInt)(nil)
)

func (t *EventsTable) eventsTable() *EventsTable { return t }

// ListenGaps registers f to be called with the gaps that the table's
// streams detect. The first call starts the table's gap-serving goroutine,
// which calls every listener in turn for each gap; while it is busy,
// streams do not wait for it: a gap nobody takes is detected again by the
// next load. f must not block for long. Gaps that are waited out by the
// streams without listeners are not lost, only not filled.
//
// The serving goroutine belongs to the table: StopGapListener and Close
// stop it. ListenGaps returns ErrGapListenerStopped after either. It is
// safe for concurrent use.
func (t *EventsTable) ListenGaps(f GapListenFunc) error {
	if f == nil {
		return fmt.Errorf("rsql: ListenGaps on %s: nil listener", t.name)
	}
	return t.gaps.listen(func(_ context.Context, g Gap) { f(g) }, nil)
}

// StopGapListener stops the table's gap listeners, including the gap
// filler of FillGaps, aborting a filler that is waiting for a transaction,
// and ends the FillGapsLeased calls on the table (they release the lease
// and return ErrGapListenerStopped). It blocks until the serving goroutine
// has exited or ctx is done (then it returns ctx.Err()). It is idempotent
// and safe for concurrent use; after it, ListenGaps, FillGaps and
// FillGapsLeased fail with ErrGapListenerStopped.
func (t *EventsTable) StopGapListener(ctx context.Context) error {
	return t.gaps.stop(ctx)
}

// FillGaps makes dbc fill the gaps in the IDs of the table's events, so
// that streams can pass IDs burnt by rolled-back transactions. For each
// missing ID of a detected gap, and of the gaps after it up to the last
// committed ID of the next 1000, it checks whether a transaction is still
// writing it (on MySQL with a read-uncommitted query, on PostgreSQL
// through the ID's unique index: see the package documentation): if so it
// waits for the commit (rechecking every 100 ms on MySQL); if not it
// inserts a noop event with that ID (foreign ID "0", type 0), which
// streams skip unless WithIncludeNoopEvents. A duplicate-key error means
// the ID was written meanwhile, which is success. On other errors it
// abandons the gap; it is detected again by the next load. It never
// fills an ID below the trim marker of a Trimmer, even one trimmed while
// it fills: the noops are rolled back if a trim committed since it found
// their IDs absent.
//
// The filler uses the table's configured ID column. It runs on the
// table's gap-serving goroutine until StopFillingGaps, StopGapListener or
// the table's Close; clones of the table made while it runs are filled by
// their own filler, which their Close stops (see Clone). A second FillGaps
// on the same table does nothing. It returns ErrGapListenerStopped after
// the table's listeners were stopped. See FillGapsLeased to fill in one
// process at a time when a service runs several replicas.
func FillGaps(dbc *sql.DB, gl GapListenable) error {
	t := gl.eventsTable()
	if dbc == nil {
		return fmt.Errorf("rsql: FillGaps on %s: nil *sql.DB", t.name)
	}
	return t.gaps.listen(func(ctx context.Context, g Gap) { t.fillGap(ctx, dbc, g) }, dbc)
}

// StopFillingGaps stops the gap filler of FillGaps and every other gap
// listener of the table: it is StopGapListener.
func StopFillingGaps(ctx context.Context, gl GapListenable) error {
	return gl.StopGapListener(ctx)
}

// gapHub holds the gap listeners of one table and the goroutine serving
// them. Streams offer gaps without blocking. The serving goroutine runs
// while the hub has listeners: ListenGaps and FillGaps add listeners for
// the table's life; FillGapsLeased adds its filler while it holds the
// lease and removes it when it loses it, which ends the goroutine if no
// other listener remains.
type gapHub struct {
	m *metrics.EventsTable

	// ch is unbuffered: an offer succeeds only while serve waits.
	ch chan Gap
	// ctx is the hub's lifetime, cancelled by stop.
	ctx    context.Context
	cancel context.CancelFunc
	// fills counts the gaps the table's fillers worked on (fillGap).
	fills atomic.Int64

	mu        sync.Mutex // protects the following fields
	listeners []*gapListener
	stopped   bool
	db        *sql.DB            // of FillGaps, nil without it
	runCancel context.CancelFunc // ends the running serve, nil if none runs
	done      chan struct{}      // closed when the last serve started returns
}

// gapListener is a listener of a gapHub.
type gapListener struct {
	f func(context.Context, Gap)
	// ctx, if not nil, is the context f runs with instead of the hub's;
	// f is not called once it is done. stop cancels it with cancel.
	ctx    context.Context
	cancel context.CancelFunc

	// Protected by the hub's mu:
	removed bool
	busy    bool          // f is running
	idle    chan struct{} // closed when f returns, if remove waits for it
}

func newGapHub(m *metrics.EventsTable) *gapHub {
	ctx, cancel := context.WithCancel(context.Background())
	return &gapHub{m: m, ch: make(chan Gap), ctx: ctx, cancel: cancel}
}

func (h *gapHub) offer(g Gap) {
	select {
	case h.ch <- g:
	default:
	}
}

// listen registers f for the table's life; db is non-nil for the filler
// of FillGaps, which is registered once.
func (h *gapHub) listen(f func(context.Context, Gap), db *sql.DB) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return ErrGapListenerStopped
	}
	if db != nil {
		if h.db != nil {
			return nil
		}
		h.db = db
	}
	h.addLocked(&gapListener{f: f})
	return nil
}

// add registers l until remove; it fails with ErrGapListenerStopped after
// stop.
func (h *gapHub) add(l *gapListener) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return ErrGapListenerStopped
	}
	h.addLocked(l)
	return nil
}

// addLocked appends l and starts serve if it does not run; h.mu is held.
func (h *gapHub) addLocked(l *gapListener) {
	h.listeners = append(h.listeners, l)
	if h.runCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(h.ctx)
	prev, done := h.done, make(chan struct{})
	h.runCancel, h.done = cancel, done
	h.m.GapListening.Set(1)
	go h.serve(ctx, prev, done)
}

// remove unregisters l and waits until no call of its function runs; if
// no listener remains, it ends the serving goroutine and waits for it.
// l's context should be done first, so that a running call returns soon.
func (h *gapHub) remove(l *gapListener) {
	h.mu.Lock()
	l.removed = true
	h.listeners = slices.DeleteFunc(h.listeners, func(x *gapListener) bool { return x == l })
	var idle, done chan struct{}
	if l.busy {
		l.idle = make(chan struct{})
		idle = l.idle
	}
	if len(h.listeners) == 0 && h.runCancel != nil {
		h.runCancel()
		h.runCancel, done = nil, h.done
		if !h.stopped {
			h.m.GapListening.Set(0)
		}
	}
	h.mu.Unlock()
	if idle != nil {
		<-idle
	}
	if done != nil {
		<-done
	}
}

// serve calls the listeners with each gap offered until ctx is done; it
// starts after the serve before it (prev, nil for the first) returned.
func (h *gapHub) serve(ctx context.Context, prev <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if prev != nil {
		<-prev
	}
	for {
		select {
		case <-ctx.Done():
			return
		case g := <-h.ch:
			h.mu.Lock()
			ls := slices.Clone(h.listeners)
			h.mu.Unlock()
			for _, l := range ls {
				if ctx.Err() != nil {
					return
				}
				h.call(ctx, l, g)
			}
		}
	}
}

// call runs l's function with g unless l was removed or its context is
// done, marking it busy meanwhile for remove.
func (h *gapHub) call(ctx context.Context, l *gapListener, g Gap) {
	if l.ctx != nil {
		ctx = l.ctx
	}
	h.mu.Lock()
	if l.removed || ctx.Err() != nil {
		h.mu.Unlock()
		return
	}
	l.busy = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		l.busy = false
		if l.idle != nil {
			close(l.idle)
			l.idle = nil
		}
		h.mu.Unlock()
	}()
	l.f(ctx, g)
}

func (h *gapHub) stop(ctx context.Context) error {
	h.mu.Lock()
	if !h.stopped {
		h.stopped = true
		h.cancel()
		for _, l := range h.listeners {
			if l.cancel != nil {
				l.cancel()
			}
		}
		h.runCancel = nil
		h.m.GapListening.Set(0)
	}
	done := h.done
	h.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isStopped reports whether stop was called.
func (h *gapHub) isStopped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopped
}

// fillDB returns the *sql.DB of a running FillGaps, or nil.
func (h *gapHub) fillDB() *sql.DB {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil
	}
	return h.db
}

const (
	// gapRecheck is how often the filler rechecks an ID that an
	// uncommitted transaction holds.
	gapRecheck = 100 * time.Millisecond
	// fillChunk is the number of IDs the filler checks per query.
	fillChunk = 1000
)

// fillGap fills the IDs of g with noops, waiting for those that are
// being written, and the missing IDs after it up to the last committed
// one among the fillChunk IDs after g.Prev: concurrent writers interleave
// their IDs, so a rolled-back transaction leaves holes far apart, which
// are filled in one pass rather than one detected gap at a time. It gives
// up on the first error, or when ctx is done.
func (t *EventsTable) fillGap(ctx context.Context, db *sql.DB, g Gap) {
	t.gaps.fills.Add(1)
	first, err := t.untrimmedFrom(ctx, db, g.Prev+1) // never fill trimmed IDs (trim.go)
	if err != nil {
		return
	}
	end := g.Next
	if top, err := t.maxIDIn(ctx, db, g.Prev+1, g.Prev+1+fillChunk); err == nil {
		end = max(end, top)
	}
	for lo := first; lo < end; lo += fillChunk {
		if err := t.d.fillRange(ctx, t, db, lo, min(lo+fillChunk, end)); err != nil {
			break
		}
	}
	// Streams waiting at the gap reload at once.
	wakeWatchers(t.q.table)
}

// maxIDIn returns the largest committed ID in [lo, hi), 0 if none.
func (t *EventsTable) maxIDIn(ctx context.Context, db *sql.DB, lo, hi int64) (int64, error) {
	s := t.q.maxIn(lo, hi)
	var id sql.NullInt64
	err := db.QueryRowContext(ctx, s.String(), s.args...).Scan(&id)
	return id.Int64, err
}

// gapConfirm is how long the filler waits before it fills an absent ID
// right after an uncommitted one (MySQL), or any absent ID (PostgreSQL),
// checking again that it is still absent.
const gapConfirm = 50 * time.Millisecond

// confirmPause returns gapConfirm, or its replacement in tests.
func confirmPause() time.Duration {
	if d := testGapConfirm.Load(); d != 0 {
		return time.Duration(d)
	}
	return gapConfirm
}

// testGapConfirm, if not zero, replaces gapConfirm in tests.
var testGapConfirm atomic.Int64

// testHookFillCheck, if set, is called after each check of fillRange,
// before the filler writes.
var testHookFillCheck atomic.Pointer[func()]

// fillRangeUncommitted fills the IDs in [lo, hi) of a MySQL or SQLite
// table, telling IDs being written from absent ones with a READ
// UNCOMMITTED query (SQLite, which serialises writers, has none: every
// absent ID is filled at once). A multi-row INSERT (InsertMany)
// allocates all its IDs before it writes its rows one by one, so an ID
// whose predecessor is written but uncommitted may be about to be written
// by the same statement: such an ID (and any absent ID right after it) is
// filled only if a second READ UNCOMMITTED check gapConfirm later still
// finds it absent. Filling it at once could fail the writer's transaction
// with a duplicate key. Other absent IDs (rolled back, never used) are
// filled at once.
//
// The noops are inserted in a transaction that also reads the
// trim marker (see gap_trim.go): if a trim committed since the check
// would leave them below its marker, they are rolled back and the filler
// goes on with the IDs above the marker.
func (t *EventsTable) fillRangeUncommitted(ctx context.Context, db *sql.DB, lo, hi int64) error {
	var (
		timer   wait.Timer
		suspect map[int64]bool // IDs held back at the previous check
	)
	defer timer.Stop()
	for {
		present, err := t.idsIn(ctx, db, lo, hi, true)
		if err != nil {
			return err
		}
		var pending []int64
		if len(present) > 0 {
			committed, err := t.idsIn(ctx, db, lo, hi, false)
			if err != nil {
				return err
			}
			pending = subtract(present, committed)
		}
		held := make(map[int64]bool, len(pending))
		for _, id := range pending {
			held[id] = true
		}
		var fill, unsure []int64
		next := map[int64]bool{}
		for _, id := range complement(lo, hi, present) {
			if !suspect[id] && (held[id-1] || next[id-1]) {
				next[id] = true
				unsure = append(unsure, id)
				continue
			}
			fill = append(fill, id)
		}
		if h := testHookFillCheck.Load(); h != nil {
			(*h)()
		}
		if len(fill) > 0 {
			err := t.insertNoops(ctx, db, fill)
			if tr, ok := errors.AsType[*fillTrimmedError](err); ok {
				// Trimmed meanwhile: fill only above the marker (and
				// the table's first marker, if a trim moved it on).
				if lo, err = t.untrimmedFrom(ctx, db, tr.marker+1); err != nil {
					return err
				}
				if suspect = nil; lo >= hi {
					return nil
				}
				continue
			}
			if err != nil {
				return err
			}
		}
		if len(pending) == 0 && len(unsure) == 0 {
			return nil
		}
		suspect = next
		// Recheck only the IDs still open.
		pause := gapRecheck
		if len(unsure) > 0 {
			pause = confirmPause()
		}
		lo, hi = math.MaxInt64, math.MinInt64
		for _, ids := range [][]int64{pending, unsure} {
			if len(ids) > 0 {
				lo, hi = min(lo, ids[0]), max(hi, ids[len(ids)-1]+1)
			}
		}
		if err := timer.Sleep(ctx, pause); err != nil {
			return err
		}
	}
}

// idsIn returns the IDs in [lo, hi) in ascending order, including those
// of uncommitted transactions if uncommitted is set.
func (t *EventsTable) idsIn(ctx context.Context, db *sql.DB, lo, hi int64, uncommitted bool) ([]int64, error) {
	s := t.q.idsIn(lo, hi)
	var (
		rows *sql.Rows
		err  error
	)
	if opts := t.d.uncommittedTx(); uncommitted && opts != nil {
		tx, err := db.BeginTx(ctx, opts)
		if err != nil {
			return nil, err
		}
		defer tx.Rollback()
		rows, err = tx.QueryContext(ctx, s.String(), s.args...)
		if err != nil {
			return nil, err
		}
	} else if rows, err = db.QueryContext(ctx, s.String(), s.args...); err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// complement returns the IDs in [lo, hi) that are not in sorted.
func complement(lo, hi int64, sorted []int64) []int64 {
	all := make([]int64, 0, max(hi-lo, 0))
	for id := lo; id < hi; id++ {
		all = append(all, id)
	}
	return subtract(all, sorted)
}

// subtract returns the elements of a not in b; both are sorted.
func subtract(a, b []int64) []int64 {
	var out []int64
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

// gapTracker tracks the open gaps of a table for the open-gap metrics: a
// gap opens when a load stops before a missing ID and closes when a load
// passes that ID.
type gapTracker struct {
	mu       sync.Mutex          // protects the following fields
	open     map[int64]time.Time // first missing ID -> when first seen
	reported bool                // gauges may be non-zero
}

func newGapTracker() *gapTracker {
	return &gapTracker{open: make(map[int64]time.Time)}
}

func (g *gapTracker) seen(id int64) {
	g.mu.Lock()
	if _, ok := g.open[id]; !ok {
		g.open[id] = time.Now()
	}
	g.mu.Unlock()
}

// passed closes the gaps at or below cur and updates the gauges.
func (g *gapTracker) passed(cur int64, m *metrics.EventsTable) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.open) == 0 && !g.reported {
		return
	}
	var oldest time.Time
	for id, seen := range g.open {
		if id <= cur {
			delete(g.open, id)
			continue
		}
		if oldest.IsZero() || seen.Before(oldest) {
			oldest = seen
		}
	}
	m.OpenGaps.Set(float64(len(g.open)))
	if oldest.IsZero() {
		m.OldestGapAge.Set(0)
	} else {
		m.OldestGapAge.Set(time.Since(oldest).Seconds())
	}
	g.reported = len(g.open) > 0
}
