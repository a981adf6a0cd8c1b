package metrics

import "github.com/prometheus/client_golang/prometheus"

var (
	trimRows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_trimmed_rows_total",
		Help: "Number of event rows an rsql trimmer removed from an events table (deleted, or overwritten by the trim marker).",
	}, []string{tableLabel})

	trimThrough = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_events_table_trimmed_through",
		Help: "ID of the trim marker of an events table after the last trim pass: events with IDs up to it are gone from the table (0 before the first trim).",
	}, []string{tableLabel})

	trimOldestID = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_events_table_oldest_retained_id",
		Help: "ID of the oldest event an events table retained after the last trim pass; 0 when it holds none.",
	}, []string{tableLabel})

	trimOldestTime = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_events_table_oldest_retained_timestamp_seconds",
		Help: "Timestamp (Unix seconds) of the oldest event an events table retained after the last trim pass; 0 when it holds none.",
	}, []string{tableLabel})

	trimStatement = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reflex_events_table_trim_statement_seconds",
		Help:    "Duration of each SQL statement (scan, delete, marker update, commit) of an rsql trimmer.",
		Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
	}, []string{tableLabel})

	trimPasses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_events_table_trim_passes_total",
		Help: "Number of trim passes over an events table, by result (ok or error).",
	}, []string{tableLabel, "result"})
)

func init() {
	prometheus.MustRegister(trimRows, trimThrough, trimOldestID, trimOldestTime, trimStatement, trimPasses)
}

// Trim holds the series of the trimmer of one rsql events table, resolved
// once so that recording costs only atomic operations.
type Trim struct {
	Rows       prometheus.Counter
	Through    prometheus.Gauge
	OldestID   prometheus.Gauge
	OldestTime prometheus.Gauge
	Statement  prometheus.Observer
	PassesOK   prometheus.Counter
	PassErrors prometheus.Counter
}

// NewTrim resolves the trim series of the events table named table; new
// series start at 0. Trimmers of the same table share their series.
func NewTrim(table string) *Trim {
	return &Trim{
		Rows:       trimRows.WithLabelValues(table),
		Through:    trimThrough.WithLabelValues(table),
		OldestID:   trimOldestID.WithLabelValues(table),
		OldestTime: trimOldestTime.WithLabelValues(table),
		Statement:  trimStatement.WithLabelValues(table),
		PassesOK:   trimPasses.WithLabelValues(table, "ok"),
		PassErrors: trimPasses.WithLabelValues(table, "error"),
	}
}
