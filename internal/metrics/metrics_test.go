package metrics

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a settable clock for the activity collector.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// gather returns, for family in g, each consumer's value (gauge or counter
// value, or histogram sample count).
func gather(t *testing.T, g prometheus.Gatherer, family string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			name := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == consumerLabel {
					name = l.GetValue()
				}
			}
			switch {
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[name] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

var nameSeq atomic.Int64

// uniqueName returns a consumer name for t that is new in this process, so
// that metric series start empty even with -count=N.
func uniqueName(t *testing.T) string {
	return fmt.Sprintf("%s#%d", t.Name(), nameSeq.Add(1))
}

// newTestActivity returns a fresh collector on a fake clock, registered in
// its own registry.
func newTestActivity(t *testing.T) (*ActivityCollector, *fakeClock, *prometheus.Registry) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newActivityCollector()
	a.now = clock.now
	reg := prometheus.NewRegistry()
	reg.MustRegister(a)
	return a, clock, reg
}

func TestActivityRegistrationCountsAsTick(t *testing.T) {
	_, _, reg := newTestActivity(t)
	if got := gather(t, reg, "reflex_consumer_active"); len(got) != 0 {
		t.Errorf("active before any Register = %v, want no series", got)
	}
	a, _, reg := newTestActivity(t)
	a.Register("c", time.Minute)
	if got := gather(t, reg, "reflex_consumer_active"); fmt.Sprint(got) != "map[c:1]" {
		t.Errorf("active after Register = %v, want map[c:1]", got)
	}
}

func TestActivityTTLWindow(t *testing.T) {
	a, clock, reg := newTestActivity(t)
	h := a.Register("c", time.Minute)
	active := func() float64 { return gather(t, reg, "reflex_consumer_active")["c"] }

	clock.add(time.Minute) // at the TTL: still active
	if got := active(); got != 1 {
		t.Errorf("active at the TTL = %v, want 1", got)
	}
	clock.add(time.Nanosecond)
	if got := active(); got != 0 {
		t.Errorf("active after the TTL = %v, want 0", got)
	}
	h.Tick(clock.now())
	if got := active(); got != 1 {
		t.Errorf("active after a tick = %v, want 1", got)
	}
	clock.add(59 * time.Second)
	if got := active(); got != 1 {
		t.Errorf("active 59s after a tick = %v, want 1", got)
	}
	clock.add(2 * time.Second)
	if got := active(); got != 0 {
		t.Errorf("active 61s after a tick = %v, want 0", got)
	}
}

func TestActivityPerConsumerTTL(t *testing.T) {
	a, clock, reg := newTestActivity(t)
	a.Register("short", time.Second)
	a.Register("long", time.Hour)
	clock.add(time.Minute)
	if got := fmt.Sprint(gather(t, reg, "reflex_consumer_active")); got != "map[long:1 short:0]" {
		t.Errorf("active = %s, want map[long:1 short:0]", got)
	}
	// Registering again replaces the TTL and counts as a tick.
	a.Register("short", 2*time.Minute)
	clock.add(time.Minute)
	if got := fmt.Sprint(gather(t, reg, "reflex_consumer_active")); got != "map[long:1 short:1]" {
		t.Errorf("active after re-Register = %s, want map[long:1 short:1]", got)
	}
}

func TestActivityNegativeTTLNotEmitted(t *testing.T) {
	name := uniqueName(t)
	NewConsumer(name, nil, -1)
	if got, ok := gather(t, prometheus.DefaultGatherer, "reflex_consumer_active")[name]; ok {
		t.Errorf("active = %v for a consumer with TTL < 0, want no series", got)
	}
	NewConsumer(name+"/on", nil, time.Hour)
	if got := gather(t, prometheus.DefaultGatherer, "reflex_consumer_active")[name+"/on"]; got != 1 {
		t.Errorf("active = %v for a new consumer with TTL 1h, want 1", got)
	}
}

func TestConsumerStartTicksActivity(t *testing.T) {
	a, clock, reg := newTestActivity(t)
	c := &Consumer{name: "c", age: ConsumerEventAge.WithLabelValues(t.Name()),
		alert: ConsumerLagAlert.WithLabelValues(t.Name()), activity: a.Register("c", time.Minute), lag: Lags.State(t.Name())}
	clock.add(time.Hour)
	c.Start(clock.now(), 0, false)
	if got := gather(t, reg, "reflex_consumer_active")["c"]; got != 1 {
		t.Errorf("active after Start = %v, want 1", got)
	}
}

