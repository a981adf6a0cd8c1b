package rsql

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// The shared head watcher: all streams of one table (same quoted table
// name, ID column and *sql.DB) in the process share one watcher. A stream
// that finds nothing to load waits on the watcher's broadcast channel;
// while any stream waits, one poller goroutine queries the table every
// poll interval (the shortest backoff of the waiting streams) and closes
// the channel when something a waiter wants has appeared. Idle cost is
// therefore one cheap query per interval per table per process, whatever
// the number of streams.
//
// No lost wake-ups: a stream takes a ticket (the current channel) before
// it loads, and waits on that channel, so a notification between its
// empty load and its wait closes the channel it waits on. Each waiter also
// registers the ID it needs next (cursor+1); the poller closes the channel
// when the maximum ID reaches the smallest of those IDs, however long
// after the load it committed: then that ID exists, or it is missing below
// a committed one and the stream must reload to find the gap (and report
// it to the gap filler). The poller also closes it when the maximum ID
// changes between two polls, for streams that registered no ID.
//
// Ownership: the poller goroutine belongs to its watcher, and a watcher to
// the streams that use it (acquireWatcher to release). The poller runs on
// a context of the watcher: it exits when no stream waits, and the release
// of the watcher's last stream (a stream's Close, or the end of its Recv)
// forgets the watcher, cancels the poller's query if one runs, and waits
// for the poller to exit.
//
// Lock order: watchRegistry.mu before watcher.mu.

// watchKey identifies the watcher of a table.
type watchKey struct {
	db        *sql.DB
	table, id string // quoted
}

var watchRegistry = struct {
	mu sync.Mutex // protects m
	m  map[watchKey]*watcher
}{m: make(map[watchKey]*watcher)}

// kickBuffer lets kick signal the poller without blocking; one pending
// kick is enough since the poller re-reads the whole state.
const kickBuffer = 1

// watcher is the shared head watcher of one table.
type watcher struct {
	key     watchKey
	headSQL string // the query of the maximum ID
	m       *metrics.EventsTable
	kick    chan struct{}
	pollers sync.WaitGroup // the poller goroutine, and one exiting

	mu        sync.Mutex // protects the following fields
	refs      int        // streams between acquire and release
	ch        chan struct{}
	head      int64 // MAX(id) of the last poll
	headKnown bool  // head is from a poll since the last notification
	waiters   int
	wants     map[int64]int         // wanted ID -> number of waiters
	intervals map[time.Duration]int // backoff -> number of waiters
	running   bool                  // a poller goroutine runs
	interval  time.Duration         // the running poller's interval
	stop      context.CancelFunc    // cancels the running poller's context
	// startListen, if not nil, starts what wakes the streams when
	// another process commits (the dialect's listenHead): called when a
	// stream first waits; stopListen stops it (last release).
	startListen func() (stop func())
	stopListen  func()
	listening   bool // startListen was called
}

// testHookPollQueried, if set, is called by the poller after each poll
// query returns.
var testHookPollQueried atomic.Pointer[func()]

// testHookQuery, if set, is called before every query of loads ("load")
// and of the head watcher ("poll") with the quoted table name.
var testHookQuery atomic.Pointer[func(table, kind string)]

func hookQuery(table, kind string) {
	if h := testHookQuery.Load(); h != nil {
		(*h)(table, kind)
	}
}

// testHookBeforeWait, if set, is called by a stream after it found
// nothing to load and before it waits.
var testHookBeforeWait atomic.Pointer[func()]

// testHookPoller, if set, is called with +1 when a poller goroutine
// starts and -1 when it exits.
var testHookPoller atomic.Pointer[func(delta int)]

// acquireWatcher returns the watcher of t on db, counted as used until
// release.
func acquireWatcher(db *sql.DB, t *EventsTable) *watcher {
	key := watchKey{db: db, table: t.q.table, id: t.q.id}
	watchRegistry.mu.Lock()
	defer watchRegistry.mu.Unlock()
	w := watchRegistry.m[key]
	if w == nil {
		w = &watcher{
			key:       key,
			headSQL:   t.q.head,
			m:         t.m,
			kick:      make(chan struct{}, kickBuffer),
			ch:        make(chan struct{}),
			wants:     make(map[int64]int),
			intervals: make(map[time.Duration]int),
		}
		w.startListen = func() func() { return t.d.listenHead(w, db, t) }
		watchRegistry.m[key] = w
	}
	w.mu.Lock()
	w.refs++
	w.mu.Unlock()
	return w
}

