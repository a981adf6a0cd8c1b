package reflex

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/peer"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// This file holds a Server's records of its peers: the streams it serves,
// who reads them and how far they are (Peer, Server.Peers, the lifecycle
// hook and the per-consumer metrics), and the server side of event type
// filtering.

// HeadReporter is an optional interface of a StreamClient that knows the
// head of its stream. Head returns the ID of the newest event of the
// stream that the client knows of, and false if it knows none yet. The
// head may be behind the true head (by up to one poll of the source, say),
// but never ahead of it.
//
// Head must be safe to call concurrently with Recv, and must return at
// once: no I/O, no waiting (a load of a value the client keeps up to date
// as it reads is the intended implementation). A Server calls it when
// Peers is called, when metrics are gathered, and once per batch sent, to
// compute the lag of each remote consumer in events and to pass the head
// on to its clients (EventBatch.head). The clients of GRPCStreamFunc
// implement it with the head their server last sent.
type HeadReporter interface {
	Head() (id string, ok bool)
}

// MaxConsumerNameBytes is the length limit of the consumer name a client
// sends (see WithGRPCConsumerName).
const MaxConsumerNameBytes = 256

// MaxRequestTypes is the most event types a client may ask a Server to
// filter on (see WithGRPCEventTypes).
const MaxRequestTypes = 1024

// Peer is a snapshot of one stream call a Server serves: who reads it,
// from where, and how far it got. Server.Peers returns them; the lifecycle
// hook (see WithPeerHook) receives them.
type Peer struct {
	// ID identifies the stream within its Server: 1 for the first stream
	// call the Server accepted, counting up.
	ID uint64
	// Method is "Stream" or "StreamBatch".
	Method string
	// Addr is the client's network address as gRPC reports it, "" if the
	// stream's context carries none.
	Addr string
	// Identity is what the Server's identity function returned for the
	// stream (see WithPeerIdentity), "" without one.
	Identity string
	// ConsumerName is the name the client sent (see
	// WithGRPCConsumerName), "" if it sent none, as clients built before
	// the field and luno/reflex clients do.
	ConsumerName string
	// Types are the event types the client asked for (see
	// WithGRPCEventTypes), in the order it sent them; nil means all.
	Types []int
	// Started is when the Server accepted the stream call.
	Started time.Time
	// After is the cursor the stream started after ("" from the start of
	// the stream); FromHead is true if the client asked for
	// WithStreamFromHead, which overrides After.
	After    string
	FromHead bool
	// Position is the ID of the last event the stream read from its source
	// and sent (gRPC accepted it) or filtered out; "" before the first.
	Position string
	// Head is the newest event ID the stream's source reports (see
	// HeadReporter) when the snapshot is taken, "" if it reports none.
	Head string
	// Lag is the number of events between the stream's position (Position,
	// else After, else 0 from the start) and Head, when both are base-10
	// integer IDs (as rsql's are): counting by ID, so IDs skipped by the
	// source count too. It is -1 when unknown: no head, IDs that are not
	// integers, or a stream from the head that has read nothing yet.
	Lag int64
	// EventsSent and BytesSent count the events sent and their encoded
	// size (the bytes of their reflexpb.Event messages); SendErrors counts
	// failed sends (a failed send ends the stream, so it is 0 or 1).
	EventsSent, BytesSent, SendErrors int64
}

// PeerSignalKind is the kind of a PeerSignal.
type PeerSignalKind int

// The lifecycle signals of a stream (see WithPeerHook).
const (
	// PeerStarted: the Server accepted the stream call (the request is
	// valid and within the limit of streams) and is about to open its
	// stream function.
	PeerStarted PeerSignalKind = iota + 1
	// PeerEnded: the goroutine serving the stream has stopped reading
	// and sending; PeerSignal.Err says why.
	PeerEnded
)

// String returns "started" or "ended".
func (k PeerSignalKind) String() string {
	switch k {
	case PeerStarted:
		return "started"
	case PeerEnded:
		return "ended"
	}
	return "PeerSignalKind(" + strconv.Itoa(int(k)) + ")"
}

