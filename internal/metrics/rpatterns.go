package metrics

import (
	"context"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

var batchBufferLength = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "reflex_rpatterns_batch_consumer_buffer_length",
	Help: "Number of events buffered by an rpatterns batch consumer and not yet processed.",
}, []string{consumerLabel})

var keyedInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "reflex_rpatterns_keyed_consumer_in_flight",
	Help: "Number of events accepted by an rpatterns keyed consumer and not yet completed.",
}, []string{consumerLabel})

func init() {
	prometheus.MustRegister(batchBufferLength, keyedInFlight)
}

// BatchBufferLength returns the buffer-length gauge of the batch consumer
// named name.
func BatchBufferLength(name string) prometheus.Gauge {
	return batchBufferLength.WithLabelValues(name)
}

// KeyedInFlight returns the in-flight gauge of the keyed consumer named
// name.
func KeyedInFlight(name string) prometheus.Gauge {
	return keyedInFlight.WithLabelValues(name)
}

// RunProgress records whether a run of reflex.Run consumed an event: rpatterns
// attaches one to the context of each run it starts (WithRunProgress), and
// reflex.Run marks it (Consumed) after each event whose cursor it set, so
// that RunForever can tell a run that made progress from one that failed at
// once. The zero value is ready to use; it is safe for concurrent use.
type RunProgress struct {
	consumed atomic.Bool
}

type runProgressKey struct{}

// WithRunProgress returns a copy of ctx that carries p (a nil p hides any p
// of ctx, for a nested run).
func WithRunProgress(ctx context.Context, p *RunProgress) context.Context {
	return context.WithValue(ctx, runProgressKey{}, p)
}

// RunProgressFrom returns the RunProgress ctx carries, or nil. Look it up
// once per run, not once per event.
func RunProgressFrom(ctx context.Context) *RunProgress {
	p, _ := ctx.Value(runProgressKey{}).(*RunProgress)
	return p
}

// Consumed records that the run consumed an event. It is a no-op on a nil p.
func (p *RunProgress) Consumed() {
	if p != nil && !p.consumed.Load() {
		p.consumed.Store(true)
	}
}

// HasConsumed reports whether Consumed was called.
func (p *RunProgress) HasConsumed() bool {
	return p != nil && p.consumed.Load()
}
