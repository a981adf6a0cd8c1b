package reflex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/life"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// ErrCircuitOpen is wrapped by the error a resilient gRPC client (see
// WithGRPCReconnect) returns, from its StreamFunc or from Recv, while its
// circuit breaker is open, or half-open with its probe in flight: the
// peer failed too often, and is not contacted until the breaker lets a
// probe through. It is a transient error; retry after a backoff (as
// rpatterns.RunForever does). It never crosses gRPC.
var ErrCircuitOpen = errors.New("reflex: circuit breaker open")

// randFloat64 returns a number in [0, 1) for jitter; tests replace it.
var randFloat64 = rand.Float64

// jitter returns a random duration in (d/2, d].
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(randFloat64()*float64(d/2))
}

// transient reports whether a stream error is worth reconnecting for (see
// ReconnectPolicy). The caller has checked that its own context is not
// done.
func transient(err error) bool {
	switch {
	case errors.Is(err, ErrHeadReached), errors.Is(err, ErrInvalidCursor), errors.Is(err, ErrCircuitOpen):
		return false
	case errors.Is(err, ErrStopped), errors.Is(err, ErrTooManyStreams):
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown,
		codes.Canceled, codes.DeadlineExceeded:
		return true
	}
	return false
}

// breaker is the circuit breaker shared by the streams of one resilient
// StreamFunc (see ReconnectPolicy). It is safe for concurrent use.
type breaker struct {
	p ReconnectPolicy
	m *metrics.Breaker

	mu        sync.Mutex // protects the following fields
	state     BreakerState
	failures  int       // failed attempts in a row
	openUntil time.Time // while open
	probing   bool      // half-open: the probe is in flight
	lastErr   error     // of the last failed attempt
}

func newBreaker(p ReconnectPolicy) *breaker {
	return &breaker{p: p, m: metrics.NewBreaker(p.Peer)}
}

// setLocked moves the breaker to state s.
func (b *breaker) setLocked(s BreakerState) {
	if b.state == s {
		return
	}
	b.state = s
	b.m.State(int(s))
	if b.p.OnState != nil {
		b.p.OnState(s)
	}
}

// allow returns whether an attempt may go ahead (a nil error), and whether
// it is the half-open probe; otherwise an error wrapping ErrCircuitOpen.
func (b *breaker) allow() (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return false, nil
	case BreakerOpen:
		if time.Now().Before(b.openUntil) {
			return false, b.openErrLocked()
		}
		b.setLocked(BreakerHalfOpen)
	}
	if b.probing {
		return false, b.openErrLocked()
	}
	b.probing = true
	return true, nil
}

func (b *breaker) openErrLocked() error {
	msg := "none"
	if b.lastErr != nil {
		msg = bounded.Truncate(b.lastErr.Error(), 256)
	}
	return fmt.Errorf("%w: %d attempts in a row failed, the last with: %s", ErrCircuitOpen, b.failures, msg)
}

// done records the outcome of an attempt that allow let through: failed
// with err, or succeeded.
func (b *breaker) done(probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if err == nil {
		b.failures = 0
		b.setLocked(BreakerClosed)
		return
	}
	b.failures++
	b.lastErr = err
	if probe || (b.state == BreakerClosed && b.failures >= b.p.FailureThreshold) {
		b.openUntil = time.Now().Add(jitter(b.p.OpenFor))
		b.setLocked(BreakerOpen)
	}
}

// abandon ends an attempt whose outcome is unknown (the caller gave up):
// a probe lets the next attempt probe instead.
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// newReconnecting returns the resilient StreamFunc of inner (see
// ReconnectPolicy); inner must return only once the peer said the stream
// is open (see waitOpened). p has its defaults.
func newReconnecting(inner StreamFunc, p ReconnectPolicy) StreamFunc {
	br := newBreaker(p)
	return func(ctx context.Context, after string, opts ...StreamOption) (StreamClient, error) {
		o := ResolveOptions(opts...)
		c := &reconnClient{life: life.New(ctx), inner: inner, br: br, p: p, after: after, opts: opts}
		if o.Lag > 0 {
			c.resume = append(c.resume, WithStreamLag(o.Lag))
		}
		if o.StreamToHead {
			c.resume = append(c.resume, WithStreamToHead())
		}
		if err := c.connect(); err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	}
}

