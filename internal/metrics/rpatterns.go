package metrics

import (
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
