package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

const tableLabel = "table"

var (
	eventsPolls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_poll_total",
		Help: "Number of loads of an rsql events table by streams and by its head watcher.",
	}, []string{tableLabel})

	eventsBlockingGap = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_events_table_blocking_gap",
		Help: "1 while the last load of an rsql events table stopped at a gap in event IDs, else 0.",
	}, []string{tableLabel})

	eventsGapDetected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_gap_detected_total",
		Help: "Number of loads that stopped at a gap in event IDs.",
	}, []string{tableLabel})

	eventsGapFilled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_gap_filled_total",
		Help: "Number of noop events inserted by the gap filler.",
	}, []string{tableLabel})

	eventsGapListening = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_events_table_gap_listening",
		Help: "1 while gap listeners (such as the gap filler) are registered for the table, else 0.",
	}, []string{tableLabel})

	eventsOpenGaps = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_events_table_open_gaps",
		Help: "Number of gaps in event IDs seen by loads and not yet closed (committed or filled).",
	}, []string{tableLabel})

	eventsOldestGapAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_events_table_oldest_gap_age_seconds",
		Help: "Time since the oldest open gap in event IDs was first seen, updated on every load; 0 without open gaps.",
	}, []string{tableLabel})

	eventsCacheHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_rcache_hits_total",
		Help: "Number of loads served by the read-through cache.",
	}, []string{tableLabel})

	eventsCacheMisses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_rcache_misses_total",
		Help: "Number of loads the read-through cache passed to the database.",
	}, []string{tableLabel})

	eventsDeserialization = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reflex_events_table_deserialization_duration_seconds",
		Help:    "Mean time to deserialise one row, observed once per loaded batch.",
		Buckets: []float64{1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10},
	}, []string{tableLabel})

	eventsLoading = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reflex_events_table_loading_duration_seconds",
		Help:    "Duration of one SQL load of events, including reading the rows.",
		Buckets: []float64{0.001, 0.01, 0.1, 1, 5, 10, 60},
	}, []string{tableLabel})

	eventsDeserialized = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_events_deserialized_total",
		Help: "Number of event rows read from the database.",
	}, []string{tableLabel})

	eventsWatchErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_watch_errors_total",
		Help: "Number of failed polls of the shared head watcher (streams fall back to their own backoff).",
	}, []string{tableLabel})
)

func init() {
	prometheus.MustRegister(eventsPolls, eventsBlockingGap, eventsGapDetected,
		eventsGapFilled, eventsGapListening, eventsOpenGaps, eventsOldestGapAge,
		eventsCacheHits, eventsCacheMisses, eventsDeserialization, eventsLoading,
		eventsDeserialized, eventsWatchErrors)
}

// EventsTable holds the series of one rsql events table, resolved once so
// that recording costs only atomic operations.
type EventsTable struct {
	Polls           prometheus.Counter
	BlockingGap     prometheus.Gauge
	GapDetected     prometheus.Counter
	GapFilled       prometheus.Counter
	GapListening    prometheus.Gauge
	OpenGaps        prometheus.Gauge
	OldestGapAge    prometheus.Gauge
	CacheHits       prometheus.Counter
	CacheMisses     prometheus.Counter
	Deserialization prometheus.Observer
	Loading         prometheus.Observer
	Deserialized    prometheus.Counter
	WatchErrors     prometheus.Counter
}

// NewEventsTable resolves the series of the events table named table; new
// series start at 0. Tables with the same name share their series.
func NewEventsTable(table string) *EventsTable {
	m := &EventsTable{
		Polls:           eventsPolls.WithLabelValues(table),
		BlockingGap:     eventsBlockingGap.WithLabelValues(table),
		GapDetected:     eventsGapDetected.WithLabelValues(table),
		GapFilled:       eventsGapFilled.WithLabelValues(table),
		GapListening:    eventsGapListening.WithLabelValues(table),
		OpenGaps:        eventsOpenGaps.WithLabelValues(table),
		OldestGapAge:    eventsOldestGapAge.WithLabelValues(table),
		CacheHits:       eventsCacheHits.WithLabelValues(table),
		CacheMisses:     eventsCacheMisses.WithLabelValues(table),
		Deserialization: eventsDeserialization.WithLabelValues(table),
		Loading:         eventsLoading.WithLabelValues(table),
		Deserialized:    eventsDeserialized.WithLabelValues(table),
		WatchErrors:     eventsWatchErrors.WithLabelValues(table),
	}
	return m
}