// retain adds a use of w, which must be in use already; release ends it.
func (w *watcher) retain() {
	w.mu.Lock()
	w.refs++
	w.mu.Unlock()
}

// release ends a use of acquireWatcher or retain. The last use forgets
// the watcher, stops its poller and waits for it: nothing can use the
// watcher any more, since only the registry hands it out.
func (w *watcher) release() {
	watchRegistry.mu.Lock()
	w.mu.Lock()
	w.refs--
	last := w.refs == 0
	if last {
		if watchRegistry.m[w.key] == w {
			delete(watchRegistry.m, w.key)
		}
		if w.stop != nil {
			w.stop()
		}
	}
	w.mu.Unlock()
	watchRegistry.mu.Unlock()
	if last {
		w.pollers.Wait()
		w.mu.Lock()
		stop := w.stopListen
		w.stopListen = nil
		w.mu.Unlock()
		if stop != nil {
			stop()
		}
	}
}

// dropLocked removes an unused, idle watcher from the registry; both
// locks are held.
func (w *watcher) dropLocked() {
	if w.refs == 0 && !w.running && watchRegistry.m[w.key] == w {
		delete(watchRegistry.m, w.key)
	}
}

// wakeWatchers wakes the streams of every watcher of the quoted table: an
// insert was committed, or the gap filler filled a gap.
func wakeWatchers(table string) {
	watchRegistry.mu.Lock()
	defer watchRegistry.mu.Unlock()
	for k, w := range watchRegistry.m {
		if k.table == table {
			w.wake()
		}
	}
}

// wake wakes the streams waiting on w: rows may have been committed
// (or a gap filled) that the last poll did not see.
func (w *watcher) wake() {
	w.mu.Lock()
	w.headKnown = false // make waiters load rather than trust head
	w.broadcastLocked()
	w.mu.Unlock()
}

// current returns the broadcast channel that the next notification or
// wake-up closes.
func (w *watcher) current() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *watcher) broadcastLocked() {
	close(w.ch)
	w.ch = make(chan struct{})
}

// ticket is what a stream reads before a load and waits on after it.
type ticket struct {
	ch <-chan struct{}
	// atHead is set when the last poll found no ID above the cursor, so
	// the stream may wait without loading.
	atHead bool
}

func (w *watcher) ticket(cursor int64) ticket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return ticket{ch: w.ch, atHead: w.headKnown && cursor >= w.head}
}

// waitSpec is what a stream waits for besides the watcher.
type waitSpec struct {
	want     int64         // ID the stream needs next, 0 for none
	interval time.Duration // the stream's poll interval (> 0)
	extra    <-chan struct{}
	timeout  time.Duration // reload after this long regardless, 0 never
	// noPoll waits only for broadcasts, s.extra and s.timeout: the
	// stream's loader does not read the SQL table (or it has no *sql.DB).
	noPoll bool
}

// wait blocks until tk's channel is closed, s.extra fires (then it
// returns true), s.timeout passes or ctx is done (then it returns
// ctx.Err()).
func (w *watcher) wait(ctx context.Context, tk ticket, s waitSpec) (bool, error) {
	if !s.noPoll {
		w.register(s)
		defer w.unregister(s)
	}
	var timeout <-chan time.Time
	if s.timeout > 0 {
		t := time.NewTimer(s.timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-tk.ch:
	case <-s.extra:
		return true, nil
	case <-timeout:
	}
	return false, nil
}

// register counts a waiter, starting the poller if needed.
func (w *watcher) register(s waitSpec) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiters++
	if s.want > 0 {
		w.wants[s.want]++
	}
	w.intervals[s.interval]++
	if !w.listening && w.startListen != nil {
		// The first wait: listen for other processes' commits. Streams
		// that never wait (catching up, to the head) need not.
		w.listening = true
		w.stopListen = w.startListen()
	}
	switch {
	case !w.running:
		w.running = true
		w.interval = w.intervalLocked()
		// The poller's lifetime, owned by the watcher: cancelled when the
		// poller exits or by the release of the watcher's last stream.
		ctx, cancel := context.WithCancel(context.Background())
		w.stop = cancel
		interval := w.interval
		w.pollers.Go(func() { w.poll(ctx, cancel, interval) })
	case s.interval < w.interval:
		w.kickPoller()
	}
}

