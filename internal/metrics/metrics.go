// Package metrics defines and registers every Prometheus collector of reflex.
// Other packages call the small functions here; nothing else registers
// collectors or uses init.
package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const consumerLabel = "consumer_name"

var (
	// ConsumerEventAge observes the age of each consumed event.
	ConsumerEventAge = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reflex_consumer_event_age_seconds",
		Help:    "Age of consumed events.",
		Buckets: []float64{0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000, 10000, 50000, 100000},
	}, []string{consumerLabel})

	// ConsumerLagAlert is 1 when the consumer's lag exceeds its threshold.
	ConsumerLagAlert = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_consumer_lag_alert",
		Help: "Whether the consumer lag exceeds its alert threshold (0 or 1).",
	}, []string{consumerLabel})

	// ConsumerLatency observes the duration of each Consume call.
	ConsumerLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reflex_consumer_latency_seconds",
		Help:    "Event consumption latency.",
		Buckets: []float64{0.01, 0.1, 1, 5, 10, 60, 300},
	}, []string{consumerLabel})

	// ConsumerErrors counts unexpected consume errors that survived recovery.
	ConsumerErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_consumer_error_count",
		Help: "Number of unexpected consume errors.",
	}, []string{consumerLabel})

	// ConsumerDeadLettered counts events recorded as consumer errors.
	ConsumerDeadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_consumer_dead_lettered_events_count",
		Help: "Number of events recorded in a dead-letter store.",
	}, []string{consumerLabel})

	// ConsumerSkipped counts events skipped by consumer filters.
	ConsumerSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_consumer_skipped_events_count",
		Help: "Number of events skipped by consumer filters.",
	}, []string{consumerLabel})

	// Activity is the reflex_consumer_active gauge family.
	Activity = newActivityCollector()

	// serverStreams counts the stream calls reflex Servers serve.
	serverStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "reflex_server_streams",
		Help: "Stream calls being served by reflex gRPC servers.",
	})

	// serverRejected counts stream calls refused by a Server's limit.
	serverRejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "reflex_server_rejected_streams_total",
		Help: "Stream calls refused because a reflex gRPC server served its limit of concurrent streams.",
	})

	// serverBuffered is the event bytes the streams of Servers hold.
	serverBuffered = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "reflex_server_buffered_bytes",
		Help: "Event bytes read from stream functions and not yet sent, over all streams of reflex gRPC servers.",
	})
)

func init() {
	prometheus.MustRegister(ConsumerEventAge, ConsumerLagAlert,
		ConsumerLatency, ConsumerErrors, ConsumerDeadLettered, ConsumerSkipped, Activity,
		serverStreams, serverRejected, serverBuffered)
}

// ServerStreams adds delta to the stream calls being served.
func ServerStreams(delta int) { serverStreams.Add(float64(delta)) }

// ServerStreamRejected counts a stream call refused by a Server's limit.
func ServerStreamRejected() { serverRejected.Inc() }

// ServerBufferedBytes adds delta to the event bytes held by Servers.
func ServerBufferedBytes(delta int64) { serverBuffered.Add(float64(delta)) }

// Consumer holds the series of one consumer, resolved once so that
// recording an event costs only atomic operations.
type Consumer struct {
	name     string
	lag      *Lag // reflex_consumer_lag_seconds, computed by Lags
	age      prometheus.Observer
	latency  prometheus.Observer
	errors   prometheus.Counter
	skipped  prometheus.Counter
	alert    prometheus.Gauge
	activity *ActivityHandle
}

// NewConsumer resolves the series of consumer name. alert, if non-nil,
// replaces the default lag alert gauge. activityTTL < 0 disables the
// activity gauge.
func NewConsumer(name string, alert prometheus.Gauge, activityTTL time.Duration) *Consumer {
	c := &Consumer{
		name:    name,
		age:     ConsumerEventAge.WithLabelValues(name),
		latency: ConsumerLatency.WithLabelValues(name),
		errors:  ConsumerErrors.WithLabelValues(name),
		skipped: ConsumerSkipped.WithLabelValues(name),
		alert:   alert,
		lag:     Lags.State(name),
	}
	if c.alert == nil {
		c.alert = ConsumerLagAlert.WithLabelValues(name)
	}
	c.ResetLag()
	if activityTTL >= 0 {
		c.activity = Activity.Register(name, activityTTL)
	}
	return c
}

// ResetLag (re)creates the lag series.
func (c *Consumer) ResetLag() { c.lag.exported.Store(true) }

// DeleteLag removes the lag series (until ResetLag or the next run).
func (c *Consumer) DeleteLag() { c.lag.exported.Store(false) }

// Start records the start of a Consume call at now for an event with
// the given lag.
func (c *Consumer) Start(now time.Time, lag time.Duration, alert bool) {
	if c.activity != nil {
		c.activity.Tick(now)
	}
	c.lag.startLag.Store(int64(lag))
	c.age.Observe(lag.Seconds())
	if alert {
		c.alert.Set(1)
	} else {
		c.alert.Set(0)
	}
}

// Done records the end of a Consume call that started at start.
func (c *Consumer) Done(start time.Time) {
	c.latency.Observe(time.Since(start).Seconds())
}

// Skipped counts one event skipped by a filter.
func (c *Consumer) Skipped() { c.skipped.Inc() }

// Error counts one unexpected error.
func (c *Consumer) Error() { c.errors.Inc() }

// ActivityHandle records the last activity of one consumer.
type ActivityHandle struct {
	ttl  time.Duration
	last atomic.Int64 // unix nanoseconds
}

// Tick marks the consumer active at now.
func (h *ActivityHandle) Tick(now time.Time) { h.last.Store(now.UnixNano()) }

// ActivityCollector computes reflex_consumer_active at scrape time: 1 if the
// consumer was active within its TTL, else 0.
type ActivityCollector struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu      sync.Mutex // protects handles
	handles map[string]*ActivityHandle
}

func newActivityCollector() *ActivityCollector {
	return &ActivityCollector{
		desc: prometheus.NewDesc("reflex_consumer_active",
			"Whether the consumer consumed an event (or was created) within its activity TTL.",
			[]string{consumerLabel}, nil),
		now:     time.Now,
		handles: make(map[string]*ActivityHandle),
	}
}

// Register starts tracking consumer name (registration counts as activity)
// and returns its handle. Registering a name again replaces its TTL and
// handle.
func (a *ActivityCollector) Register(name string, ttl time.Duration) *ActivityHandle {
	h := &ActivityHandle{ttl: ttl}
	h.Tick(a.now())
	a.mu.Lock()
	a.handles[name] = h
	a.mu.Unlock()
	return h
}

// Describe implements prometheus.Collector.
func (a *ActivityCollector) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

// Collect implements prometheus.Collector.
func (a *ActivityCollector) Collect(ch chan<- prometheus.Metric) {
	now := a.now().UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, h := range a.handles {
		v := 0.0
		if now-h.last.Load() <= int64(h.ttl) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(a.desc, prometheus.GaugeValue, v, name)
	}
}
