package reflex_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/tracing"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// Metric families of internal/metrics, as scraped.
const (
	famLag      = "reflex_consumer_lag_seconds"
	famAge      = "reflex_consumer_event_age_seconds"
	famAlert    = "reflex_consumer_lag_alert"
	famActive   = "reflex_consumer_active"
	famLatency  = "reflex_consumer_latency_seconds"
	famErrors   = "reflex_consumer_error_count"
	famSkipped  = "reflex_consumer_skipped_events_count"
	labelName   = "consumer_name"
	noSuchValue = -1
)

// series returns the values of family's series for consumer (gauge or
// counter value, or histogram sample count) from g.
func series(t *testing.T, g prometheus.Gatherer, family, consumer string) []float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var out []float64
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labelName && l.GetValue() == consumer {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Gauge != nil:
				out = append(out, m.GetGauge().GetValue())
			case m.Counter != nil:
				out = append(out, m.GetCounter().GetValue())
			case m.Histogram != nil:
				out = append(out, float64(m.GetHistogram().GetSampleCount()))
			}
		}
	}
	return out
}

// metric returns the value of consumer's single series of family in the
// default registry, or noSuchValue if it has none.
func metric(t *testing.T, family, consumer string) float64 {
	t.Helper()
	vs := series(t, prometheus.DefaultGatherer, family, consumer)
	switch len(vs) {
	case 0:
		return noSuchValue
	case 1:
		return vs[0]
	}
	t.Fatalf("%s{%s=%q} has %d series, want at most 1", family, labelName, consumer, len(vs))
	return 0
}

var nameSeq atomic.Int64

// uniqueName returns a consumer name for t that is new in this process, so
// that metric series start empty even with -count=N.
func uniqueName(t *testing.T) string {
	return fmt.Sprintf("%s#%d", t.Name(), nameSeq.Add(1))
}

// recorder is a ConsumerFunc that records the IDs it sees and returns
// the error errFor gives (nil if errFor is nil).
type recorder struct {
	mu     sync.Mutex
	ids    []string
	errFor func(e *reflex.Event) error
}

func (r *recorder) consume(ctx context.Context, e *reflex.Event) error {
	r.mu.Lock()
	r.ids = append(r.ids, e.ID)
	r.mu.Unlock()
	if r.errFor != nil {
		return r.errFor(e)
	}
	return nil
}

func (r *recorder) seen() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.ids)
}

// typed returns events "1".."n" whose types are types[i], timestamped now.
func typed(types ...int) []*reflex.Event {
	out := make([]*reflex.Event, len(types))
	for i, ty := range types {
		out[i] = &reflex.Event{ID: fmt.Sprint(i + 1), Type: testType(ty), Timestamp: time.Now()}
	}
	return out
}

func consumeAll(t *testing.T, c reflex.Consumer, events []*reflex.Event) []error {
	t.Helper()
	errs := make([]error, len(events))
	for i, e := range events {
		errs[i] = c.Consume(t.Context(), e)
	}
	return errs
}

func TestConsumerWithoutRun(t *testing.T) {
	name := uniqueName(t)
	var r recorder
	c := reflex.NewConsumer(name, r.consume)
	if c.Name() != name {
		t.Errorf("Name() = %q, want %q", c.Name(), name)
	}
	if got := metric(t, famLag, name); got != 0 {
		t.Errorf("lag gauge after NewConsumer = %v, want a series at 0", got)
	}
	if err := c.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now()}); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if r.seen() != "[1]" {
		t.Errorf("fn saw %s, want [1]", r.seen())
	}
}

func TestConsumerWithoutFiltersPassesAll(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []reflex.ConsumerOption
	}{
		{"no options", nil},
		{"WithFilterIncludeTypes()", []reflex.ConsumerOption{reflex.WithFilterIncludeTypes()}},
		{"WithEventFilter(nil)", []reflex.ConsumerOption{reflex.WithEventFilter(nil)}},
		{"both empty", []reflex.ConsumerOption{reflex.WithFilterIncludeTypes(), reflex.WithEventFilter(nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			name := uniqueName(t)
			c := reflex.NewConsumer(name, r.consume, tc.opts...)
			for _, err := range consumeAll(t, c, typed(1, 2, 3, 0)) {
				if err != nil {
					t.Errorf("Consume: %v", err)
				}
			}
			if r.seen() != "[1 2 3 4]" {
				t.Errorf("fn saw %s, want [1 2 3 4]", r.seen())
			}
			if got := metric(t, famSkipped, name); got != 0 {
				t.Errorf("skipped = %v, want 0", got)
			}
		})
	}
}

