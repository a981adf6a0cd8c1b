package topology

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// PrintOption configures WriteDOT and WriteMermaid.
type PrintOption func(*printConfig)

type printConfig struct {
	live bool
}

// WithLive adds live figures to the graph: each consumer's lag (see
// Consumer.Lag) and, for each stream served by a reflex.Server (see
// Stream.ServedBy), its remote consumers by name with their open streams
// and their largest lag. The default is the declared graph only.
func WithLive() PrintOption {
	return func(c *printConfig) { c.live = true }
}

// view is a graph ready to print: boxes in clusters, and edges.
type view struct {
	clusters []cluster
	edges    []edge
}

type cluster struct {
	id    string
	title string
	boxes []box
}

type shape int

const (
	shapeStream shape = iota
	shapeStore
	shapeConsumer
	shapePeer
)

type box struct {
	id    string
	lines []string
	shape shape
}

type edge struct {
	from, to string
	label    string
	dashed   bool
}

// build lays out g; with live, it gathers the live figures, and returns
// the errors of those it could not get (the graph shows "?" for them).
func (g *Graph) build(ctx context.Context, live bool) (view, error) {
	var errs []error
	boxOf := func(n *node) box {
		b := box{id: n.id, lines: []string{n.kind.String(), n.name}}
		switch n.kind {
		case kindStream:
			b.shape = shapeStream
		case kindStore:
			b.shape = shapeStore
		case kindConsumer:
			b.shape = shapeConsumer
		case kindPeer:
			b.shape = shapePeer
			b.lines = []string{"service", n.name}
		}
		if n.note != "" {
			b.lines = append(b.lines, n.note)
		}
		if !live {
			return b
		}
		if n.lag != nil {
			lag, err := n.lag(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("topology: lag of consumer %q: %w", n.name, err))
				b.lines = append(b.lines, "lag ?")
			} else {
				b.lines = append(b.lines, "lag "+strconv.FormatInt(lag, 10)+" events")
			}
		}
		if n.server != nil {
			b.lines = append(b.lines, remoteConsumers(n)...)
		}
		return b
	}

	var v view
	home := cluster{id: "c0", title: "service " + g.service}
	peers := map[*node]int{} // peer -> index in v.clusters, plus 1
	served := map[*node]bool{}
	for _, n := range g.nodes {
		for _, p := range n.servedTo {
			served[p] = true
		}
	}
	for _, n := range g.nodes {
		switch {
		case n.kind == kindPeer:
			// The peer's own box only where the service serves it; the
			// cluster holds its streams.
			peers[n] = len(v.clusters) + 1
			c := cluster{id: "c" + strconv.Itoa(len(v.clusters)+1), title: "peer " + n.name}
			if served[n] {
				c.boxes = append(c.boxes, boxOf(n))
			}
			v.clusters = append(v.clusters, c)
		case n.peer != nil:
			i := peers[n.peer] - 1
			v.clusters[i].boxes = append(v.clusters[i].boxes, boxOf(n))
		default:
			home.boxes = append(home.boxes, boxOf(n))
		}
	}
	v.clusters = append([]cluster{home}, v.clusters...)

	for _, n := range g.nodes {
		for _, from := range n.from {
			label := ""
			if from.peer != nil {
				label = "gRPC"
			}
			v.edges = append(v.edges, edge{from: from.id, to: n.id, label: label})
		}
		if n.store != nil {
			v.edges = append(v.edges, edge{from: n.id, to: n.store.id, label: "cursor", dashed: true})
		}
		for _, p := range n.servedTo {
			v.edges = append(v.edges, edge{from: n.id, to: p.id, label: "gRPC"})
		}
	}
	return v, errors.Join(errs...)
}

// remoteConsumers returns a line per consumer name reading stream n from
// its server: streams open and the largest lag known.
func remoteConsumers(n *node) []string {
	type agg struct {
		streams int
		lag     int64
	}
	by := map[string]*agg{}
	for _, p := range n.server.Peers() {
		a := by[p.ConsumerName]
		if a == nil {
			a = &agg{lag: -1}
			by[p.ConsumerName] = a
		}
		a.streams++
		a.lag = max(a.lag, p.Lag)
	}
	if len(by) == 0 {
		return []string{"no remote consumers"}
	}
	names := make([]string, 0, len(by))
	for name := range by {
		names = append(names, name)
	}
	slices.Sort(names)
	lines := make([]string, 0, len(names))
	for _, name := range names {
		a := by[name]
		label := name
		if label == "" {
			label = "(unnamed)"
		}
		lag := "?"
		if a.lag >= 0 {
			lag = strconv.FormatInt(a.lag, 10)
		}
		streams := "streams"
		if a.streams == 1 {
			streams = "stream"
		}
		lines = append(lines, fmt.Sprintf("→ %s: %d %s, lag %s", label, a.streams, streams, lag))
	}
	return lines
}

