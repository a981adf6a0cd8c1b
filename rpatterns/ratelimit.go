package rpatterns

import (
	"context"
	"fmt"

	"golang.org/x/time/rate"

	"github.com/seed-e488ba2e/reflex"
)

// RateLimitConsumer is a consumer that passes events to another no faster
// than a rate limiter allows. Make one with NewRateLimitConsumer.
type RateLimitConsumer struct {
	inner   reflex.Consumer
	limiter *rate.Limiter
}

var (
	_ reflex.Consumer    = (*RateLimitConsumer)(nil)
	_ reflex.ResetterCtx = (*RateLimitConsumer)(nil)
	_ reflex.Stopper     = (*RateLimitConsumer)(nil)
)

// NewRateLimitConsumer returns a consumer, named as inner, that waits for
// a token of limiter before passing each event to inner: at most
// limiter.Limit() events per second on average, in bursts of at most
// limiter.Burst(). Share one limiter between consumers to bound them
// together (to protect a downstream service, say). The wait blocks
// Consume, so the consumer's lag grows while it waits; it ends early, with
// an error wrapping the context's, when Consume's context ends (or would
// end before the token is due, as rate.Limiter.Wait decides). Reset and
// Stop are passed on to inner. NewRateLimitConsumer panics, with an
// "rpatterns:"-prefixed message, if inner or limiter is nil, or limiter
// has a finite limit and a burst below 1 (no event could ever pass).
func NewRateLimitConsumer(inner reflex.Consumer, limiter *rate.Limiter) *RateLimitConsumer {
	switch {
	case inner == nil:
		panic("rpatterns: NewRateLimitConsumer: nil consumer")
	case limiter == nil:
		panic("rpatterns: NewRateLimitConsumer: nil limiter")
	case limiter.Limit() != rate.Inf && limiter.Burst() < 1:
		panic(fmt.Sprintf("rpatterns: NewRateLimitConsumer: burst %d lets no event through", limiter.Burst()))
	}
	return &RateLimitConsumer{inner: inner, limiter: limiter}
}

// Name returns the wrapped consumer's name.
func (c *RateLimitConsumer) Name() string { return c.inner.Name() }

// Consume waits for the limiter, then passes e to the wrapped consumer.
func (c *RateLimitConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	if err := c.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("rpatterns: rate limit of %q: %w", c.inner.Name(), err)
	}
	return c.inner.Consume(ctx, e)
}

// Reset calls the wrapped consumer's Reset, if it has one.
func (c *RateLimitConsumer) Reset(ctx context.Context) error { return resetConsumer(ctx, c.inner) }

// Stop calls the wrapped consumer's Stop, if it has one.
func (c *RateLimitConsumer) Stop() error { return stopConsumer(c.inner) }