func TestConsumerFilterOrder(t *testing.T) {
	name := uniqueName(t)
	var (
		r        recorder
		filtered []string
	)
	flt := func(e *reflex.Event) (bool, error) {
		filtered = append(filtered, e.ID)
		return e.Type.ReflexType() != 2, nil // drop type 2
	}
	c := reflex.NewConsumer(name, r.consume,
		reflex.WithEventFilter(flt),
		reflex.WithFilterIncludeTypes(testType(1), otherType(2)))

	// Types: 1 passes both, 2 passes include-types but not the filter, 3
	// fails include-types (the filter never sees it).
	for i, err := range consumeAll(t, c, typed(1, 2, 3, 1, 3)) {
		if err != nil {
			t.Errorf("Consume(%d): %v, want nil for passed and skipped events", i+1, err)
		}
	}
	if got := fmt.Sprint(filtered); got != "[1 2 4]" {
		t.Errorf("event filter saw %s, want [1 2 4] (include-types first)", got)
	}
	if r.seen() != "[1 4]" {
		t.Errorf("fn saw %s, want [1 4]", r.seen())
	}
	if got := metric(t, famSkipped, name); got != 3 {
		t.Errorf("skipped = %v, want 3 (one per skipped event)", got)
	}
	if got := metric(t, famLatency, name); got != 5 {
		t.Errorf("latency observations = %v, want 5 (skipped events too)", got)
	}
}

func TestConsumerFilterError(t *testing.T) {
	name := uniqueName(t)
	fltErr := errors.New("cannot decide")
	var (
		r         recorder
		recovered []error
	)
	c := reflex.NewConsumer(name, r.consume,
		reflex.WithEventFilter(func(*reflex.Event) (bool, error) { return true, fltErr }),
		reflex.WithRecoverFunction(func(ctx context.Context, e *reflex.Event, c reflex.Consumer, err error) error {
			recovered = append(recovered, err)
			return err
		}))
	err := c.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now()})
	if !reflex.IsFilterErr(err) {
		t.Errorf("Consume = %v, want IsFilterErr", err)
	}
	if !errors.Is(err, fltErr) {
		t.Errorf("Consume = %v, want it to wrap the filter's error", err)
	}
	if r.seen() != "[]" {
		t.Errorf("fn saw %s after a filter error, want nothing", r.seen())
	}
	if len(recovered) != 1 || !reflex.IsFilterErr(recovered[0]) {
		t.Errorf("recovery function got %v, want the filter error", recovered)
	}
	if got := metric(t, famSkipped, name); got != 0 {
		t.Errorf("skipped = %v, want 0 (an error is not a skip)", got)
	}
	if got := metric(t, famErrors, name); got != 1 {
		t.Errorf("errors = %v, want 1", got)
	}
}

func TestConsumerFnErrorIsNotFilterErr(t *testing.T) {
	c := reflex.NewConsumer(t.Name(), func(context.Context, *reflex.Event) error { return errors.New("boom") })
	if err := c.Consume(t.Context(), &reflex.Event{ID: "1"}); err == nil || reflex.IsFilterErr(err) {
		t.Errorf("Consume = %v, want a non-filter error", err)
	}
}