// PeerSignal is a lifecycle signal of one stream a Server serves.
type PeerSignal struct {
	Kind PeerSignalKind
	// Peer is the stream's snapshot at the time of the signal: for
	// PeerEnded, its final figures.
	Peer Peer
	// Err is the error that ended the stream (PeerEnded only): the error
	// of the stream function or its client (ErrHeadReached for a stream to
	// the head), of a send (the client went away), a context error when
	// the call ended, or ErrStopped after Stop.
	Err error
}

// WithPeerHook makes the Server call hook with the lifecycle signals of
// every stream it accepts. The rules:
//
//   - each accepted stream gets exactly one PeerStarted and then exactly
//     one PeerEnded; calls for one stream are never concurrent, and the
//     PeerStarted call returns before the PeerEnded call starts;
//   - calls for different streams may be concurrent: hook must be safe for
//     concurrent use;
//   - when PeerStarted is called the stream is already in Server.Peers;
//     when PeerEnded is called it is no longer there;
//   - hook runs on the stream's own goroutines (PeerStarted on the gRPC
//     handler's, before the stream function is opened; PeerEnded on the
//     serving goroutine, after it stopped), so a slow hook delays that
//     stream only; Server.Stop waits for the PeerEnded calls;
//   - calls refused before they start (an invalid request, the limit of
//     streams, a stopped Server) get no signal;
//   - hook must not call Server.Stop (it would wait for itself).
//
// The default is no hook. A nil hook is ignored.
func WithPeerHook(hook func(PeerSignal)) ServerOption {
	return func(c *serverConfig) { c.hook = hook }
}

// WithPeerIdentity sets how the Server learns who a stream's client is:
// identity is called once per accepted stream with the stream's context
// (the one the gRPC handler sees, after every interceptor), and its result
// is the Peer's Identity. This is the hand-over from authentication: an
// interceptor that authenticates a call puts what it learned in the
// context it passes on (with a key of its own, as interceptors do), and
// identity reads it back; identity may also use the transport's
// credentials (peer.FromContext(ctx).AuthInfo, for mTLS). The identity is
// for Peers and the lifecycle hook only, never a metric label. The default
// is none (Identity is ""). identity must be safe for concurrent use and
// should return promptly: it runs before the stream opens. A nil identity
// is ignored.
func WithPeerIdentity(identity func(ctx context.Context) string) ServerOption {
	return func(c *serverConfig) { c.identity = identity }
}

// peerAccountingOff turns the per-batch accounting of peers off, for the
// benchmark that measures its cost (set from export tests only).
var peerAccountingOff atomic.Bool

// peerRecord is the live record of one stream.
type peerRecord struct {
	// Fixed when the stream is accepted.
	id       uint64
	method   string
	addr     string
	identity string
	name     string
	types    []int
	started  time.Time
	after    string
	fromHead bool
	metrics  *metrics.PeerStream

	mu         sync.Mutex // protects the following fields
	head       HeadReporter
	position   string
	sent       int64
	bytes      int64
	sendErrors int64
}