func TestConsumerSeries(t *testing.T) {
	name := uniqueName(t)
	c := NewConsumer(name, nil, time.Hour)
	value := func(family string) float64 {
		t.Helper()
		v, ok := gather(t, prometheus.DefaultGatherer, family)[name]
		if !ok {
			t.Fatalf("%s has no series for %q", family, name)
		}
		return v
	}

	start := time.Now()
	c.Start(start, 90*time.Second, true)
	c.Skipped()
	c.Skipped()
	c.Error()
	c.Done(start)
	c.Start(start, 3*time.Second, false)
	c.Done(start)

	for _, tc := range []struct {
		family string
		want   float64
	}{
		{"reflex_consumer_lag_seconds", 3},
		{"reflex_consumer_event_age_seconds", 2},
		{"reflex_consumer_lag_alert", 0},
		{"reflex_consumer_latency_seconds", 2},
		{"reflex_consumer_error_count", 1},
		{"reflex_consumer_skipped_events_count", 2},
	} {
		if got := value(tc.family); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.family, got, tc.want)
		}
	}
	c.Start(start, time.Hour, true)
	if got := value("reflex_consumer_lag_alert"); got != 1 {
		t.Errorf("alert = %v, want 1", got)
	}
}

func TestConsumerLagSeriesLifecycle(t *testing.T) {
	name := uniqueName(t)
	c := NewConsumer(name, nil, -1)
	has := func() bool {
		_, ok := gather(t, prometheus.DefaultGatherer, "reflex_consumer_lag_seconds")[name]
		return ok
	}
	if !has() {
		t.Error("no lag series after NewConsumer")
	}
	c.DeleteLag()
	if has() {
		t.Error("lag series after DeleteLag")
	}
	c.DeleteLag() // idempotent
	c.ResetLag()
	if !has() {
		t.Error("no lag series after ResetLag")
	}
	c.Start(time.Now(), 5*time.Second, false)
	if got := gather(t, prometheus.DefaultGatherer, "reflex_consumer_lag_seconds")[name]; got != 5 {
		t.Errorf("lag after ResetLag and Start = %v, want 5", got)
	}
}

func TestConsumerCustomAlertGauge(t *testing.T) {
	name := uniqueName(t)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "custom_alert"})
	c := NewConsumer(name, g, -1)
	c.Start(time.Now(), time.Hour, true)
	reg := prometheus.NewRegistry()
	reg.MustRegister(g)
	if got := gather(t, reg, "custom_alert")[""]; got != 1 {
		t.Errorf("custom alert gauge = %v, want 1", got)
	}
	if _, ok := gather(t, prometheus.DefaultGatherer, "reflex_consumer_lag_alert")[name]; ok {
		t.Error("default alert series created despite a custom gauge")
	}
}

func TestRegisteredAtInit(t *testing.T) {
	for _, c := range []prometheus.Collector{Lags, ConsumerEventAge, ConsumerLagAlert,
		ConsumerLatency, ConsumerErrors, ConsumerDeadLettered, ConsumerSkipped, Activity} {
		err := prometheus.Register(c)
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok || are.ExistingCollector != c {
			t.Errorf("Register(%T) = %v, want AlreadyRegisteredError for the same collector", c, err)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	name := uniqueName(t)
	NewConsumer(name, nil, -1).Start(time.Now(), 0, false)
	NewConsumer(name, nil, -1).Done(time.Now())
	want := map[string]string{
		"reflex_consumer_event_age_seconds": "[0.1 0.5 1 5 10 50 100 500 1000 10000 50000 100000]",
		"reflex_consumer_latency_seconds":   "[0.01 0.1 1 5 10 60 300]",
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		if !ok {
			continue
		}
		delete(want, mf.GetName())
		var bounds []float64
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		if got := fmt.Sprint(bounds); got != w {
			t.Errorf("%s buckets %s, want %s", mf.GetName(), got, w)
		}
	}
	if len(want) != 0 {
		t.Errorf("families not gathered: %v", want)
	}
}