func TestConsumerRecovery(t *testing.T) {
	errFn := errors.New("fn failed")
	errNew := errors.New("replaced")
	canceled := fmt.Errorf("db: %w", context.Canceled)
	tests := []struct {
		name       string
		fnErr      error
		recover    func(err error) error // nil: no WithRecoverFunction
		want       error
		wantCalled bool
		wantCount  float64
	}{
		{name: "default passes through", fnErr: errFn, want: errFn, wantCount: 1},
		{name: "swallow", fnErr: errFn, recover: func(error) error { return nil }, want: nil, wantCalled: true, wantCount: 0},
		{name: "pass", fnErr: errFn, recover: func(err error) error { return err }, want: errFn, wantCalled: true, wantCount: 1},
		{name: "replace", fnErr: errFn, recover: func(error) error { return errNew }, want: errNew, wantCalled: true, wantCount: 1},
		{name: "replace with expected", fnErr: errFn, recover: func(error) error { return context.Canceled }, want: context.Canceled, wantCalled: true, wantCount: 0},
		{name: "expected canceled skips recovery", fnErr: canceled, recover: func(error) error { return errNew }, want: canceled, wantCount: 0},
		{name: "expected deadline skips recovery", fnErr: context.DeadlineExceeded, recover: func(error) error { return nil }, want: context.DeadlineExceeded, wantCount: 0},
		{name: "expected stopped skips recovery", fnErr: reflex.ErrStopped, recover: func(error) error { return nil }, want: reflex.ErrStopped, wantCount: 0},
		{name: "no error", fnErr: nil, recover: func(error) error { return errNew }, want: nil, wantCount: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := uniqueName(t)
			event := &reflex.Event{ID: "9", Timestamp: time.Now()}
			var opts []reflex.ConsumerOption
			called := false
			type ctxKey struct{}
			ctx := context.WithValue(t.Context(), ctxKey{}, "v")
			if tc.recover != nil {
				opts = append(opts, reflex.WithRecoverFunction(func(rctx context.Context, e *reflex.Event, c reflex.Consumer, err error) error {
					called = true
					if e != event || c.Name() != name || err != tc.fnErr || rctx.Value(ctxKey{}) != "v" {
						t.Errorf("recovery got (event %p, consumer %q, %v), want (%p, %q, %v) and the Consume ctx",
							e, c.Name(), err, event, name, tc.fnErr)
					}
					return tc.recover(err)
				}))
			}
			c := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { return tc.fnErr }, opts...)
			if err := c.Consume(ctx, event); err != tc.want {
				t.Errorf("Consume = %v, want %v (unchanged)", err, tc.want)
			}
			if called != tc.wantCalled {
				t.Errorf("recovery called = %v, want %v", called, tc.wantCalled)
			}
			if got := metric(t, famErrors, name); got != tc.wantCount {
				t.Errorf("error count = %v, want %v", got, tc.wantCount)
			}
		})
	}
}

func TestConsumerResetAndStopLagSeries(t *testing.T) {
	name := uniqueName(t)
	c := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { return nil })
	if n := len(series(t, prometheus.DefaultGatherer, famLag, name)); n != 1 {
		t.Fatalf("lag series after NewConsumer: %d, want 1", n)
	}
	if err := c.(reflex.Stopper).Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if n := len(series(t, prometheus.DefaultGatherer, famLag, name)); n != 0 {
		t.Errorf("lag series after Stop: %d, want 0", n)
	}
	if err := c.(interface{ Reset() error }).Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if n := len(series(t, prometheus.DefaultGatherer, famLag, name)); n != 1 {
		t.Errorf("lag series after Reset: %d, want 1", n)
	}
	// Consume after Stop and Reset records on the live series.
	if err := c.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, famLag, name); got < 3600 {
		t.Errorf("lag = %v, want >= 3600", got)
	}
}

func TestReuseConsumer(t *testing.T) {
	name := uniqueName(t)
	log := reflextest.NewLog()
	store := reflextest.NewCursorStore()
	var during []int
	c := reflex.NewConsumer(name, func(ctx context.Context, e *reflex.Event) error {
		during = append(during, len(series(t, prometheus.DefaultGatherer, famLag, name)))
		return nil
	})
	spec := reflex.NewSpec(log.Stream, store, c, reflex.WithStreamToHead())
	for run := range 3 {
		log.Append(reflex.Event{ForeignID: "f"}, reflex.Event{ForeignID: "g"})
		if err := reflex.Run(t.Context(), spec); !reflex.IsHeadReachedErr(err) {
			t.Fatalf("Run %d = %v, want ErrHeadReached", run, err)
		}
		if n := len(series(t, prometheus.DefaultGatherer, famLag, name)); n != 1 {
			t.Errorf("lag series after Run %d: %d, want 1 (Run does not Stop)", run, n)
		}
	}
	if fmt.Sprint(during) != "[1 1 1 1 1 1]" {
		t.Errorf("lag series during Run: %v, want 1 at each of 6 events", during)
	}
	if got := store.Cursor(name); got != "6" {
		t.Errorf("cursor = %q, want 6", got)
	}
	if err := spec.Stop(); err != nil {
		t.Fatalf("Spec.Stop: %v", err)
	}
	if n := len(series(t, prometheus.DefaultGatherer, famLag, name)); n != 0 {
		t.Errorf("lag series after Spec.Stop: %d, want 0", n)
	}
}

