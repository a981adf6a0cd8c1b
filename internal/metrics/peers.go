package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The label values of peers (remote consumers of reflex gRPC servers):
// the consumer name a client sends, except for these two.
const (
	// UnnamedPeer labels the streams of clients that send no consumer
	// name.
	UnnamedPeer = "unknown"
	// OverflowPeer labels the streams of clients whose consumer name came
	// after MaxPeerLabels distinct names were in use.
	OverflowPeer = "other"
	// MaxPeerLabels bounds the distinct consumer names the peer metrics
	// of this process use as label values; further names count under
	// OverflowPeer, so a server's series stay bounded whatever clients
	// send.
	MaxPeerLabels = 100
)

const peerLabel = "peer"

var (
	peerStreams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_server_peer_streams",
		Help: "Streams being served by reflex gRPC servers, by the consumer name the client sent.",
	}, []string{consumerLabel})

	peerEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_server_peer_events_sent_total",
		Help: "Events sent by reflex gRPC servers, by the consumer name the client sent.",
	}, []string{consumerLabel})

	peerBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_server_peer_sent_bytes_total",
		Help: "Encoded event bytes sent by reflex gRPC servers, by the consumer name the client sent.",
	}, []string{consumerLabel})

	peerSendErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_server_peer_send_errors_total",
		Help: "Failed sends of reflex gRPC servers (the stream ended), by the consumer name the client sent.",
	}, []string{consumerLabel})

	peerLag = &lagCollector{
		desc: prometheus.NewDesc("reflex_server_peer_lag_events",
			"Events between the position of a remote consumer's stream and its source's head, as its reflex gRPC server sees it: the largest over the open streams of that consumer name whose source reports a head.",
			[]string{consumerLabel}, nil),
		open: make(map[*PeerStream]struct{}),
	}

	breakerState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_client_breaker_state",
		Help: "State of the circuit breaker of a reflex gRPC stream client: 0 closed, 1 open, 2 half-open.",
	}, []string{peerLabel})

	reconnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_client_reconnect_attempts_total",
		Help: "Attempts of reflex gRPC stream clients to reopen a stream after a failure.",
	}, []string{peerLabel})

	peerNames = &labeler{max: MaxPeerLabels, names: make(map[string]struct{})}
)

func init() {
	prometheus.MustRegister(peerStreams, peerEvents, peerBytes, peerSendErrors, peerLag, breakerState, reconnects)
}

// labeler maps consumer names to bounded label values.
type labeler struct {
	max int

	mu    sync.Mutex // protects names
	names map[string]struct{}
}

// label returns the label value of name: UnnamedPeer for "", name if it
// is one of the first max distinct names seen, else OverflowPeer.
func (l *labeler) label(name string) string {
	if name == "" {
		return UnnamedPeer
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.names[name]; ok {
		return name
	}
	if len(l.names) >= l.max {
		return OverflowPeer
	}
	l.names[name] = struct{}{}
	return name
}

// PeerStream holds the series of one stream a reflex gRPC server serves,
// resolved once so that recording costs only atomic operations. It is
// safe for concurrent use.
type PeerStream struct {
	label  string
	lag    func() (int64, bool)
	events prometheus.Counter
	bytes  prometheus.Counter
	errors prometheus.Counter
	once   sync.Once
}

// OpenPeerStream counts an open stream of the client named name (see
// MaxPeerLabels for the label) until Close. lag reports the stream's lag
// in events, and whether it is known; it is called when metrics are
// gathered, so it must be safe for concurrent use and must not block.
func OpenPeerStream(name string, lag func() (int64, bool)) *PeerStream {
	label := peerNames.label(name)
	p := &PeerStream{
		label:  label,
		lag:    lag,
		events: peerEvents.WithLabelValues(label),
		bytes:  peerBytes.WithLabelValues(label),
		errors: peerSendErrors.WithLabelValues(label),
	}
	peerStreams.WithLabelValues(label).Inc()
	peerLag.add(p)
	return p
}

// Label returns the label value of the stream's series.
func (p *PeerStream) Label() string { return p.label }

// Sent counts events sent, of bytes encoded bytes.
func (p *PeerStream) Sent(events, bytes int) {
	p.events.Add(float64(events))
	p.bytes.Add(float64(bytes))
}

// SendError counts a failed send.
func (p *PeerStream) SendError() { p.errors.Inc() }

// Close ends the stream's count. It is idempotent.
func (p *PeerStream) Close() {
	p.once.Do(func() {
		peerLag.remove(p)
		peerStreams.WithLabelValues(p.label).Dec()
	})
}

// lagCollector computes reflex_server_peer_lag_events at scrape time from
// the open streams, so that the lag of a stream whose client does not read
// (and which therefore sends nothing) still grows with the head.
type lagCollector struct {
	desc *prometheus.Desc

	mu   sync.Mutex // protects open
	open map[*PeerStream]struct{}
}

func (c *lagCollector) add(p *PeerStream) {
	c.mu.Lock()
	c.open[p] = struct{}{}
	c.mu.Unlock()
}

func (c *lagCollector) remove(p *PeerStream) {
	c.mu.Lock()
	delete(c.open, p)
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. The lag functions are called
// without c.mu held.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	streams := make([]*PeerStream, 0, len(c.open))
	for p := range c.open {
		streams = append(streams, p)
	}
	c.mu.Unlock()
	most := map[string]int64{}
	for _, p := range streams {
		lag, ok := p.lag()
		if !ok {
			continue
		}
		if m, seen := most[p.label]; !seen || lag > m {
			most[p.label] = lag
		}
	}
	for label, lag := range most {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(lag), label)
	}
}

// Breaker is the state gauge and reconnect counter of the circuit breaker
// of one reflex gRPC stream client.
type Breaker struct {
	state      prometheus.Gauge
	reconnects prometheus.Counter
}

// NewBreaker resolves the series of the client labelled peer (chosen by
// the program, not by the network); the state starts closed (0).
func NewBreaker(peer string) *Breaker {
	b := &Breaker{state: breakerState.WithLabelValues(peer), reconnects: reconnects.WithLabelValues(peer)}
	b.state.Set(0)
	return b
}

// State records the breaker's state: 0 closed, 1 open, 2 half-open.
func (b *Breaker) State(s int) { b.state.Set(float64(s)) }

// Reconnect counts an attempt to reopen a stream after a failure.
func (b *Breaker) Reconnect() { b.reconnects.Inc() }