// WriteDOT writes the graph to w in Graphviz DOT (render it with, for
// example, dot -Tsvg). With WithLive it calls the live figures' functions
// first (see WithLive); a figure it cannot get shows as "?", and WriteDOT
// returns its error, joined with others, after writing the graph. It
// returns the first error writing to w otherwise.
func (g *Graph) WriteDOT(ctx context.Context, w io.Writer, opts ...PrintOption) error {
	v, liveErr := g.build(ctx, resolve(opts).live)
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "digraph %s {\n", dotQuote(g.service))
	bw.WriteString("\trankdir=LR;\n\tnode [fontname=\"Helvetica\", fontsize=11];\n\tedge [fontname=\"Helvetica\", fontsize=10];\n")
	for _, c := range v.clusters {
		fmt.Fprintf(bw, "\tsubgraph cluster_%s {\n\t\tlabel=%s;\n", c.id, dotQuote(c.title))
		for _, b := range c.boxes {
			fmt.Fprintf(bw, "\t\t%s [label=%s, shape=%s];\n", b.id, dotQuote(b.lines...), dotShapes[b.shape])
		}
		bw.WriteString("\t}\n")
	}
	for _, e := range v.edges {
		attrs := []string{}
		if e.label != "" {
			attrs = append(attrs, "label="+dotQuote(e.label))
		}
		if e.dashed {
			attrs = append(attrs, "style=dashed")
		}
		fmt.Fprintf(bw, "\t%s -> %s", e.from, e.to)
		if len(attrs) > 0 {
			fmt.Fprintf(bw, " [%s]", strings.Join(attrs, ", "))
		}
		bw.WriteString(";\n")
	}
	bw.WriteString("}\n")
	if err := bw.Flush(); err != nil {
		return err
	}
	return liveErr
}

var dotShapes = map[shape]string{shapeStream: "cds", shapeStore: "cylinder", shapeConsumer: "box", shapePeer: "component"}

// dotQuote returns lines as one quoted DOT string, one line each.
func dotQuote(lines ...string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, l := range lines {
		if i > 0 {
			b.WriteString(`\n`)
		}
		for _, r := range l {
			switch {
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r < ' ' || r == 0x7f:
				b.WriteByte(' ')
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// WriteMermaid writes the graph to w as a Mermaid flowchart (for
// Markdown that renders Mermaid). Live figures and errors are as for
// WriteDOT.
func (g *Graph) WriteMermaid(ctx context.Context, w io.Writer, opts ...PrintOption) error {
	v, liveErr := g.build(ctx, resolve(opts).live)
	bw := bufio.NewWriter(w)
	bw.WriteString("flowchart LR\n")
	for _, c := range v.clusters {
		fmt.Fprintf(bw, "\tsubgraph %s[%s]\n", c.id, mermaidQuote(c.title))
		for _, b := range c.boxes {
			open, end := mermaidShapes[b.shape][0], mermaidShapes[b.shape][1]
			fmt.Fprintf(bw, "\t\t%s%s%s%s\n", b.id, open, mermaidQuote(b.lines...), end)
		}
		bw.WriteString("\tend\n")
	}
	for _, e := range v.edges {
		arrow := "-->"
		if e.dashed {
			arrow = "-.->"
		}
		if e.label != "" {
			arrow += "|" + mermaidQuote(e.label) + "|"
		}
		fmt.Fprintf(bw, "\t%s %s %s\n", e.from, arrow, e.to)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return liveErr
}

var mermaidShapes = map[shape][2]string{
	shapeStream:   {"([", "])"},
	shapeStore:    {"[(", ")]"},
	shapeConsumer: {"[", "]"},
	shapePeer:     {"[[", "]]"},
}

// mermaidQuote returns lines as one quoted Mermaid label, one line each,
// with the characters Mermaid would read as syntax written as entity
// codes.
func mermaidQuote(lines ...string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, l := range lines {
		if i > 0 {
			b.WriteString("<br/>")
		}
		for _, r := range l {
			switch {
			case r == '#':
				b.WriteString("#35;")
			case r == '"':
				b.WriteString("#quot;")
			case r == '<':
				b.WriteString("#lt;")
			case r == '>':
				b.WriteString("#gt;")
			case r == '|':
				b.WriteString("#124;")
			case r < ' ' || r == 0x7f:
				b.WriteByte(' ')
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func resolve(opts []PrintOption) printConfig {
	var c printConfig
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("topology: print option %d is nil", i))
		}
		o(&c)
	}
	return c
}
