package rpatterns

import (
	"context"
	"fmt"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// defaultPollBackoff is the wait between polls that return no events.
const defaultPollBackoff = time.Minute

// PollFunc returns the events after the cursor after (exclusive; "" means
// from the beginning), in order, or none if there are none yet. It
// receives the options of the stream being read.
type PollFunc func(ctx context.Context, after string, opts ...reflex.StreamOption) ([]reflex.Event, error)

// PollerOption configures the Poller that NewPoller returns. It is an alias
// of the function type, as luno/reflex's options are plain func(*Poller).
type PollerOption = func(*Poller)

// WithPollBackoff sets the wait between polls that return no events
// (default 1 minute). NewPoller panics if d is not positive.
func WithPollBackoff(d time.Duration) func(*Poller) {
	return func(p *Poller) { p.backoff = d }
}

// WithSleep makes the Poller wait between polls that return no events by
// receiving from sleep(backoff) (or until the stream's context is done)
// instead of with a timer, so a test can control the waits. The first
// argument is not used: it accepts the *testing.T that luno/reflex
// required (any value with a Helper method, or nil). A nil sleep is
// ignored. Tests of this module use testing/synctest instead.
func WithSleep(_ interface{ Helper() }, sleep func(d time.Duration) <-chan time.Time) func(*Poller) {
	return func(p *Poller) {
		if sleep != nil {
			p.sleep = sleep
		}
	}
}

// Poller turns a PollFunc, such as a paged API call, into a stream; see
// NewPoller. A Poller is a value: copies share nothing but the poll
// function.
type Poller struct {
	poll    PollFunc
	backoff time.Duration
	sleep   func(time.Duration) <-chan time.Time // nil: a timer
}

// NewPoller returns a Poller that streams the events pollFn returns. It
// panics if pollFn or an option is nil, or if WithPollBackoff is not
// positive, programming errors.
func NewPoller(pollFn PollFunc, opts ...func(*Poller)) Poller {
	if pollFn == nil {
		panic("rpatterns: NewPoller: nil poll function")
	}
	mustOptions("NewPoller", "option", opts)
	p := Poller{poll: pollFn, backoff: defaultPollBackoff}
	for _, o := range opts {
		o(&p)
	}
	if p.backoff <= 0 {
		panic(fmt.Sprintf("rpatterns: NewPoller: poll backoff is %v, must be positive", p.backoff))
	}
	return p
}

// Stream is a reflex.StreamFunc. Its client's Recv returns the polled events
// one by one; when none are left it polls again with the ID of the last
// event returned (at first, after), waiting the backoff between polls that
// return nothing. Stream options are passed to the poll function; with
// WithStreamToHead an empty poll makes Recv return reflex.ErrHeadReached
// instead of waiting. Recv returns the poll function's error, or ctx.Err()
// once ctx is done. Stream is safe for concurrent use; each client is used
// by one goroutine at a time. The client implements reflex.Buffered.
func (p Poller) Stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	return &pollClient{
		ctx:    ctx,
		p:      p,
		after:  after,
		opts:   opts,
		toHead: reflex.ResolveOptions(opts...).StreamToHead,
	}, nil
}

type pollClient struct {
	ctx    context.Context
	p      Poller
	after  string
	opts   []reflex.StreamOption
	toHead bool
	buf    []reflex.Event
	timer  wait.Timer
}

var _ reflex.Buffered = (*pollClient)(nil)

func (c *pollClient) Recv() (*reflex.Event, error) {
	for len(c.buf) == 0 {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		events, err := c.p.poll(c.ctx, c.after, c.opts...)
		if err != nil {
			return nil, err
		}
		if len(events) > 0 {
			c.buf = events
			break
		}
		if c.toHead {
			return nil, reflex.ErrHeadReached
		}
		if err := c.wait(); err != nil {
			return nil, err
		}
	}
	e := &c.buf[0]
	c.buf = c.buf[1:]
	c.after = e.ID
	return e, nil
}

// wait waits the backoff, or until the stream's context is done.
func (c *pollClient) wait() error {
	if c.p.sleep == nil {
		return c.timer.Sleep(c.ctx, c.p.backoff)
	}
	select {
	case <-c.ctx.Done():
		return c.ctx.Err()
	case <-c.p.sleep(c.p.backoff):
		return nil
	}
}

// Buffered returns the number of polled events not yet returned.
func (c *pollClient) Buffered() int { return len(c.buf) }
