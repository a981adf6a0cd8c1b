package reflex

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/tracing"
)

// Consumer is business logic that consumes events under a name; the name
// keys its cursor and its metrics. Consume must be idempotent: reflex
// delivers at least once.
//
// A Consumer may also implement ResetterCtx (or Reset() error), called at
// the start of every Run, and Stopper, called by Spec.Stop.
type Consumer interface {
	Name() string
	Consume(ctx context.Context, e *Event) error
}

// ConsumerFunc is the logic of a consumer built by NewConsumer.
type ConsumerFunc func(ctx context.Context, e *Event) error

// RecoveryFunc is called with an unexpected error returned by a consumer's
// logic or filter. It may return nil to swallow the error, return it, or
// replace it. See WithRecoverFunction.
type RecoveryFunc func(ctx context.Context, e *Event, c Consumer, err error) error

// ConsumerOption configures a consumer built by NewConsumer.
type ConsumerOption func(*consumer)

const (
	defaultLagAlert    = 30 * time.Minute
	defaultActivityTTL = 24 * time.Hour
)

// WithConsumerLagAlert sets the lag above which reflex_consumer_lag_alert
// is 1. The default is 30 minutes; d <= 0 disables the alert.
func WithConsumerLagAlert(d time.Duration) ConsumerOption {
	return func(c *consumer) { c.lagAlert = d }
}

// WithoutConsumerLag disables the lag alert: the alert gauge stays 0.
func WithoutConsumerLag() ConsumerOption {
	return func(c *consumer) { c.lagAlert = -1 }
}

// WithConsumerLagAlertGauge sets the lag alert on g instead of the default
// reflex_consumer_lag_alert series, for custom labels.
func WithConsumerLagAlertGauge(g prometheus.Gauge) ConsumerOption {
	return func(c *consumer) { c.alertGauge = g }
}

// WithConsumerActivityTTL sets how long after its last event (or its
// creation) the consumer still reports reflex_consumer_active = 1. The
// default is 24 hours.
func WithConsumerActivityTTL(ttl time.Duration) ConsumerOption {
	return func(c *consumer) { c.activityTTL = ttl }
}

// WithConsumerActivityTTLFunc is WithConsumerActivityTTL with the TTL taken
// from ttl once, when the option is applied.
func WithConsumerActivityTTLFunc(ttl func() time.Duration) ConsumerOption {
	return func(c *consumer) { c.activityTTL = ttl() }
}

// WithoutConsumerActivityTTL disables the activity gauge for the consumer.
func WithoutConsumerActivityTTL() ConsumerOption {
	return func(c *consumer) { c.activityTTL = -1 }
}

// WithFilterIncludeTypes passes only events of the given types to the
// consumer's logic; other events are skipped (counted in
// reflex_consumer_skipped_events_count) and count as consumed. With no
// types every event passes. It is checked before WithEventFilter.
func WithFilterIncludeTypes(types ...EventType) ConsumerOption {
	return func(c *consumer) { c.includeTypes = types }
}

// WithEventFilter passes only events for which flt returns true to the
// consumer's logic; other events are skipped and count as consumed. An
// error from flt is returned wrapped in ErrFilter and the event is not
// processed. A nil filter passes every event.
func WithEventFilter(flt EventFilter) ConsumerOption {
	return func(c *consumer) { c.filter = flt }
}

// WithRecoverFunction sets a function called with every unexpected error
// (see IsExpected) from the consumer's logic or filter; what it returns is
// what Consume returns. The default returns the error unchanged.
func WithRecoverFunction(fn RecoveryFunc) ConsumerOption {
	return func(c *consumer) { c.recover = fn }
}

type consumer struct {
	name         string
	fn           ConsumerFunc
	lagAlert     time.Duration
	alertGauge   prometheus.Gauge
	activityTTL  time.Duration
	includeTypes []EventType
	filter       EventFilter
	recover      RecoveryFunc
	metrics      *metrics.Consumer
}

var (
	_ Consumer = (*consumer)(nil)
	_ resetter = (*consumer)(nil)
	_ Stopper  = (*consumer)(nil)
)

// NewConsumer returns a consumer named name that runs fn for each event it
// does not filter out, recording Prometheus metrics (lag, event age,
// latency, errors, skipped events, activity) labelled with name.
//
// Consume applies, in order: WithFilterIncludeTypes, WithEventFilter, fn,
// and for unexpected errors the recovery function. Skipped events return
// nil. Consume of a nil event, or of any event by a consumer with a nil fn,
// returns an error. It is safe for concurrent use if fn is. NewConsumer
// panics if an option is nil.
func NewConsumer(name string, fn ConsumerFunc, opts ...ConsumerOption) Consumer {
	for _, o := range opts {
		if o == nil {
			panic("reflex: NewConsumer " + bounded.Quote(name) + ": nil ConsumerOption")
		}
	}
	c := &consumer{
		name:        name,
		fn:          fn,
		lagAlert:    defaultLagAlert,
		activityTTL: defaultActivityTTL,
	}
	for _, o := range opts {
		o(c)
	}
	c.metrics = metrics.NewConsumer(name, c.alertGauge, c.activityTTL)
	return c
}

func (c *consumer) Name() string { return c.name }

func (c *consumer) Consume(ctx context.Context, e *Event) error {
	if e == nil {
		return fmt.Errorf("reflex: consumer %s: Consume called with a nil event", bounded.Quote(c.name))
	}
	start := time.Now()
	lag := start.Sub(e.Timestamp)
	c.metrics.Start(start, lag, c.lagAlert > 0 && lag > c.lagAlert)

	if len(e.Trace) > 0 {
		ctx = tracing.Inject(ctx, e.Trace)
	}

	ok, err := c.pass(e)
	if err == nil && !ok {
		c.metrics.Skipped()
		c.metrics.Done(start)
		return nil
	}
	if err == nil {
		if c.fn == nil {
			err = fmt.Errorf("reflex: consumer %s has a nil ConsumerFunc", bounded.Quote(c.name))
		} else {
			err = c.fn(ctx, e)
		}
	}
	if err != nil && !IsExpected(err) {
		if c.recover != nil {
			err = c.recover(ctx, e, c, err)
		}
		if err != nil && !IsExpected(err) {
			c.metrics.Error()
		}
	}
	c.metrics.Done(start)
	return err
}

// pass applies the include-types filter, then the event filter.
func (c *consumer) pass(e *Event) (bool, error) {
	if len(c.includeTypes) > 0 && !IsAnyType(e.Type, c.includeTypes...) {
		return false, nil
	}
	if c.filter == nil {
		return true, nil
	}
	ok, err := c.filter(e)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrFilter, err)
	}
	return ok, nil
}

// Reset recreates the consumer's lag series; Run calls it at the start of
// every run.
func (c *consumer) Reset() error {
	c.metrics.ResetLag()
	return nil
}

// Stop deletes the consumer's lag series.
func (c *consumer) Stop() error {
	c.metrics.DeleteLag()
	return nil
}
