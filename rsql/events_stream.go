package rsql

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// ToStream returns a reflex.StreamFunc of the table's events read through
// dbc. The options of a stream are the table's StreamOptions, then opts,
// then the options given at each call.
//
// The StreamFunc validates the cursor: for anything but "" or a
// non-negative base-10 int64 it returns an error wrapping both
// reflex.ErrInvalidCursor and ErrInvalidIntID, quoting at most 64 bytes
// of the cursor. With reflex.WithStreamFromHead it resolves the head (the
// maximum ID) before it returns: events inserted after the stream is
// opened are delivered, even before the first Recv. It returns the
// database error if that query fails, and an error for a nil dbc (unless
// the table has a WithEventsLoader and the stream is not from the head).
// See Stream for the clients.
func (t *EventsTable) ToStream(dbc *sql.DB, opts ...reflex.StreamOption) reflex.StreamFunc {
	defaults := append([]reflex.StreamOption(nil), opts...)
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		all := append(append([]reflex.StreamOption(nil), defaults...), opts...)
		c := t.newClient(ctx, dbc, after, all)
		if err := c.start(); err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	}
}

// Stream returns a client of the table's events after the cursor after
// ("" for all), with the table's StreamOptions overridden by opts. It does
// no I/O and never fails: an invalid cursor (the error of ToStream) or a
// nil dbc is reported by every Recv, and reflex.WithStreamFromHead
// resolves the head at the first Recv, so events inserted before it are
// skipped; ToStream resolves it when the stream is opened instead.
//
// Recv returns the events in ID order, never past a missing ID (see
// FillGaps), skipping noop events unless WithIncludeNoopEvents. At the
// head it waits for the table's head watcher, the table's notifier, or
// ctx; with reflex.WithStreamToHead it returns reflex.ErrHeadReached
// instead. With reflex.WithStreamLag it returns only events older than
// the lag by the database's clock. Database errors are returned as they
// happen; the client can be used again after one. After ctx is done, Recv
// returns ctx.Err(); after Close, it returns at once an error for which
// errors.Is(err, context.Canceled) is true.
//
// The client is for one goroutine; Close may be called from any. It
// implements io.Closer (Close stops its read-ahead goroutine, releases
// its share of the head watcher and is idempotent; close every client),
// reflex.Buffered and reflex.HeadReporter (see streamClient.Head).
func (t *EventsTable) Stream(ctx context.Context, dbc *sql.DB, after string, opts ...reflex.StreamOption) reflex.StreamClient {
	return t.newClient(ctx, dbc, after, opts)
}

func (t *EventsTable) newClient(ctx context.Context, db *sql.DB, after string, opts []reflex.StreamOption) *streamClient {
	ctx, cancel := context.WithCancel(ctx)
	o := t.StreamOptions
	for _, opt := range opts {
		opt(&o)
	}
	o.Lag = max(o.Lag, 0)
	c := &streamClient{
		ctx:    ctx,
		cancel: cancel,
		t:      t,
		db:     db,
		opts:   o,
		after:  after,
		limit:  t.limit,
	}
	c.head.Store(-1)
	return c
}

// streamClient is the reflex.StreamClient of an EventsTable.
type streamClient struct {
	ctx    context.Context // the stream's context; cancelled by Close
	cancel context.CancelFunc
	t      *EventsTable
	db     *sql.DB
	opts   reflex.StreamOptions
	after  string

	started bool
	cursor  int64 // ID of the last event returned
	pos     int64 // where the next load starts: cursor or past hidden noops
	buf     []*reflex.Event
	ids     []int64
	i       int // next index in buf
	limit   int // rows of the next load
	notifyC <-chan struct{}
	pf      chan prefetched // result of the running read-ahead, or nil

	// head is the largest event ID the client knows of, -1 for none yet
	// (Head); headQueried is when a read-ahead last queried the head
	// (Unix ns). Both are written by the client's goroutine and its
	// read-ahead goroutine.
	head        atomic.Int64
	headQueried atomic.Int64

	mu     sync.Mutex // protects the following fields and calls of wg.Go
	closed bool
	// held, when not nil, is the watcher (with a reference kept by the
	// client) and heldTk a ticket of it taken before the last load, which
	// reached the head: the next fill waits on heldTk without loading.
	held   *watcher
	heldTk ticket
	wg     sync.WaitGroup // the read-ahead goroutine
}

var (
	_ reflex.StreamClient = (*streamClient)(nil)
	_ reflex.Buffered     = (*streamClient)(nil)
	_ reflex.HeadReporter = (*streamClient)(nil)
	_ io.Closer           = (*streamClient)(nil)
)