// reconnClient is the client of a resilient StreamFunc. Recv is used by
// one goroutine at a time; Close may be called from any.
type reconnClient struct {
	life  *life.Life
	inner StreamFunc
	br    *breaker
	p     ReconnectPolicy
	timer wait.Timer

	// Used by Recv only.
	after    string         // where to resume: the last event returned, or the cursor
	opts     []StreamOption // the options to open with
	resume   []StreamOption // the options to resume with, once an event was returned
	failures int            // attempts in a row that failed or delivered nothing

	mu   sync.Mutex   // protects cur against a concurrent Close
	cur  StreamClient // the open stream, nil between attempts
	head string       // the head of the last stream, once known
}

var (
	_ Buffered     = (*reconnClient)(nil)
	_ HeadReporter = (*reconnClient)(nil)
	_ io.Closer    = (*reconnClient)(nil)
)

// backoff returns the wait before the next attempt.
func (c *reconnClient) backoff() time.Duration {
	d := c.p.MaxBackoff
	if shift := c.failures - 1; shift < 32 {
		d = min(c.p.MinBackoff<<shift, c.p.MaxBackoff)
	}
	return jitter(d)
}

// connect opens a stream, waiting and retrying as the policy says, until
// it opens, an error that is not transient comes back, the breaker
// refuses, or the client is closed.
func (c *reconnClient) connect() error {
	for {
		if c.failures > 0 {
			if err := c.timer.Sleep(c.life.Context(), c.backoff()); err != nil {
				return c.life.Err()
			}
		}
		if err := c.life.Err(); err != nil {
			return err
		}
		probe, err := c.br.allow()
		if err != nil {
			return err
		}
		if c.failures > 0 {
			c.br.m.Reconnect()
		}
		cl, err := c.inner(c.life.Context(), c.after, c.opts...)
		if lerr := c.life.Err(); lerr != nil {
			c.br.abandon(probe)
			if cl != nil {
				closeClient(cl)
			}
			return lerr
		}
		if err != nil && transient(err) {
			c.br.done(probe, err)
			c.failures++
			continue
		}
		c.br.done(probe, nil) // the peer answered
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.cur = cl
		c.mu.Unlock()
		return nil
	}
}

// closeClient closes cl if it is an io.Closer.
func closeClient(cl StreamClient) {
	if cl, ok := cl.(io.Closer); ok {
		_ = cl.Close()
	}
}

// Recv returns the next event, reconnecting through transient errors (see
// ReconnectPolicy).
func (c *reconnClient) Recv() (*Event, error) {
	for {
		if err := c.life.Err(); err != nil {
			return nil, err
		}
		if c.cur == nil {
			if err := c.connect(); err != nil {
				return nil, err
			}
		}
		e, err := c.cur.Recv()
		if err == nil {
			c.after, c.opts, c.failures = e.ID, c.resume, 0
			return e, nil
		}
		if lerr := c.life.Err(); lerr != nil {
			return nil, lerr
		}
		if !transient(err) {
			return nil, err
		}
		c.mu.Lock()
		if h, ok := c.cur.(HeadReporter); ok {
			if head, ok := h.Head(); ok {
				c.head = head
			}
		}
		closeClient(c.cur)
		c.cur = nil
		c.mu.Unlock()
		c.failures++
	}
}

// Buffered returns the events the open stream holds (see Buffered).
func (c *reconnClient) Buffered() int {
	if b, ok := c.cur.(Buffered); ok {
		return b.Buffered()
	}
	return 0
}

// Head returns the head the peer last sent (see HeadReporter), across
// reconnections. It is safe for concurrent use with Recv.
func (c *reconnClient) Head() (string, bool) {
	c.mu.Lock()
	cur, head := c.cur, c.head
	c.mu.Unlock()
	if h, ok := cur.(HeadReporter); ok {
		if id, ok := h.Head(); ok {
			return id, true
		}
	}
	return head, head != ""
}

// Close ends the client: a wait or attempt in progress, and the open
// stream. It is idempotent, safe for concurrent use and returns nil.
func (c *reconnClient) Close() error {
	_ = c.life.Close()
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur != nil {
		closeClient(cur)
	}
	return nil
}