// newPeerRecord builds the record of a stream call about to be served.
func (s *Server) newPeerRecord(ctx context.Context, method string, req *reflexpb.StreamRequest) *peerRecord {
	r := &peerRecord{
		method:   method,
		name:     req.GetConsumerName(),
		started:  time.Now(),
		after:    req.GetAfter(),
		fromHead: req.GetOptions().GetFromHead(),
	}
	if ts := req.GetTypes(); len(ts) > 0 {
		r.types = make([]int, len(ts))
		for i, t := range ts {
			r.types[i] = int(t)
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		r.addr = p.Addr.String()
	}
	if s.cfg.identity != nil {
		r.identity = s.cfg.identity(ctx)
	}
	return r
}

// opened records the stream's source client, for its head.
func (r *peerRecord) opened(cl StreamClient) {
	if h, ok := cl.(HeadReporter); ok {
		r.mu.Lock()
		r.head = h
		r.mu.Unlock()
	}
}

// sentBatch records events sent (of bytes encoded bytes), the last of
// which, or the last filtered out after them, is last.
func (r *peerRecord) sentBatch(events, bytes int, last string) {
	if peerAccountingOff.Load() {
		return
	}
	r.mu.Lock()
	r.sent += int64(events)
	r.bytes += int64(bytes)
	r.position = last
	r.mu.Unlock()
	if events > 0 {
		r.metrics.Sent(events, bytes)
	}
}

// sendFailed records a failed send.
func (r *peerRecord) sendFailed() {
	r.mu.Lock()
	r.sendErrors++
	r.mu.Unlock()
	r.metrics.SendError()
}

// snapshot returns the record as a Peer.
func (r *peerRecord) snapshot() Peer {
	r.mu.Lock()
	p := Peer{
		ID: r.id, Method: r.method, Addr: r.addr, Identity: r.identity, ConsumerName: r.name,
		Types: slices.Clone(r.types), Started: r.started, After: r.after, FromHead: r.fromHead,
		Position: r.position, EventsSent: r.sent, BytesSent: r.bytes, SendErrors: r.sendErrors,
	}
	h := r.head
	r.mu.Unlock()
	p.Lag = -1
	if h != nil {
		if head, ok := h.Head(); ok {
			p.Head = head
			p.Lag = r.lagTo(head, p.Position)
		}
	}
	return p
}

// lag is the stream's lag for the metrics (see Peer.Lag).
func (r *peerRecord) lag() (int64, bool) {
	r.mu.Lock()
	h, pos := r.head, r.position
	r.mu.Unlock()
	if h == nil {
		return 0, false
	}
	head, ok := h.Head()
	if !ok {
		return 0, false
	}
	l := r.lagTo(head, pos)
	return l, l >= 0
}

// lagTo returns the events between position (or the stream's start) and
// head, or -1 if unknown (see Peer.Lag).
func (r *peerRecord) lagTo(head, position string) int64 {
	h, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return -1
	}
	var p int64
	switch {
	case position != "":
		p, err = strconv.ParseInt(position, 10, 64)
	case r.fromHead:
		return -1
	case r.after != "":
		p, err = strconv.ParseInt(r.after, 10, 64)
	}
	if err != nil {
		return -1
	}
	return max(h-p, 0)
}

// Peers returns a snapshot of the streams the Server is serving, by
// increasing ID: the streams whose PeerStarted signal was sent and whose
// PeerEnded signal was not. It calls the Head method of the sources that
// implement HeadReporter. It does not block on the streams and is safe
// for concurrent use.
func (s *Server) Peers() []Peer {
	s.mu.Lock()
	recs := make([]*peerRecord, 0, len(s.peers))
	for _, r := range s.peers {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	slices.SortFunc(recs, func(a, b *peerRecord) int { return cmpUint64(a.id, b.id) })
	out := make([]Peer, len(recs))
	for i, r := range recs {
		out[i] = r.snapshot()
	}
	return out
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// signal calls the hook, if any.
func (s *Server) signal(kind PeerSignalKind, r *peerRecord, err error) {
	if s.cfg.hook == nil {
		return
	}
	s.cfg.hook(PeerSignal{Kind: kind, Peer: r.snapshot(), Err: err})
}

// checkConsumerName checks the consumer name of a request (see
// MaxConsumerNameBytes). Its errors wrap ErrInvalidCursor, the sentinel of
// a request the server cannot serve as it is (status InvalidArgument).
func checkConsumerName(name string) error {
	switch {
	case len(name) > MaxConsumerNameBytes:
		return fmt.Errorf("%w: consumer name of %d bytes, more than %d", ErrInvalidCursor, len(name), MaxConsumerNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: consumer name %s is not valid UTF-8", ErrInvalidCursor, bounded.Quote(name))
	}
	return nil
}

// typeFilter is the set of event types a stream sends; a nil filter sends
// every event.
type typeFilter map[int]struct{}

// newTypeFilter returns the filter of a request's types (nil for none).
// More than MaxRequestTypes types is an error wrapping ErrInvalidCursor.
func newTypeFilter(types []int32) (typeFilter, error) {
	if len(types) == 0 {
		return nil, nil
	}
	if len(types) > MaxRequestTypes {
		return nil, fmt.Errorf("%w: %d event types, more than %d", ErrInvalidCursor, len(types), MaxRequestTypes)
	}
	f := make(typeFilter, len(types))
	for _, t := range types {
		f[int(t)] = struct{}{}
	}
	return f, nil
}

// match reports whether e passes the filter. An event with a nil Type
// passes, so that the stream ends with the error it would end with
// without a filter.
func (f typeFilter) match(e *Event) bool {
	if f == nil || e == nil || e.Type == nil {
		return true
	}
	_, ok := f[e.Type.ReflexType()]
	return ok
}