// prefetched is the result of a read-ahead load.
type prefetched struct {
	b   batch
	err error
}

// Recv implements reflex.StreamClient.
func (c *streamClient) Recv() (*reflex.Event, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	for c.i >= len(c.buf) {
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	e, id := c.buf[c.i], c.ids[c.i]
	c.i++
	if id <= c.cursor {
		return nil, fmt.Errorf("pop error: event %d after cursor %d: %w", id, c.cursor, ErrConsecEvent)
	}
	c.cursor = id
	return e, nil
}

// Buffered implements reflex.Buffered: the number of events Recv returns
// without loading.
func (c *streamClient) Buffered() int { return len(c.buf) - c.i }

// headRefresh is how often a stream catching up (whose loads are full, so
// they do not reach the head) queries the head, from its read-ahead
// goroutine, so that Head stays near the true head.
const headRefresh = time.Second

// Head implements reflex.HeadReporter: the largest event ID the client
// knows of, from what it already reads: the last ID of each load (the
// head itself when a load reaches it), the maximum ID that the table's
// head watcher polls while the client waits (also at a gap, past which
// the stream cannot go), the head that reflex.WithStreamFromHead
// resolves, and, while the client catches up, one query of the head per
// second (headRefresh) by its read-ahead goroutine. It returns false
// before the first of these. It does no I/O and is safe to call from any
// goroutine.
func (c *streamClient) Head() (string, bool) {
	h := c.head.Load()
	if h < 0 {
		return "", false
	}
	return strconv.FormatInt(h, 10), true
}

// noteHead records that the table has an event ID of at least h.
func (c *streamClient) noteHead(h int64) {
	for {
		old := c.head.Load()
		if h <= old || c.head.CompareAndSwap(old, h) {
			return
		}
	}
}

// noteWatcherHead records the maximum ID of w's last poll.
func (c *streamClient) noteWatcherHead(w *watcher) {
	w.mu.Lock()
	h := w.head
	w.mu.Unlock()
	c.noteHead(h)
}

// Close stops the client and its read-ahead goroutine and waits for it.
// It is idempotent, safe to call from any goroutine, and returns nil.
func (c *streamClient) Close() error {
	c.mu.Lock()
	c.closed = true
	held := c.held
	c.held = nil
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if held != nil {
		held.release()
	}
	return nil
}

// holdTicket keeps w (one more reference) and tk, taken before a load
// that reached the head, for the next fill.
func (c *streamClient) holdTicket(w *watcher, tk ticket) {
	w.retain() // not under c.mu, which is never held while taking another lock
	c.mu.Lock()
	if !c.closed {
		c.held, c.heldTk, w = w, tk, nil
	}
	c.mu.Unlock()
	if w != nil {
		w.release()
	}
}

// takeTicket returns the ticket kept by holdTicket, if any and of w,
// dropping the reference to its watcher.
func (c *streamClient) takeTicket(w *watcher) (ticket, bool) {
	c.mu.Lock()
	held, tk := c.held, c.heldTk
	c.held = nil
	c.mu.Unlock()
	if held == nil {
		return ticket{}, false
	}
	held.release()
	return tk, held == w
}

// start resolves the starting cursor.
func (c *streamClient) start() error {
	if c.started {
		return nil
	}
	if c.db == nil && (c.t.cfg.loader == nil || c.opts.StreamFromHead) {
		// The SQL loader and the head query need the database; a custom
		// loader may not.
		return fmt.Errorf("rsql: stream events table %s: nil *sql.DB", c.t.name)
	}
	var cur int64
	switch {
	case c.opts.StreamFromHead:
		h, err := c.t.Head(c.ctx, c.db)
		if err != nil {
			return err
		}
		cur = h
		c.noteHead(h)
	default:
		id, err := parseStreamCursor(c.after)
		if err != nil {
			return fmt.Errorf("rsql: stream events table %s: %w", c.t.name, err)
		}
		cur = id
	}
	c.cursor, c.pos, c.started = cur, cur, true
	return nil
}

// fill loads the next events into the buffer, waiting at the head.
func (c *streamClient) fill() error {
	if err := c.start(); err != nil {
		return err
	}
	// Streams that only need the next ID may trust the watcher's head and
	// wait without loading.
	trustHead := !c.opts.StreamToHead && c.opts.Lag == 0 && c.t.cfg.loader == nil && c.t.backoff > 0
	w := acquireWatcher(c.db, c.t)
	defer w.release()
	// After a load that reached the head, a stream tailing the table
	// waits without loading again: on the ticket it took before that
	// load, so that any notification since closes it, and for the ID it
	// needs next, which the watcher polls for. That saves an empty load
	// per event.
	tk, held := c.takeTicket(w)
	for {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		gap := false
		if held {
			held = false
		} else if tk = w.ticket(c.pos); !trustHead || !tk.atHead || c.pf != nil {
			b, err := c.next(w)
			if err != nil {
				return err
			}
			c.noteHead(b.next)
			if len(b.events) > 0 {
				c.buf, c.ids, c.i, c.pos = b.events, b.ids, 0, b.next
				if trustHead && b.headCh != nil && b.headCh == tk.ch {
					c.holdTicket(w, tk)
				}
				return nil
			}
			if b.next > c.pos { // only noops: skip them
				c.pos = b.next
				continue
			}
			gap = b.gap
		}
		if c.opts.StreamToHead {
			return reflex.ErrHeadReached
		}
		if c.t.backoff == 0 {
			continue // busy polling
		}
		s := waitSpec{interval: c.t.backoff, noPoll: c.db == nil || c.t.cfg.loader != nil}
		if c.opts.Lag == 0 {
			s.want = c.pos + 1
		}
		switch {
		case c.opts.Lag > 0:
			// Reload when the next event may have aged enough: no later
			// than a tenth of the lag (at most a second) after it has.
			s.timeout = max(c.t.backoff, min(c.opts.Lag/10, time.Second))
		case gap || c.t.cfg.loader != nil:
			// Reload regardless: to report the gap again, or because the
			// loader may not read this table.
			s.timeout = c.t.backoff
		}
		if c.notifyC == nil {
			c.notifyC = c.t.notifier.C()
		}
		s.extra = c.notifyC
		if h := testHookBeforeWait.Load(); h != nil {
			(*h)()
		}
		fired, err := w.wait(c.ctx, tk, s)
		if err != nil {
			return err
		}
		c.noteWatcherHead(w)
		if fired {
			c.notifyC = nil
		}
	}
}

// next returns the result of the read-ahead if one runs, else loads.
func (c *streamClient) next(w *watcher) (batch, error) {
	var (
		b   batch
		err error
	)
	if c.pf != nil {
		select {
		case r := <-c.pf:
			b, err = r.b, r.err
		case <-c.ctx.Done():
			return batch{}, c.ctx.Err()
		}
		c.pf = nil
		b.head, b.headCh = false, nil // loaded before the caller's ticket
	} else {
		c.t.m.Polls.Inc()
		b, err = c.t.load(c.ctx, c.db, c.pos, c.opts.Lag, c.limit, c.limit > c.t.limit, w.current)
	}
	if err != nil {
		return batch{}, err
	}
	if !b.full {
		c.limit = c.t.limit
		return b, nil
	}
	// Far behind the head: read bigger batches (with the default lookup
	// limit) past the cache, and load the next batch while this one is
	// consumed.
	if c.t.adaptive {
		c.limit = catchUpLimit(c.limit, c.t.limit, b)
	}
	c.readAhead(b.next, c.limit)
	return b, nil
}

// catchUpLimit returns the rows of the load after the full batch b, which
// was loaded with limit rows (base is the table's lookup limit): double
// limit, up to maxCatchUpLimit rows and, at b's bytes per event, up to
// maxCatchUpBytes; never below base.
func catchUpLimit(limit, base int, b batch) int {
	next := min(2*limit, maxCatchUpLimit)
	if n := len(b.events); b.bytes > 0 && n > 0 {
		next = min(next, maxCatchUpBytes/max(b.bytes/n, 1))
	}
	return max(next, base)
}

// readAhead starts loading the batch after prev.
func (c *streamClient) readAhead(prev int64, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	ch := make(chan prefetched, 1) // the goroutine never blocks on it
	c.pf = ch
	catchUp := limit > c.t.limit
	c.wg.Go(func() {
		c.t.m.Polls.Inc()
		b, err := c.t.load(c.ctx, c.db, prev, c.opts.Lag, limit, catchUp, nil)
		ch <- prefetched{b: b, err: err}
		c.refreshHead()
	})
}

// refreshHead queries the head for Head, at most once per headRefresh,
// for a stream of the SQL table; a failed query is ignored (the next
// load reports the database's errors).
func (c *streamClient) refreshHead() {
	if c.db == nil || c.t.cfg.loader != nil {
		return
	}
	now := time.Now().UnixNano()
	if last := c.headQueried.Load(); last != 0 && now-last < int64(headRefresh) {
		return
	}
	c.headQueried.Store(now)
	if h, err := c.t.Head(c.ctx, c.db); err == nil {
		c.noteHead(h)
	}
}
