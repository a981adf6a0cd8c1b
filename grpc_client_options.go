package reflex

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// GRPCOption configures the StreamFunc of GRPCStreamFunc.
type GRPCOption func(*clientConfig)

type clientConfig struct {
	name      string
	types     []int32
	filter    typeFilter
	reconnect *ReconnectPolicy
	// confirm makes the StreamFunc wait until the server says the stream
	// is open (see waitOpened); set with reconnect.
	confirm bool
}

// newClientConfig applies opts and checks the result; it panics, with a
// "reflex:"-prefixed message, on a nil option or an invalid value.
func newClientConfig(opts []GRPCOption) *clientConfig {
	cfg := &clientConfig{}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("reflex: GRPCStreamFunc: option %d is nil", i))
		}
		o(cfg)
	}
	if err := checkConsumerName(cfg.name); err != nil {
		panic(fmt.Sprintf("reflex: WithGRPCConsumerName: %v", err))
	}
	if cfg.reconnect != nil {
		p := cfg.reconnect.withDefaults()
		if err := p.check(); err != nil {
			panic("reflex: WithGRPCReconnect: " + err.Error())
		}
		cfg.reconnect, cfg.confirm = &p, true
	}
	return cfg
}

// WithGRPCConsumerName makes the client send name with each stream call,
// so that the server can tell its consumers apart: Server.Peers and the
// lifecycle hook report it as Peer.ConsumerName, and the server's metrics
// count per consumer name (see the reflex_server_peer_* metrics). Use the
// name of the consumer that reads the stream, and one StreamFunc per
// consumer. Servers built before the field ignore it. The default is no
// name. GRPCStreamFunc panics if name is longer than MaxConsumerNameBytes
// or not valid UTF-8.
func WithGRPCConsumerName(name string) GRPCOption {
	return func(c *clientConfig) { c.name = name }
}

// WithGRPCEventTypes makes the client receive only events of the given
// types. The request asks the server to filter (so that a consumer that
// wants 1 type in 50 does not receive the other 49), and the client
// filters what it receives too, so the events delivered are the same with
// servers that do not know the request field (built before it, or
// luno/reflex servers), which send every event. Types are compared by
// ReflexType. The default is every type. GRPCStreamFunc panics if types
// is empty or longer than MaxRequestTypes, or if a type is nil or does not
// fit in int32.
func WithGRPCEventTypes(types ...EventType) GRPCOption {
	return func(c *clientConfig) {
		if len(types) == 0 {
			panic("reflex: WithGRPCEventTypes: no types")
		}
		if len(types) > MaxRequestTypes {
			panic(fmt.Sprintf("reflex: WithGRPCEventTypes: %d types, more than %d", len(types), MaxRequestTypes))
		}
		c.types = make([]int32, len(types))
		c.filter = make(typeFilter, len(types))
		for i, t := range types {
			if t == nil {
				panic(fmt.Sprintf("reflex: WithGRPCEventTypes: type %d is nil", i))
			}
			v := t.ReflexType()
			if int(int32(v)) != v {
				panic(fmt.Sprintf("reflex: WithGRPCEventTypes: type %d does not fit in int32", v))
			}
			c.types[i] = int32(v)
			c.filter[v] = struct{}{}
		}
	}
}

// WithGRPCReconnect makes the client resilient, as p describes (see
// ReconnectPolicy for the rules and its zero fields' defaults). Without
// it, which is the default, the client returns every error of the stream
// to its caller.
func WithGRPCReconnect(p ReconnectPolicy) GRPCOption {
	return func(c *clientConfig) { c.reconnect = &p }
}

// The defaults of ReconnectPolicy.
const (
	DefaultReconnectMinBackoff = 100 * time.Millisecond
	DefaultReconnectMaxBackoff = 5 * time.Second
	DefaultBreakerThreshold    = 5
	DefaultBreakerOpenFor      = 10 * time.Second
)

