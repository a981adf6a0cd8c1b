// Package topology declares the event network of one service (the
// streams it owns and serves, the peers whose streams it consumes, its
// consumers and their cursor stores) and prints it as a Graphviz DOT or a
// Mermaid graph, with live figures when asked: the lag of each consumer
// and, for a stream served by a [reflex.Server], the remote consumers
// reading it ([reflex.Server.Peers]).
//
// Declare the network once, next to the code that wires it, and print it
// from a flag, an admin endpoint or a test:
//
//	g := topology.New("welcome")
//	users := g.Peer("users").Stream("user_events")
//	cursors := g.CursorStore("cursors")
//	g.Consumer("welcome_emails", cursors, users).Lag(lagFunc)
//	err := g.WriteDOT(ctx, os.Stdout, topology.WithLive())
//
// A Graph is built by one goroutine (declaring panics, with a
// "topology:"-prefixed message, on an empty or repeated name: a
// programming error); once built, printing is safe for concurrent use.
// The package starts no goroutine.
package topology

import (
	"context"
	"fmt"

	"github.com/seed-e488ba2e/reflex"
)

type kind int

const (
	kindStream kind = iota
	kindPeer
	kindStore
	kindConsumer
)

func (k kind) String() string {
	return [...]string{"stream", "peer", "cursor store", "consumer"}[k]
}

// node is one declared element of a graph.
type node struct {
	id   string // n0, n1, ... in declaration order
	kind kind
	name string
	note string
	peer *node // for a stream of a peer: the peer

	// consumers
	store *node
	from  []*node
	lag   func(ctx context.Context) (int64, error)

	// streams
	servedTo []*node
	server   *reflex.Server
}

// Graph is the declared event network of one service. Make one with New.
type Graph struct {
	service string
	nodes   []*node
	names   map[string]*node // by kind, peer and name
}

// New returns an empty Graph of the service named service. It panics if
// service is empty.
func New(service string) *Graph {
	if service == "" {
		panic("topology: New: empty service name")
	}
	return &Graph{service: service, names: map[string]*node{}}
}

// add declares a node; it panics on an empty or repeated name.
func (g *Graph) add(k kind, name string, peer *node) *node {
	if name == "" {
		panic(fmt.Sprintf("topology: %s with an empty name", k))
	}
	key := fmt.Sprint(k, "\x00", name)
	if peer != nil {
		key = fmt.Sprint(k, "\x00", peer.name, "\x00", name)
	}
	if _, ok := g.names[key]; ok {
		panic(fmt.Sprintf("topology: %s %q declared twice", k, name))
	}
	n := &node{id: fmt.Sprintf("n%d", len(g.nodes)), kind: k, name: name, peer: peer}
	g.nodes = append(g.nodes, n)
	g.names[key] = n
	return n
}

// Stream is an event stream in a Graph: one the service owns, or one of a
// peer's.
type Stream struct {
	g *Graph
	n *node
}

// Peer is another service in a Graph: one whose streams the service
// consumes, or one that consumes the service's streams.
type Peer struct {
	g *Graph
	n *node
}

// CursorStore is a cursor store in a Graph.
type CursorStore struct{ n *node }

// Consumer is a consumer in a Graph.
type Consumer struct{ n *node }

// Stream declares a stream the service owns, such as an rsql events
// table.
func (g *Graph) Stream(name string) *Stream {
	return &Stream{g: g, n: g.add(kindStream, name, nil)}
}

// Peer declares another service.
func (g *Graph) Peer(name string) *Peer {
	return &Peer{g: g, n: g.add(kindPeer, name, nil)}
}

// Stream declares a stream that peer p serves, which the service
// consumes over gRPC.
func (p *Peer) Stream(name string) *Stream {
	return &Stream{g: p.g, n: p.g.add(kindStream, name, p.n)}
}

// CursorStore declares a cursor store, such as an rsql cursors table.
func (g *Graph) CursorStore(name string) *CursorStore {
	return &CursorStore{n: g.add(kindStore, name, nil)}
}

// Consumer declares a consumer that reads the streams from (several: a
// fan-in) and keeps its cursors in store. It panics if store is nil or
// from is empty.
func (g *Graph) Consumer(name string, store *CursorStore, from ...*Stream) *Consumer {
	if store == nil || len(from) == 0 {
		panic(fmt.Sprintf("topology: consumer %q needs a cursor store and at least one stream", name))
	}
	n := g.add(kindConsumer, name, nil)
	n.store = store.n
	for _, s := range from {
		n.from = append(n.from, s.n)
	}
	return &Consumer{n: n}
}

// ServedTo declares that the service serves s over gRPC to the peers
// given (the consumers it knows of). It returns s.
func (s *Stream) ServedTo(peers ...*Peer) *Stream {
	for _, p := range peers {
		s.n.servedTo = append(s.n.servedTo, p.n)
	}
	return s
}

// ServedBy declares that rs serves s: with WithLive, the printers list the
// remote consumers rs reports (see reflex.Server.Peers) by consumer name,
// with their streams and their largest lag. It returns s.
func (s *Stream) ServedBy(rs *reflex.Server) *Stream {
	s.n.server = rs
	return s
}

// Note adds a line of text to the stream's box. It returns s.
func (s *Stream) Note(text string) *Stream { s.n.note = text; return s }

// Note adds a line of text to the peer's box. It returns p.
func (p *Peer) Note(text string) *Peer { p.n.note = text; return p }

// Note adds a line of text to the store's box. It returns c.
func (c *CursorStore) Note(text string) *CursorStore { c.n.note = text; return c }

// Note adds a line of text to the consumer's box (its wrappers, say:
// "rate 100/s, dedupe"). It returns c.
func (c *Consumer) Note(text string) *Consumer { c.n.note = text; return c }

// Lag sets how the consumer's lag in events is measured, for WithLive
// (the head of its stream minus its cursor, say). fn is called once per
// print; it must be safe for concurrent use. It returns c.
func (c *Consumer) Lag(fn func(ctx context.Context) (int64, error)) *Consumer {
	c.n.lag = fn
	return c
}
