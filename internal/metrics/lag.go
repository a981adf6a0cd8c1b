package metrics

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Lags computes the lag families at scrape time, per consumer name:
//
//   - reflex_consumer_lag_seconds: while an event is being consumed, or
//     failed and was not consumed since (a consumer stuck on it, retried
//     by its runner or not running at all), now minus that event's
//     timestamp; while the consumer's stream reports a head past its
//     cursor (behind, but between events: a stream held at a gap, a
//     consumer whose runs end before they reach the event), now minus
//     the timestamp of the last event it consumed; otherwise the lag
//     measured when the last event started (as a gauge set by each
//     event would be). It therefore keeps growing while a consumer is
//     stuck instead of freezing at its last value.
//   - reflex_consumer_lag_events: the head that the stream of the
//     consumer's current (or last) run reports minus the consumer's
//     cursor, for streams that know their head (reflex.HeadReporter).
//
// The series of a name exist from its first NewConsumer or run until
// DeleteLag, and again after ResetLag or the next run.
var Lags = newLagCollector()

func init() {
	prometheus.MustRegister(Lags)
}

// LagCollector is the collector of the lag families (see Lags).
type LagCollector struct {
	secs, events *prometheus.Desc
	now          func() time.Time

	mu     sync.Mutex // protects states
	states map[string]*Lag
}

func newLagCollector() *LagCollector {
	return &LagCollector{
		secs: prometheus.NewDesc("reflex_consumer_lag_seconds",
			"Lag of a consumer: now minus the timestamp of the event it is consuming or is stuck on; while behind its stream's head, minus that of the last event it consumed; else the lag when it last started an event.",
			[]string{consumerLabel}, nil),
		events: prometheus.NewDesc("reflex_consumer_lag_events",
			"Head of a consumer's stream (as the stream knows it) minus the consumer's cursor, for streams that report their head.",
			[]string{consumerLabel}, nil),
		now:    time.Now,
		states: make(map[string]*Lag),
	}
}

// Lag is the lag state of one consumer name, shared by its consumers
// (NewConsumer) and its runs (StartRun).
type Lag struct {
	exported atomic.Bool
	// startLag is the lag, in nanoseconds, measured when the last event
	// started (Consumer.Start).
	startLag atomic.Int64
	// run is the current or last run of the name.
	run atomic.Pointer[RunLag]
}

// State returns the lag state of the consumer named name, creating it
// (not exported) if needed.
func (c *LagCollector) State(name string) *Lag {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.states[name]
	if l == nil {
		l = &Lag{}
		c.states[name] = l
	}
	return l
}

// RunLag records the progress of one run of a consumer (reflex.Run).
// Started and Consumed are called by the run's goroutine for each event;
// the collector reads the fields at scrape time. Each field is read on
// its own, so a scrape during an update may mix two events' values.
type RunLag struct {
	head    func() (int64, bool) // nil without a head reporter, or ended
	initial int64                // the cursor the run started from

	pending         atomic.Bool  // an event started and was not consumed
	pendID, pendTs  atomic.Int64 // the started event (timestamp in Unix ns)
	doneID, doneTs  atomic.Int64 // the last consumed event
	consumed        atomic.Bool  // doneID and doneTs are set
	endHead         atomic.Int64 // the head when the run ended
	ended, endKnown atomic.Bool
}

// StartRun records the start of a run of the consumer named name from
// cursor, with head reporting its stream's head (nil if the stream does
// not know it), and exports the name's lag series. The run replaces the
// name's previous one; if it starts from the cursor where that one
// stopped, it keeps the previous run's last consumed event and the event
// it was stuck on.
func (c *LagCollector) StartRun(name string, cursor int64, head func() (int64, bool)) *RunLag {
	l := c.State(name)
	r := &RunLag{head: head, initial: cursor}
	if prev := l.run.Load(); prev != nil && prev.cursor() == cursor {
		// The run goes on where the last one stopped: keep what it knew
		// of the last consumed event and of the event it was stuck on
		// until this run gets past them.
		if prev.consumed.Load() {
			r.doneID.Store(prev.doneID.Load())
			r.doneTs.Store(prev.doneTs.Load())
			r.consumed.Store(true)
		}
		if prev.pending.Load() {
			r.pendID.Store(prev.pendID.Load())
			r.pendTs.Store(prev.pendTs.Load())
			r.pending.Store(true)
		}
	}
	l.run.Store(r)
	l.exported.Store(true)
	return r
}

// Started records that the event id (0 if its ID is not an integer)
// with timestamp ts (Unix nanoseconds) was handed to the consumer.
func (r *RunLag) Started(id, ts int64) {
	r.pendTs.Store(ts)
	r.pendID.Store(id)
	r.pending.Store(true)
}

// Consumed records that the last started event was consumed and the
// cursor moved to it.
func (r *RunLag) Consumed(id, ts int64) {
	r.doneTs.Store(ts)
	r.doneID.Store(id)
	r.consumed.Store(true)
	r.pending.Store(false)
}

// End records the end of the run: the head its stream knows now is kept
// in place of the stream (call it before closing the stream).
func (r *RunLag) End() {
	if r.head != nil {
		if h, ok := r.head(); ok {
			r.endHead.Store(h)
			r.endKnown.Store(true)
		}
	}
	r.ended.Store(true)
}

// headID returns the head of the run's stream, or the one kept at End.
func (r *RunLag) headID() (int64, bool) {
	if r.ended.Load() {
		return r.endHead.Load(), r.endKnown.Load()
	}
	if r.head == nil {
		return 0, false
	}
	return r.head()
}

// cursor returns the run's cursor: its last consumed event's ID, or the
// cursor it started from.
func (r *RunLag) cursor() int64 {
	if r.consumed.Load() {
		return r.doneID.Load()
	}
	return r.initial
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.secs
	ch <- c.events
}

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now().UnixNano()
	c.mu.Lock()
	names := make([]string, 0, len(c.states))
	for n, l := range c.states {
		if l.exported.Load() {
			names = append(names, n)
		}
	}
	states := make([]*Lag, len(names))
	sort.Strings(names)
	for i, n := range names {
		states[i] = c.states[n]
	}
	c.mu.Unlock()
	for i, l := range states {
		secs, events, ok := l.values(now)
		ch <- prometheus.MustNewConstMetric(c.secs, prometheus.GaugeValue, secs, names[i])
		if ok {
			ch <- prometheus.MustNewConstMetric(c.events, prometheus.GaugeValue, events, names[i])
		}
	}
}

// values returns the lag in seconds at now (Unix ns), and the lag in
// events if the head is known.
func (l *Lag) values(now int64) (secs, events float64, ok bool) {
	secs = time.Duration(l.startLag.Load()).Seconds()
	r := l.run.Load()
	if r == nil {
		return secs, 0, false
	}
	head, known := r.headID()
	cur := r.cursor()
	switch {
	case r.pending.Load():
		secs = sinceSeconds(now, r.pendTs.Load())
	case known && head > cur && r.consumed.Load():
		secs = sinceSeconds(now, r.doneTs.Load())
	}
	if !known {
		return secs, 0, false
	}
	return secs, float64(max(head-cur, 0)), true
}

// sinceSeconds is now minus ts (Unix ns) in seconds, never negative.
func sinceSeconds(now, ts int64) float64 {
	return time.Duration(max(now-ts, 0)).Seconds()
}
