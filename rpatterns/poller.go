package rpatterns

import (
	"context"
	"fmt"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// defaultPollBackoff is the wait between polls that return no events.
const defaultPollBackoff = time.Minute

// PollFunc returns the events after the cursor after (exclusive; "" means
// from the beginning), in order, or none if there are none yet. It
// receives the options of the stream being read.
type PollFunc func(ctx context.Context, after string, opts ...reflex.StreamOption) ([]reflex.Event, error)

// PollerOption configures a Poller.
type PollerOption func(*pollerConfig)

type pollerConfig struct {
	backoff time.Duration
}

// WithPollBackoff sets the wait between polls that return no events
// (default 1 minute). NewPoller panics if d is not positive.
func WithPollBackoff(d time.Duration) PollerOption {
	return func(c *pollerConfig) { c.backoff = d }
}

// Poller turns a PollFunc, such as a paged API call, into a stream; see
// NewPoller.
type Poller struct {
	poll    PollFunc
	backoff time.Duration
}

// NewPoller returns a Poller that streams the events pollFn returns. It
// panics if pollFn is nil or WithPollBackoff is not positive, programming
// errors.
func NewPoller(pollFn PollFunc, opts ...PollerOption) *Poller {
	if pollFn == nil {
		panic("rpatterns: NewPoller: nil poll function")
	}
	c := pollerConfig{backoff: defaultPollBackoff}
	for _, o := range opts {
		o(&c)
	}
	if c.backoff <= 0 {
		panic(fmt.Sprintf("rpatterns: NewPoller: poll backoff is %v, must be positive", c.backoff))
	}
	return &Poller{poll: pollFn, backoff: c.backoff}
}

// Stream is a reflex.StreamFunc. Its client's Recv returns the polled events
// one by one; when none are left it polls again with the ID of the last
// event returned (at first, after), waiting the backoff between polls that
// return nothing. Stream options are passed to the poll function; with
// WithStreamToHead an empty poll makes Recv return reflex.ErrHeadReached
// instead of waiting. Recv returns the poll function's error, or ctx.Err()
// once ctx is done. The client implements reflex.Buffered.
func (p *Poller) Stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
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
	p      *Poller
	after  string
	opts   []reflex.StreamOption
	toHead bool
	buf    []reflex.Event
	timer  *time.Timer
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

func (c *pollClient) wait() error {
	if c.timer == nil {
		c.timer = time.NewTimer(c.p.backoff)
	} else {
		c.timer.Reset(c.p.backoff)
	}
	select {
	case <-c.ctx.Done():
		c.timer.Stop()
		return c.ctx.Err()
	case <-c.timer.C:
		return nil
	}
}

// Buffered returns the number of polled events not yet returned.
func (c *pollClient) Buffered() int { return len(c.buf) }
