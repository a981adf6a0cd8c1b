package testmock

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// TestStreamer is an in-memory event stream for tests, returned by
// NewTestStreamer. Its methods are safe for concurrent use.
type TestStreamer interface {
	// InsertEvent appends e to the stream; it does not block. The event is
	// delivered exactly as given: the caller chooses its ID, which should
	// be an integer greater than that of every earlier event, since
	// streams resume after a cursor by comparing integer IDs.
	InsertEvent(e reflex.Event)

	// StreamFunc returns a reflex.StreamFunc over the stream. See
	// NewTestStreamer for the options it honours.
	StreamFunc() reflex.StreamFunc

	// Stop ends every stream of the streamer: blocked and later Recv
	// calls return context.Canceled. It is idempotent.
	Stop()
}

// NewTestStreamer returns an empty TestStreamer that is stopped when the
// test and its subtests complete.
//
// Its StreamFunc starts after the first event whose integer ID is greater
// than after ("" means from the first event; an after that is not an
// integer is an error). Recv blocks until an event is inserted (there is no
// polling), and returns the stream context's error once it is done, or
// context.Canceled once the streamer is stopped or the client closed. Stream
// options:
//   - WithStreamFromHead starts after the last event inserted before the
//     StreamFunc was called, ignoring after;
//   - WithStreamToHead makes Recv return an error wrapping
//     reflex.ErrHeadReached instead of blocking;
//   - WithStreamLag delivers an event only once its Timestamp is older
//     than the lag (Recv waits on a timer, or with WithStreamToHead
//     returns ErrHeadReached).
//
// Clients implement io.Closer.
func NewTestStreamer(t testing.TB) TestStreamer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &streamer{ctx: ctx, stop: cancel, notify: make(chan struct{})}
	t.Cleanup(s.Stop)
	return s
}

type streamer struct {
	ctx  context.Context // the streamer's lifetime, cancelled by Stop
	stop context.CancelFunc

	mu     sync.Mutex // protects the following fields
	events []*reflex.Event
	notify chan struct{} // closed and replaced by every InsertEvent
}

var _ TestStreamer = (*streamer)(nil)

func (s *streamer) InsertEvent(e reflex.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, &e)
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *streamer) Stop() { s.stop() }

func (s *streamer) StreamFunc() reflex.StreamFunc { return s.stream }

func (s *streamer) stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	o := reflex.ResolveOptions(opts...)
	var a int64 = -1 << 63
	if after != "" && !o.StreamFromHead {
		var err error
		a, err = strconv.ParseInt(after, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("testmock: invalid cursor %q: %w", after, err)
		}
	}

	s.mu.Lock()
	next := len(s.events)
	if !o.StreamFromHead {
		for i, e := range s.events {
			if after == "" || e.IDInt() > a {
				next = i
				break
			}
		}
	}
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	return &client{s: s, ctx: ctx, cancel: cancel, opts: o, next: next}, nil
}

type client struct {
	s      *streamer
	ctx    context.Context // the stream's context, also cancelled by Close
	cancel context.CancelFunc
	opts   reflex.StreamOptions
	next   int
	timer  *time.Timer
}

// err returns the error Recv returns once the stream is over: the stream
// context's, or context.Canceled once the streamer is stopped.
func (c *client) err() error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	return c.s.ctx.Err()
}

func (c *client) Recv() (*reflex.Event, error) {
	for {
		if err := c.err(); err != nil {
			return nil, err
		}
		c.s.mu.Lock()
		var e *reflex.Event
		if c.next < len(c.s.events) {
			e = c.s.events[c.next]
		}
		wake := c.s.notify
		c.s.mu.Unlock()

		if e == nil {
			if c.opts.StreamToHead {
				return nil, fmt.Errorf("testmock: %w", reflex.ErrHeadReached)
			}
			select {
			case <-c.ctx.Done():
			case <-c.s.ctx.Done():
			case <-wake:
			}
			continue
		}
		if d := c.opts.Lag - time.Since(e.Timestamp); c.opts.Lag > 0 && d > 0 {
			if c.opts.StreamToHead {
				return nil, fmt.Errorf("testmock: %w", reflex.ErrHeadReached)
			}
			if err := c.wait(d); err != nil {
				return nil, err
			}
			continue
		}
		c.next++
		return e, nil
	}
}

func (c *client) wait(d time.Duration) error {
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.ctx.Done():
	case <-c.s.ctx.Done():
	case <-c.timer.C:
		return nil
	}
	c.timer.Stop()
	return c.err()
}

// Close ends the client: later Recv calls return context.Canceled. It is
// idempotent.
func (c *client) Close() error {
	c.cancel()
	return nil
}
