package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

const (
	bucketLabel   = "bucket"
	archiverLabel = "archiver"
)

var (
	rblobRead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_rblob_read_total",
		Help: "Number of objects opened for reading by rblob streams.",
	}, []string{bucketLabel})

	rblobListSkip = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_rblob_list_skip_total",
		Help: "Number of listed object keys at or before a stream's position, skipped client-side (stays 0 when a start-after list hook is accepted by the driver).",
	}, []string{bucketLabel})

	rblobReadBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_rblob_read_bytes_total",
		Help: "Number of object bytes read by rblob streams.",
	}, []string{bucketLabel})

	rblobDecodeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_rblob_decode_errors_total",
		Help: "Number of rblob streams ended by an object error: a malformed record or object, an object that could not be opened or read, or one that breaks the bucket's ordering rules.",
	}, []string{bucketLabel})

	rblobArchivedObjects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_rblob_archived_objects_total",
		Help: "Number of objects written by an rblob archiver.",
	}, []string{archiverLabel})

	rblobArchivedEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_rblob_archived_events_total",
		Help: "Number of events written by an rblob archiver.",
	}, []string{archiverLabel})

	rblobArchiveSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_rblob_archive_skipped_events_total",
		Help: "Number of re-consumed events an rblob archiver skipped because an existing object already holds them.",
	}, []string{archiverLabel})
)

func init() {
	prometheus.MustRegister(rblobRead, rblobListSkip, rblobReadBytes, rblobDecodeErrors,
		rblobArchivedObjects, rblobArchivedEvents, rblobArchiveSkipped)
}

// RBlob holds the series of one rblob bucket, resolved once so that
// recording costs only atomic operations.
type RBlob struct {
	Read         prometheus.Counter
	ListSkip     prometheus.Counter
	ReadBytes    prometheus.Counter
	DecodeErrors prometheus.Counter
}

// NewRBlob resolves the series of the bucket labelled label; new series
// start at 0. Buckets with the same label share their series.
func NewRBlob(label string) *RBlob {
	return &RBlob{
		Read:         rblobRead.WithLabelValues(label),
		ListSkip:     rblobListSkip.WithLabelValues(label),
		ReadBytes:    rblobReadBytes.WithLabelValues(label),
		DecodeErrors: rblobDecodeErrors.WithLabelValues(label),
	}
}

// RBlobArchiver holds the series of one rblob archiver.
type RBlobArchiver struct {
	Objects prometheus.Counter
	Events  prometheus.Counter
	Skipped prometheus.Counter
}

// NewRBlobArchiver resolves the series of the archiver named name.
func NewRBlobArchiver(name string) *RBlobArchiver {
	return &RBlobArchiver{
		Objects: rblobArchivedObjects.WithLabelValues(name),
		Events:  rblobArchivedEvents.WithLabelValues(name),
		Skipped: rblobArchiveSkipped.WithLabelValues(name),
	}
}
