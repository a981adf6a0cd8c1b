package topology_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/monitoring/topology"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// orders declares the event network of an "orders" service: it owns the
// order_events stream, served to billing and to whoever else connects
// (through rs); it consumes users' and payments' streams with a fan-in
// consumer, and its own stream with a local one.
func orders(rs *reflex.Server, lag func(context.Context) (int64, error)) *topology.Graph {
	g := topology.New("orders")
	own := g.Stream("order_events").Note("rsql table")
	users := g.Peer("users")
	payments := g.Peer("payments")
	billing := g.Peer("billing")
	own.ServedTo(billing).ServedBy(rs)
	cursors := g.CursorStore("cursors").Note("rsql table")
	g.Consumer("order_sync", cursors, users.Stream("user_events"), payments.Stream("payment_events")).
		Note("fan-in, dedupe").Lag(lag)
	g.Consumer("order_audit", cursors, own).Lag(func(context.Context) (int64, error) { return 0, nil })
	return g
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func print(t *testing.T, g *topology.Graph, mermaid bool, opts ...topology.PrintOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	write := g.WriteDOT
	if mermaid {
		write = g.WriteMermaid
	}
	if err := write(t.Context(), &buf, opts...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	rs := reflex.NewServer()
	defer rs.Stop()
	g := orders(rs, func(context.Context) (int64, error) { return 12, nil })
	golden(t, "orders.dot", print(t, g, false))
	golden(t, "orders.mmd", print(t, g, true))
}

// headLog reports its head, so that the server knows each stream's lag.
type headLog struct {
	*reflextest.Log
	head atomic.Int64
}

func (l *headLog) stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	cl, err := l.Log.Stream(ctx, after, opts...)
	return headClient{cl, l}, err
}

type headClient struct {
	reflex.StreamClient
	l *headLog
}

func (c headClient) Head() (string, bool) { return strconv.FormatInt(c.l.head.Load(), 10), true }

// TestGoldenLive prints the graph with live figures: the consumers' lag,
// and the remote consumers of the served stream (one real gRPC client
// named billing_sync, caught up).
func TestGoldenLive(t *testing.T) {
	l := &headLog{Log: reflextest.NewLog()}
	l.Append(reflex.Event{ForeignID: "1", Type: reflexType(1)}, reflex.Event{ForeignID: "2", Type: reflexType(1)})
	l.head.Store(2)
	rs := reflex.NewServer()
	gs := grpc.NewServer()
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(l.stream))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	defer func() { rs.Stop(); gs.Stop(); <-served }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sc, err := reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName("billing_sync"))(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.(interface{ Close() error }).Close()
	for range 2 {
		if _, err := sc.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	err = testguard.Poll(time.Minute, time.Millisecond, "the server's position", func() (int64, bool, error) {
		p := rs.Peers()
		return 0, len(p) == 1 && p[0].Lag == 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	g := orders(rs, func(context.Context) (int64, error) { return 12, nil })
	golden(t, "orders_live.dot", print(t, g, false, topology.WithLive()))
	golden(t, "orders_live.mmd", print(t, g, true, topology.WithLive()))
}

type reflexType int

func (t reflexType) ReflexType() int { return int(t) }

// TestDotAcceptsDOT renders the DOT output, plain and live, with
// Graphviz's dot.
func TestDotAcceptsDOT(t *testing.T) {
	dot, err := exec.LookPath("dot")
	if err != nil {
		if testing.Short() {
			t.Skip("skipped in -short mode: Graphviz's dot is not installed")
		}
		t.Fatalf("Graphviz's dot is not installed (apt-get install graphviz): %v", err)
	}
	rs := reflex.NewServer()
	defer rs.Stop()
	g := orders(rs, func(context.Context) (int64, error) { return 0, errors.New("db down") })
	odd := g.Peer(`we"ird\ <peer> #1`)
	g.Consumer("x\ny", g.CursorStore("|s|"), odd.Stream(`"quoted"`))
	var live bytes.Buffer
	if err := g.WriteDOT(t.Context(), &live, topology.WithLive()); err == nil || !strings.Contains(err.Error(), "db down") {
		t.Errorf("WriteDOT with a failing lag = %v, want its error", err)
	}
	if !strings.Contains(live.String(), "lag ?") {
		t.Errorf("a lag that could not be measured does not show as ?:\n%s", live.String())
	}
	for name, src := range map[string][]byte{"plain": print(t, g, false), "live": live.Bytes()} {
		cmd := exec.CommandContext(t.Context(), dot, "-Tsvg")
		cmd.Stdin = bytes.NewReader(src)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("%s: dot -Tsvg: %v\n%s\ninput:\n%s", name, err, stderr.String(), src)
			continue
		}
		if !strings.Contains(out.String(), "<svg") {
			t.Errorf("%s: dot -Tsvg wrote no SVG", name)
		}
	}
}

// TestMermaidEscapes checks that names cannot break out of their labels.
func TestMermaidEscapes(t *testing.T) {
	g := topology.New(`a"b`)
	p := g.Peer(`<p>|#"`)
	g.Consumer("c\nd", g.CursorStore("s"), p.Stream("e"))
	out := string(print(t, g, true))
	for _, bad := range []string{`a"b`, "<p>", "|#", "c\nd"} {
		if strings.Contains(out, bad) {
			t.Errorf("Mermaid output holds %q unescaped:\n%s", bad, out)
		}
	}
}

func TestDeclarePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"empty service":  func() { topology.New("") },
		"empty name":     func() { topology.New("s").Stream("") },
		"twice":          func() { g := topology.New("s"); g.Stream("a"); g.Stream("a") },
		"consumer alone": func() { g := topology.New("s"); g.Consumer("c", g.CursorStore("x")) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(r.(string), "topology:") {
					t.Errorf("%s: recovered %v, want a topology: panic", name, r)
				}
			}()
			f()
		}()
	}
	// The same stream name under two peers, or at home, is fine.
	g := topology.New("s")
	g.Stream("events")
	g.Peer("a").Stream("events")
	g.Peer("b").Stream("events")
}