// unregister undoes register.
func (w *watcher) unregister(s waitSpec) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiters--
	if s.want > 0 {
		if w.wants[s.want]--; w.wants[s.want] == 0 {
			delete(w.wants, s.want)
		}
	}
	if w.intervals[s.interval]--; w.intervals[s.interval] == 0 {
		delete(w.intervals, s.interval)
	}
	if w.waiters == 0 {
		w.kickPoller() // let it exit now rather than after an interval
	}
}

func (w *watcher) kickPoller() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// intervalLocked is the shortest interval of the waiters.
func (w *watcher) intervalLocked() time.Duration {
	var d time.Duration
	for i := range w.intervals {
		if d == 0 || i < d {
			d = i
		}
	}
	if d == 0 {
		d = defaultBackoff
	}
	return d
}

// poll is the poller goroutine. It runs while streams wait and exits when
// none does, or when ctx (see register) is cancelled; cancel is ctx's.
func (w *watcher) poll(ctx context.Context, cancel context.CancelFunc, interval time.Duration) {
	defer cancel()
	if h := testHookPoller.Load(); h != nil {
		(*h)(1)
		defer (*h)(-1)
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		kicked := false
		select {
		case <-timer.C:
		case <-w.kick:
			kicked = true
		case <-ctx.Done():
		}
		w.mu.Lock()
		if w.waiters == 0 || ctx.Err() != nil {
			w.exitLocked()
			return
		}
		if kicked {
			// A waiter with a shorter interval arrived.
			w.interval = w.intervalLocked()
			w.mu.Unlock()
			timer.Reset(w.interval)
			continue
		}
		w.interval = w.intervalLocked()
		interval = w.interval
		ch0 := w.ch
		w.mu.Unlock()

		head, err := w.query(ctx)
		if h := testHookPollQueried.Load(); h != nil {
			(*h)()
		}

		w.mu.Lock()
		if ctx.Err() != nil {
			w.exitLocked()
			return
		}
		if err != nil {
			// Waiters load, and so see the error themselves.
			w.m.WatchErrors.Inc()
			w.headKnown = false
			w.broadcastLocked()
		} else {
			changed := w.headKnown && head != w.head
			// After a notification or wake-up since the query was sent,
			// the head it read may already be stale: let streams load
			// rather than trust it.
			w.head, w.headKnown = head, w.ch == ch0
			// Wants registered since the query was sent are checked too:
			// the head only grows, so this errs on the side of waking.
			if want, ok := w.minWantLocked(); changed || ok && want <= head {
				w.broadcastLocked()
			}
		}
		w.mu.Unlock()
		timer.Reset(interval)
	}
}

// exitLocked records that the poller exits and forgets an unused watcher;
// it unlocks w.mu. (A poller stopped by release is the watcher's last: the
// watcher is forgotten already.)
func (w *watcher) exitLocked() {
	w.running = false
	w.mu.Unlock()
	watchRegistry.mu.Lock()
	w.mu.Lock()
	w.dropLocked()
	w.mu.Unlock()
	watchRegistry.mu.Unlock()
}

// minWantLocked returns the smallest wanted ID, if any.
func (w *watcher) minWantLocked() (int64, bool) {
	var (
		lo int64
		ok bool
	)
	for id := range w.wants {
		if !ok || id < lo {
			lo, ok = id, true
		}
	}
	return lo, ok
}

// pollTimeout bounds one poll query.
const pollTimeout = 10 * time.Second

// query returns the maximum ID, 0 for an empty table.
func (w *watcher) query(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	hookQuery(w.key.table, "poll")
	w.m.Polls.Inc()
	var head sql.NullInt64
	err := w.key.db.QueryRowContext(ctx, w.headSQL).Scan(&head)
	return head.Int64, err
}
