package reflextest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// Log is an in-memory, append-only event log. Its Stream method is a
// reflex.StreamFunc honouring every stream option. A Log is safe for
// concurrent use; the zero value is not usable, call NewLog.
type Log struct {
	now func() time.Time

	mu       sync.Mutex // protects the following fields
	events   []*reflex.Event
	notify   chan struct{} // closed and replaced on every Append
	recvHook func(ctx context.Context, e *reflex.Event) error
}

// NewLog returns an empty Log.
func NewLog() *Log {
	return &Log{now: time.Now, notify: make(chan struct{})}
}

// Append adds events and returns their IDs. An event without an ID gets
// the next integer ID ("1", "2", ...); one with an ID keeps it, and must
// then be an integer greater than the last one (Append panics otherwise, a
// test programming error). A zero Timestamp is set to the current time.
// Streams waiting at the head are woken.
func (l *Log) Append(events ...reflex.Event) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(events))
	for _, e := range events {
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
		ev := e
		l.events = append(l.events, &ev)
		ids = append(ids, e.ID)
	}
	close(l.notify)
	l.notify = make(chan struct{})
	return ids
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

// Stream is a reflex.StreamFunc over the log. after must be "" or an
// integer (else Stream returns an error). WithStreamFromHead starts after
// the last event at the time Stream is called; WithStreamToHead makes Recv
// return reflex.ErrHeadReached when no event follows; WithStreamLag
// delivers an event only once it is older than the lag (Recv waits). Recv
// returns ctx.Err() once ctx is done.
func (l *Log) Stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	o := reflex.ResolveOptions(opts...)
	if o.Lag < 0 {
		return nil, fmt.Errorf("reflextest: negative lag %v", o.Lag)
	}
	c := &logClient{ctx: ctx, log: l, opts: o}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case o.StreamFromHead:
		c.next = len(l.events)
	case after != "":
		a, err := strconv.ParseInt(after, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("reflextest: invalid cursor %q: %w", after, err)
		}
		c.next = l.indexAfterLocked(a)
	}
	return c, nil
}

// indexAfterLocked returns the index of the first event with ID > after.
func (l *Log) indexAfterLocked(after int64) int {
	lo, hi := 0, len(l.events)
	for lo < hi {
		m := (lo + hi) / 2
		if l.events[m].IDInt() <= after {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

type logClient struct {
	ctx   context.Context
	log   *Log
	opts  reflex.StreamOptions
	next  int
	timer *time.Timer
}

func (c *logClient) Recv() (*reflex.Event, error) {
	for {
		if err := c.ctx.Err(); err != nil {
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
			case <-c.ctx.Done():
				return nil, c.ctx.Err()
			case <-wake:
			}
			continue
		}
		if c.opts.Lag > 0 {
			if d := c.opts.Lag - c.log.now().Sub(e.Timestamp); d > 0 {
				if c.opts.StreamToHead {
					return nil, reflex.ErrHeadReached
				}
				if err := c.wait(d); err != nil {
					return nil, err
				}
				continue
			}
		}
		if hook != nil {
			if err := hook(c.ctx, e); err != nil {
				return nil, err
			}
		}
		c.next++
		return e, nil
	}
}

func (c *logClient) wait(d time.Duration) error {
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.ctx.Done():
		c.timer.Stop()
		return c.ctx.Err()
	case <-c.timer.C:
		return nil
	}
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