// ReconnectPolicy configures the resilient client of WithGRPCReconnect:
// reconnection with jittered backoff, and a circuit breaker. A zero field
// takes its default.
//
// Reconnecting: when a stream fails with a transient error, Recv reopens
// it after the last event it returned (or the cursor it was opened with)
// and goes on; the caller sees no error and no event twice. Transient
// errors are the gRPC codes Unavailable (including ErrStopped, a peer
// shutting down), ResourceExhausted (including ErrTooManyStreams),
// Aborted, Internal, Unknown (the error of the peer's stream function,
// such as its database being down), and Canceled and DeadlineExceeded
// when they come from the peer rather than from the caller's context or
// Close. Every other error (ErrHeadReached, ErrInvalidCursor,
// Unimplemented, Unauthenticated, a malformed batch, ...) is returned as
// it is. Before each new attempt Recv waits MinBackoff, doubled for each
// attempt in a row that failed, up to MaxBackoff, each wait shortened at
// random by up to half (jitter), so that clients failing together do not
// retry together; a stream that delivered an event starts again from
// MinBackoff. The StreamFunc itself opens with the same rules, so it may
// block through a few backoffs.
//
// Circuit breaker, shared by every stream of the StreamFunc (one per
// peer): an attempt fails if opening the stream fails with a transient
// error, and succeeds once the peer says the stream is open (the response
// header a reflex Server sends; with other servers, the first message) or
// answers anything else. The breaker is closed at first: attempts go
// ahead. After FailureThreshold failed attempts in a row it opens: for
// OpenFor (jittered as above) every attempt fails at once, without
// contacting the peer, with an error wrapping ErrCircuitOpen, which the
// StreamFunc or Recv returns. Then it is half-open: the next attempt goes
// ahead as a probe while the others keep failing with ErrCircuitOpen; if
// the probe succeeds the breaker closes, and if it fails it opens again
// for OpenFor. So under rpatterns.RunForever, a consumer whose peer keeps
// failing contacts it once per OpenFor instead of at every run, and
// resumes on its own once a probe gets through.
//
// The state is the gauge reflex_client_breaker_state{peer=Peer} (0
// closed, 1 open, 2 half-open); reflex_client_reconnect_attempts_total
// counts the attempts made after a failure.
//
// With WithStreamFromHead, a stream that fails before its first event is
// reopened from the head again, so events added in between are not
// delivered; once it has delivered an event it resumes after it.
//
// The resilient client starts no goroutine: it waits and reconnects
// within Recv (and the StreamFunc), on the caller's goroutine. Close
// cancels a wait or an attempt in progress; after it, Recv returns
// context.Canceled.
type ReconnectPolicy struct {
	// Peer labels the breaker's metrics. The default is "". Give each
	// StreamFunc its own.
	Peer string
	// MinBackoff is the wait before the first new attempt after a
	// failure; default DefaultReconnectMinBackoff (100ms).
	MinBackoff time.Duration
	// MaxBackoff caps the doubling of MinBackoff; default
	// DefaultReconnectMaxBackoff (5s). It must not be below MinBackoff.
	MaxBackoff time.Duration
	// FailureThreshold is the number of failed attempts in a row that
	// opens the breaker; default DefaultBreakerThreshold (5).
	FailureThreshold int
	// OpenFor is how long the breaker stays open before a probe; default
	// DefaultBreakerOpenFor (10s).
	OpenFor time.Duration
	// OnState, if set, is called with each new state of the breaker, in
	// order, while the breaker's lock is held: it must return promptly
	// and must not use the StreamFunc. The default is none.
	OnState func(BreakerState)
}

func (p ReconnectPolicy) withDefaults() ReconnectPolicy {
	if p.MinBackoff == 0 {
		p.MinBackoff = DefaultReconnectMinBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = max(DefaultReconnectMaxBackoff, p.MinBackoff)
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultBreakerThreshold
	}
	if p.OpenFor == 0 {
		p.OpenFor = DefaultBreakerOpenFor
	}
	return p
}

func (p ReconnectPolicy) check() error {
	switch {
	case p.MinBackoff < 0 || p.MaxBackoff < 0 || p.OpenFor < 0 || p.FailureThreshold < 0:
		return errors.New("MinBackoff, MaxBackoff, OpenFor and FailureThreshold must not be negative")
	case p.MaxBackoff < p.MinBackoff:
		return fmt.Errorf("MaxBackoff %v below MinBackoff %v", p.MaxBackoff, p.MinBackoff)
	case len(p.Peer) > MaxConsumerNameBytes || !utf8.ValidString(p.Peer):
		return fmt.Errorf("Peer must be valid UTF-8 of at most %d bytes", MaxConsumerNameBytes)
	}
	return nil
}

// BreakerState is the state of the circuit breaker of a resilient client
// (see ReconnectPolicy).
type BreakerState int

// The states of a circuit breaker; the values are those of the
// reflex_client_breaker_state gauge.
const (
	BreakerClosed   BreakerState = 0
	BreakerOpen     BreakerState = 1
	BreakerHalfOpen BreakerState = 2
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int(s))
}
