package reflextest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/life"
	"github.com/seed-e488ba2e/reflex/internal/streamopen"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// Log is an in-memory, append-only event log. Its Stream method is a
// reflex.StreamFunc honouring every stream option. A Log is safe for
// concurrent use; the zero value is not usable, call NewLog.
type Log struct {
	now     func() time.Time
	asGiven bool

	ctx   context.Context // the log's lifetime, ended by Close
	close context.CancelFunc

	mu       sync.Mutex // protects the following fields
	events   []*reflex.Event
	notify   chan struct{} // closed and replaced on every Append
	recvHook func(ctx context.Context, e *reflex.Event) error
}

// LogOption configures a Log.
type LogOption func(*Log)

// WithEventsAsGiven makes Append keep events exactly as given: no ID or
// timestamp is filled in, and IDs need not be increasing integers. A
// stream still starts after the first event whose integer ID (see
// reflex.Event.IDInt) is greater than its cursor, so resuming is only
// meaningful with increasing integer IDs. testmock.TestStreamer uses it.
func WithEventsAsGiven() LogOption {
	return func(l *Log) { l.asGiven = true }
}

// NewLog returns an empty Log. It panics, with a "reflextest:"-prefixed
// message, if an option is nil.
func NewLog(opts ...LogOption) *Log {
	ctx, cancel := context.WithCancel(context.Background()) // the log's lifetime
	l := &Log{now: time.Now, ctx: ctx, close: cancel, notify: make(chan struct{})}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("reflextest: NewLog: option %d is nil", i))
		}
		o(l)
	}
	return l
}

// Close ends every stream of the log, open or opened later: their Recv
// returns context.Canceled. Appending is still possible. Close is
// idempotent and safe for concurrent use.
func (l *Log) Close() { l.close() }

// Append adds events and returns their IDs. An event without an ID gets
// the next integer ID ("1", "2", ...); one with an ID keeps it, and must
// then be an integer greater than the last one (Append panics otherwise, a
// test programming error). A zero Timestamp is set to the current time.
// With WithEventsAsGiven, events are kept as they are. Streams waiting at
// the head are woken.
func (l *Log) Append(events ...reflex.Event) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(events))
	for _, e := range events {
		if !l.asGiven {
			l.fillLocked(&e)
		}
		ev := e
		l.events = append(l.events, &ev)
		ids = append(ids, e.ID)
	}
	close(l.notify)
	l.notify = make(chan struct{})
	return ids
}

// fillLocked gives e the next ID if it has none (and checks the one it
// has), and the current time if it has no timestamp.
func (l *Log) fillLocked(e *reflex.Event) {
	last := int64(0)
	if n := len(l.events); n > 0 {
		last = l.events[n-1].IDInt()
	}
	if e.ID == "" {
		e.ID = strconv.FormatInt(last+1, 10)
	} else if id, err := strconv.ParseInt(e.ID, 10, 64); err != nil || (len(l.events) > 0 && id <= last) {
		panic(fmt.Sprintf("reflextest: Log.Append: event ID %q must be an integer greater than %d", e.ID, last))
	}
	if e.Timestamp.IsZero() {
		e.Timestamp = l.now()
	}
}

// Events returns a copy of the events appended so far.
func (l *Log) Events() []reflex.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]reflex.Event, len(l.events))
	for i, e := range l.events {
		out[i] = *e
	}
	return out
}

// SetRecvHook sets a function that runs before any stream of the log
// returns an event. If it returns an error, Recv returns that error and the
// event is returned again by the next Recv. Use it to inject failures and
// delays (block in the hook). A nil hook removes it.
func (l *Log) SetRecvHook(hook func(ctx context.Context, e *reflex.Event) error) {
	l.mu.Lock()
	l.recvHook = hook
	l.mu.Unlock()
}

// Stream is a reflex.StreamFunc over the log. after must be "" or a
// non-negative base-10 int64; otherwise, and for a negative lag, Stream
// returns an error wrapping reflex.ErrInvalidCursor. The stream starts
// after the first event whose integer ID is greater than after.
// WithStreamFromHead starts after the last event at the time Stream is
// called (after is then ignored); WithStreamToHead makes Recv return
// reflex.ErrHeadReached when no event follows; WithStreamLag delivers an
// event only once it is older than the lag (Recv waits).
//
// Recv returns ctx.Err() once ctx is done, and context.Canceled once the
// client or the log is closed. Clients implement io.Closer (Close is
// idempotent, safe for concurrent use and returns nil) and
// reflex.Buffered.
func (l *Log) Stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	o, err := streamopen.Open(ctx, "reflextest", after, opts, streamopen.ParseInt)
	if err != nil {
		return nil, err
	}
	c := &logClient{life: o.Life, log: l, opts: o.Options}
	c.unlink = context.AfterFunc(l.ctx, func() { _ = o.Life.Close() })
	if l.ctx.Err() != nil {
		_ = o.Life.Close() // at once: AfterFunc runs later, on a goroutine
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case o.Options.StreamFromHead:
		c.next = len(l.events)
	case o.HasCursor:
		c.next = l.indexAfterLocked(o.Cursor)
	}
	return c, nil
}

// indexAfterLocked returns the index of the first event with an integer
// ID greater than after, or len(l.events).
func (l *Log) indexAfterLocked(after int64) int {
	for i, e := range l.events {
		if e.IDInt() > after {
			return i
		}
	}
	return len(l.events)
}

type logClient struct {
	life   *life.Life
	unlink func() bool // stops the log's Close from closing the client
	log    *Log
	opts   reflex.StreamOptions
	next   int
	timer  wait.Timer
}

func (c *logClient) Recv() (*reflex.Event, error) {
	for {
		if err := c.life.Err(); err != nil {
			return nil, err
		}
		c.log.mu.Lock()
		var e *reflex.Event
		if c.next < len(c.log.events) {
			e = c.log.events[c.next]
		}
		wake, hook := c.log.notify, c.log.recvHook
		c.log.mu.Unlock()

		if e == nil {
			if c.opts.StreamToHead {
				return nil, reflex.ErrHeadReached
			}
			select {
			case <-c.life.Context().Done():
			case <-wake:
			}
			continue
		}
		if c.opts.Lag > 0 {
			if d := c.opts.Lag - c.log.now().Sub(e.Timestamp); d > 0 {
				if c.opts.StreamToHead {
					return nil, reflex.ErrHeadReached
				}
				_ = c.timer.Sleep(c.life.Context(), d)
				continue // Err ends the loop if the wait was cut short
			}
		}
		if hook != nil {
			if err := hook(c.life.Context(), e); err != nil {
				return nil, err
			}
		}
		c.next++
		return e, nil
	}
}

// Close ends the client: Recv returns context.Canceled from then on. It is
// idempotent, safe for concurrent use and returns nil.
func (c *logClient) Close() error {
	c.unlink()
	return c.life.Close()
}

// Buffered implements reflex.Buffered: the events Recv can return without
// waiting (0 with a lag option, which may make Recv wait).
func (c *logClient) Buffered() int {
	if c.opts.Lag > 0 {
		return 0
	}
	c.log.mu.Lock()
	defer c.log.mu.Unlock()
	return max(len(c.log.events)-c.next, 0)
}