func TestConsumerActivityTTLFuncEvaluatedOnce(t *testing.T) {
	var calls atomic.Int32
	ttl := func() time.Duration {
		calls.Add(1)
		return -1 // not reported
	}
	name := uniqueName(t)
	opt := reflex.WithConsumerActivityTTLFunc(ttl)
	c := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { return nil }, opt)
	if n := calls.Load(); n != 1 {
		t.Errorf("TTL func called %d times by NewConsumer, want 1", n)
	}
	consumeAll(t, c, typed(1, 1, 1))
	if n := calls.Load(); n != 1 {
		t.Errorf("TTL func called %d times after Consume, want 1 (evaluated at construction)", n)
	}
	if got := metric(t, famActive, name); got != noSuchValue {
		t.Errorf("active = %v with a negative TTL, want no series", got)
	}

	name2 := name + "/positive"
	reflex.NewConsumer(name2, nil, reflex.WithConsumerActivityTTLFunc(func() time.Duration { return time.Hour }))
	if got := metric(t, famActive, name2); got != 1 {
		t.Errorf("active = %v just after NewConsumer with TTL 1h, want 1 (creation counts)", got)
	}
}

func TestConsumerActivity(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []reflex.ConsumerOption
		want float64
	}{
		{"default", nil, 1},
		{"ttl", []reflex.ConsumerOption{reflex.WithConsumerActivityTTL(time.Hour)}, 1},
		{"without", []reflex.ConsumerOption{reflex.WithoutConsumerActivityTTL()}, noSuchValue},
		{"negative ttl", []reflex.ConsumerOption{reflex.WithConsumerActivityTTL(-time.Second)}, noSuchValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := uniqueName(t)
			c := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { return nil }, tc.opts...)
			consumeAll(t, c, typed(1))
			if got := metric(t, famActive, name); got != tc.want {
				t.Errorf("active = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConsumerLagAndAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := uniqueName(t)
		c := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { return nil })
		for i, age := range []time.Duration{90 * time.Second, 2 * time.Second} {
			if err := c.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now().Add(-age)}); err != nil {
				t.Fatal(err)
			}
			if got := metric(t, famLag, name); got != age.Seconds() {
				t.Errorf("lag = %v, want %v", got, age.Seconds())
			}
			if got := metric(t, famAge, name); got != float64(i+1) {
				t.Errorf("event age observations = %v, want %d", got, i+1)
			}
		}
	})
}

func TestConsumerLagAlert(t *testing.T) {
	tests := []struct {
		name string
		opts []reflex.ConsumerOption
		age  time.Duration
		want float64
	}{
		{"default below", nil, 29 * time.Minute, 0},
		{"default above", nil, 31 * time.Minute, 1},
		{"threshold below", []reflex.ConsumerOption{reflex.WithConsumerLagAlert(time.Minute)}, 30 * time.Second, 0},
		{"threshold above", []reflex.ConsumerOption{reflex.WithConsumerLagAlert(time.Minute)}, 2 * time.Minute, 1},
		{"zero threshold", []reflex.ConsumerOption{reflex.WithConsumerLagAlert(0)}, 100 * time.Hour, 0},
		{"without lag", []reflex.ConsumerOption{reflex.WithoutConsumerLag()}, 100 * time.Hour, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				name := uniqueName(t)
				c := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { return nil }, tc.opts...)
				if err := c.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now().Add(-tc.age)}); err != nil {
					t.Fatal(err)
				}
				if got := metric(t, famAlert, name); got != tc.want {
					t.Errorf("alert = %v, want %v", got, tc.want)
				}
				// A fresh event clears the alert.
				if err := c.Consume(t.Context(), &reflex.Event{ID: "2", Timestamp: time.Now()}); err != nil {
					t.Fatal(err)
				}
				if got := metric(t, famAlert, name); got != 0 {
					t.Errorf("alert after a fresh event = %v, want 0", got)
				}
			})
		})
	}
}

