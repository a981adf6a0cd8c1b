package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// cursorsTableLabel labels the series of one rsql cursors table.
const cursorsTableLabel = "table"

var (
	cursorsSet = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_cursors_table_set_total",
		Help: "Number of cursors written to an rsql cursors table (one per synchronous SetCursor, one per row of an asynchronous flush).",
	}, []string{cursorsTableLabel})

	cursorsFlushErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_cursors_table_flush_errors_total",
		Help: "Number of failed flushes of an rsql cursors table's buffered cursors (the cursors are kept and retried by the next flush).",
	}, []string{cursorsTableLabel})

	cursorsConcurrentWriters = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_cursors_table_concurrent_writers_total",
		Help: "Number of cursors of an rsql cursors table found changed by another writer (a second process running the same consumer name) when the table flushed them.",
	}, []string{cursorsTableLabel})
)

func init() {
	prometheus.MustRegister(cursorsSet, cursorsFlushErrors, cursorsConcurrentWriters)
}

// CursorsTableSet returns the reflex_cursors_table_set_total series of the
// cursors table named table.
func CursorsTableSet(table string) prometheus.Counter {
	return cursorsSet.WithLabelValues(table)
}

// CursorsTableFlushErrors returns the reflex_cursors_table_flush_errors_total
// series of the cursors table named table.
func CursorsTableFlushErrors(table string) prometheus.Counter {
	return cursorsFlushErrors.WithLabelValues(table)
}

// CursorsTableConcurrentWriters returns the
// reflex_cursors_table_concurrent_writers_total series of the cursors table
// named table.
func CursorsTableConcurrentWriters(table string) prometheus.Counter {
	return cursorsConcurrentWriters.WithLabelValues(table)
}

// DeadLettered increments reflex_consumer_dead_lettered_events_count of the
// consumer named consumer.
func DeadLettered(consumer string) {
	ConsumerDeadLettered.WithLabelValues(consumer).Inc()
}