func TestConsumerLagAlertGauge(t *testing.T) {
	name := uniqueName(t)
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "custom_lag_alert",
		ConstLabels: prometheus.Labels{"team": "payments", labelName: name},
	})
	reg.MustRegister(g)
	c := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { return nil },
		reflex.WithConsumerLagAlertGauge(g), reflex.WithConsumerLagAlert(time.Minute))

	if err := c.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := series(t, reg, "custom_lag_alert", name); fmt.Sprint(got) != "[1]" {
		t.Errorf("custom gauge = %v, want [1]", got)
	}
	if got := metric(t, famAlert, name); got != noSuchValue {
		t.Errorf("default alert series = %v, want none with a custom gauge", got)
	}
	if err := c.Consume(t.Context(), &reflex.Event{ID: "2", Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := series(t, reg, "custom_lag_alert", name); fmt.Sprint(got) != "[0]" {
		t.Errorf("custom gauge after a fresh event = %v, want [0]", got)
	}
}

func TestConsumerTraceParent(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
	})
	data, err := tracing.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	var got []trace.SpanContext
	c := reflex.NewConsumer(t.Name(), func(ctx context.Context, e *reflex.Event) error {
		got = append(got, trace.SpanContextFromContext(ctx))
		return nil
	})
	for _, tr := range [][]byte{data, nil, []byte("garbage")} {
		if err := c.Consume(t.Context(), &reflex.Event{ID: "1", Timestamp: time.Now(), Trace: tr}); err != nil {
			t.Fatalf("Consume with trace %q: %v", tr, err)
		}
	}
	if len(got) != 3 {
		t.Fatalf("fn called %d times, want 3", len(got))
	}
	if got[0].TraceID() != sc.TraceID() || got[0].SpanID() != sc.SpanID() || !got[0].IsRemote() {
		t.Errorf("fn ctx span = %v/%v remote %v, want %v/%v remote", got[0].TraceID(), got[0].SpanID(), got[0].IsRemote(), sc.TraceID(), sc.SpanID())
	}
	for i, name := range []string{"no trace", "garbage trace"} {
		if got[i+1].IsValid() {
			t.Errorf("%s: fn ctx has span %v, want none", name, got[i+1])
		}
	}
}

func TestConsumerConcurrent(t *testing.T) {
	name := uniqueName(t)
	var n atomic.Int64
	c := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { n.Add(1); return nil },
		reflex.WithFilterIncludeTypes(testType(1)))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { consumeAll(t, c, typed(1, 2, 1, 2)) })
	}
	wg.Wait()
	if n.Load() != 16 {
		t.Errorf("fn called %d times, want 16", n.Load())
	}
	if got := metric(t, famSkipped, name); got != 16 {
		t.Errorf("skipped = %v, want 16", got)
	}
}

func TestNewConsumerBadSetup(t *testing.T) {
	for name, build := range map[string]func(){
		"nil option": func() { reflex.NewConsumer("c", func(context.Context, *reflex.Event) error { return nil }, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "reflex: ") {
					t.Errorf("recover() = %v, want a reflex: panic", r)
				}
			}()
			build()
		})
	}
}

func TestConsumeNilEvent(t *testing.T) {
	called := false
	c := reflex.NewConsumer("nil_event", func(context.Context, *reflex.Event) error {
		called = true
		return nil
	})
	err := c.Consume(t.Context(), nil)
	if err == nil || !strings.Contains(err.Error(), "nil event") || strings.Contains(err.Error(), "stream") {
		t.Errorf("Consume(nil) = %v, want an error about the nil event (not about a stream)", err)
	}
	if called {
		t.Error("Consume(nil) called the consumer function")
	}
}

func TestConsumeNilFunc(t *testing.T) {
	c := reflex.NewConsumer("nil_func", nil)
	if err := c.Consume(t.Context(), &reflex.Event{ID: "1", Type: testType(1), Timestamp: time.Now()}); err == nil {
		t.Error("Consume with a nil ConsumerFunc returned nil, want an error")
	}
}
