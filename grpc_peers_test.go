package reflex_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// headLog is an in-memory log whose stream clients report its head (see
// reflex.HeadReporter) and hide Buffered, so that a Server reads them
// ahead on a goroutine: a Recv blocked by the log's hook then holds back
// only the events after it.
type headLog struct {
	*reflextest.Log
	head atomic.Int64
}

func newHeadLog() *headLog { return &headLog{Log: reflextest.NewLog()} }

func (l *headLog) Append(events ...reflex.Event) {
	ids := l.Log.Append(events...)
	if len(ids) > 0 {
		n, _ := strconv.ParseInt(ids[len(ids)-1], 10, 64)
		l.head.Store(n)
	}
}

func (l *headLog) Stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	cl, err := l.Log.Stream(ctx, after, opts...)
	if err != nil {
		return nil, err
	}
	return &headClient{StreamClient: cl, l: l}, nil
}

type headClient struct {
	reflex.StreamClient
	l *headLog
}

func (c *headClient) Head() (string, bool) {
	n := c.l.head.Load()
	return strconv.FormatInt(n, 10), n > 0
}

// signals records the lifecycle signals of a Server, checking the rules
// of WithPeerHook as they come.
type signals struct {
	t      *testing.T
	srv    func() *reflex.Server
	mu     sync.Mutex
	all    []reflex.PeerSignal
	active map[uint64]bool // started, not ended
	ended  chan reflex.PeerSignal
}

func newSignals(t *testing.T) *signals {
	return &signals{t: t, active: map[uint64]bool{}, ended: make(chan reflex.PeerSignal, 1000)}
}

func (s *signals) hook(sig reflex.PeerSignal) {
	inPeers := false
	if s.srv != nil {
		for _, p := range s.srv().Peers() {
			if p.ID == sig.Peer.ID {
				inPeers = true
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, sig)
	switch sig.Kind {
	case reflex.PeerStarted:
		if _, seen := s.active[sig.Peer.ID]; seen {
			s.t.Errorf("stream %d started twice", sig.Peer.ID)
		}
		if s.srv != nil && !inPeers {
			s.t.Errorf("stream %d started but not in Peers", sig.Peer.ID)
		}
		s.active[sig.Peer.ID] = true
	case reflex.PeerEnded:
		if !s.active[sig.Peer.ID] {
			s.t.Errorf("stream %d ended without being started, or twice", sig.Peer.ID)
		}
		if inPeers {
			s.t.Errorf("stream %d ended but still in Peers", sig.Peer.ID)
		}
		s.active[sig.Peer.ID] = false
		s.ended <- sig
	default:
		s.t.Errorf("signal of kind %v", sig.Kind)
	}
}

// awaitEnded returns the next PeerEnded signal.
func (s *signals) awaitEnded(t *testing.T) reflex.PeerSignal {
	t.Helper()
	select {
	case sig := <-s.ended:
		return sig
	case <-time.After(time.Minute): // hang guard
		t.Fatal("no PeerEnded signal within a minute")
		return reflex.PeerSignal{}
	}
}

// identityKey is the context key an authentication interceptor of the
// tests puts the caller's identity under.
type identityKey struct{}

// authInterceptor authenticates every stream call as the value of its
// "user" metadata, as an authentication interceptor would, and hands it on
// in the context.
func authInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, authStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), identityKey{}, "user-42")})
}

func identityFromContext(ctx context.Context) string {
	s, _ := ctx.Value(identityKey{}).(string)
	return s
}

// readAll reads a stream to its head and returns the IDs received.
func readAll(t *testing.T, stream reflex.StreamFunc, after string) []string {
	t.Helper()
	sc, err := stream(t.Context(), after, reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		e, err := sc.Recv()
		if reflex.IsHeadReachedErr(err) {
			return ids
		}
		if err != nil {
			t.Fatalf("Recv after %d events: %v", len(ids), err)
		}
		ids = append(ids, e.ID)
	}
}

// TestGRPCPeersLifecycle serves a log to several clients over loopback:
// each stream appears in Peers and in the hook's PeerStarted signal with
// its consumer name, identity and address, and disappears with a
// PeerEnded signal whose counters match what its client received.
func TestGRPCPeersLifecycle(t *testing.T) {
	l := newHeadLog()
	appendTypes(l, 300)
	sigs := newSignals(t)
	rs := reflex.NewServerWithOptions(reflex.WithPeerHook(sigs.hook), reflex.WithPeerIdentity(identityFromContext))
	sigs.srv = func() *reflex.Server { return rs }
	conn := dial(t, serveWith(t, rs, l.Stream, grpc.ChainStreamInterceptor(authInterceptor)))

	// A live client that stays open.
	live := reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName("live"))
	lc, err := live(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		if _, err := lc.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	peers := rs.Peers()
	if len(peers) != 1 {
		t.Fatalf("Peers = %+v, want the live stream", peers)
	}
	p := peers[0]
	if p.ConsumerName != "live" || p.Identity != "user-42" || p.Method != "StreamBatch" || p.ID == 0 ||
		!strings.HasPrefix(p.Addr, "127.0.0.1:") || p.Started.IsZero() || p.After != "" || p.FromHead {
		t.Errorf("live peer = %+v", p)
	}

	// Clients of three names that read to the head, one after the other,
	// from different cursors, by batches and one event per message.
	for i, tc := range []struct {
		name   string
		after  string
		stream reflex.StreamFunc
		method string
	}{
		{"a", "", reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName("a")), "StreamBatch"},
		{"b", "100", reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName("b")), "StreamBatch"},
		{"", "250", singleClient(conn), "Stream"},
	} {
		got := readAll(t, tc.stream, tc.after)
		sig := sigs.awaitEnded(t)
		q := sig.Peer
		if !reflex.IsHeadReachedErr(sig.Err) {
			t.Errorf("client %d: PeerEnded.Err = %v, want ErrHeadReached", i, sig.Err)
		}
		if q.ConsumerName != tc.name || q.After != tc.after || q.Method != tc.method || q.Identity != "user-42" {
			t.Errorf("client %d: ended peer = %+v", i, q)
		}
		if q.EventsSent != int64(len(got)) || q.BytesSent <= int64(len(got))*10 || q.SendErrors != 0 {
			t.Errorf("client %d received %d events; server counted %d sent, %d bytes, %d send errors", i, len(got), q.EventsSent, q.BytesSent, q.SendErrors)
		}
		if q.Position != "300" || q.Head != "300" || q.Lag != 0 {
			t.Errorf("client %d: position %q head %q lag %d, want 300 300 0", i, q.Position, q.Head, q.Lag)
		}
	}
	if got := len(rs.Peers()); got != 1 {
		t.Errorf("%d peers after the clients to the head ended, want 1", got)
	}

	_ = lc.(interface{ Close() error }).Close()
	sig := sigs.awaitEnded(t)
	if sig.Peer.ID != p.ID || sig.Peer.EventsSent != 300 {
		t.Errorf("live stream ended as %+v, want stream %d with 300 events sent", sig.Peer, p.ID)
	}
	if got := rs.Peers(); len(got) != 0 {
		t.Errorf("Peers after every client ended = %+v", got)
	}
	sigs.mu.Lock()
	defer sigs.mu.Unlock()
	if len(sigs.all) != 8 {
		t.Errorf("%d signals, want 8 (4 streams started and ended)", len(sigs.all))
	}
}

func appendTypes(l interface{ Append(...reflex.Event) }, n int) {
	events := make([]reflex.Event, n)
	for i := range events {
		events[i] = reflex.Event{ForeignID: strconv.Itoa(i), Type: grpcType(1 + i%50), MetaData: []byte("some metadata " + strconv.Itoa(i))}
	}
	l.Append(events...)
}

// TestGRPCPeerLagAndMetrics holds a stream back at event 5 of 10 (its
// source blocks): the Server reports a lag of 5 for it, in Peers and in
// reflex_server_peer_lag_events of its consumer name.
func TestGRPCPeerLagAndMetrics(t *testing.T) {
	l := newHeadLog()
	appendTypes(l, 10)
	release := make(chan struct{})
	l.SetRecvHook(func(ctx context.Context, e *reflex.Event) error {
		if e.IDInt() <= 5 {
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	rs := reflex.NewServer()
	conn := dial(t, serveWith(t, rs, l.Stream))
	name := uniqueName(t)
	sc, err := reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName(name))(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := sc.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	var p reflex.Peer
	err = testguard.Poll(time.Minute, time.Millisecond, "the server's position", func() (int64, bool, error) {
		peers := rs.Peers()
		if len(peers) != 1 {
			return 0, false, fmt.Errorf("Peers = %+v", peers)
		}
		p = peers[0]
		return p.EventsSent, p.Position == "5", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Head != "10" || p.Lag != 5 || p.EventsSent != 5 {
		t.Errorf("peer = %+v, want head 10, lag 5, 5 events sent", p)
	}
	if got := gatherByName(t, "reflex_server_peer_lag_events")[name]; got != 5 {
		t.Errorf("reflex_server_peer_lag_events{consumer_name=%q} = %v, want 5", name, got)
	}
	if got := gatherByName(t, "reflex_server_peer_streams")[name]; got != 1 {
		t.Errorf("reflex_server_peer_streams{consumer_name=%q} = %v, want 1", name, got)
	}
	if got := gatherByName(t, "reflex_server_peer_events_sent_total")[name]; got != 5 {
		t.Errorf("reflex_server_peer_events_sent_total{consumer_name=%q} = %v, want 5", name, got)
	}
	close(release)
	for range 5 {
		if _, err := sc.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if h, ok := sc.(reflex.HeadReporter).Head(); !ok || h != "10" {
		t.Errorf("client Head() = %q, %v; want the head the server sent, 10", h, ok)
	}
	_ = sc.(interface{ Close() error }).Close()
	err = testguard.Poll(time.Minute, time.Millisecond, "the stream ending", func() (int64, bool, error) {
		return 0, len(rs.Peers()) == 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gatherByName(t, "reflex_server_peer_lag_events")[name]; ok {
		t.Errorf("reflex_server_peer_lag_events{consumer_name=%q} is still there after its only stream ended", name)
	}
	if got := gatherByName(t, "reflex_server_peer_streams")[name]; got != 0 {
		t.Errorf("reflex_server_peer_streams{consumer_name=%q} = %v, want 0", name, got)
	}
}

// gatherByName returns the values of a metric family by consumer_name.
func gatherByName(t *testing.T, family string) map[string]float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			name := ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "consumer_name" {
					name = lp.GetValue()
				}
			}
			switch {
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// killableDialer dials loopback and keeps the connections, so that a
// test can cut them as if the client process were killed (no GOAWAY, no
// RST_STREAM: the socket just closes).
type killableDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (d *killableDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err == nil {
		d.mu.Lock()
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	return c, err
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// TestGRPCPeerKilledClientEndsRecord cuts the connection of a client in
// the middle of a stream: its record ends, with a PeerEnded signal.
func TestGRPCPeerKilledClientEndsRecord(t *testing.T) {
	l := newHeadLog()
	appendTypes(l, 10)
	sigs := newSignals(t)
	rs := reflex.NewServerWithOptions(reflex.WithPeerHook(sigs.hook))
	sigs.srv = func() *reflex.Server { return rs }
	addr := serveWith(t, rs, l.Stream)
	var d killableDialer
	conn := dial(t, addr, grpc.WithContextDialer(d.dial))
	sc, err := reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName("doomed"))(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := rs.Peers(); len(got) != 1 || got[0].ConsumerName != "doomed" {
		t.Fatalf("Peers = %+v, want the doomed stream", got)
	}
	d.kill()
	sig := sigs.awaitEnded(t)
	if sig.Peer.ConsumerName != "doomed" || sig.Err == nil || reflex.IsHeadReachedErr(sig.Err) {
		t.Errorf("PeerEnded = %+v, want the doomed stream with the error of its call", sig)
	}
	if got := rs.Peers(); len(got) != 0 {
		t.Errorf("Peers after the client was killed = %+v", got)
	}
}

// TestGRPCPeerMetricsBounded opens 100 streams from 100 connections under
// 3 consumer names: the per-consumer series are those 3 names, whatever
// the addresses.
func TestGRPCPeerMetricsBounded(t *testing.T) {
	l := newHeadLog()
	appendTypes(l, 3)
	rs := reflex.NewServer()
	addr := serveWith(t, rs, l.Stream)
	base := uniqueName(t)
	names := []string{base + "/x", base + "/y", base + "/z"}
	before := gatherByName(t, "reflex_server_peer_streams")
	const clients = 100
	for i := range clients {
		conn := dial(t, addr)
		sc, err := reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName(names[i%3]))(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Recv(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sc.(interface{ Close() error }).Close() })
	}
	after := gatherByName(t, "reflex_server_peer_streams")
	var added []string
	for label := range after {
		if _, ok := before[label]; !ok {
			added = append(added, label)
		}
	}
	slices.Sort(added)
	if !slices.Equal(added, names) {
		t.Errorf("new label values %q, want %q", added, names)
	}
	for i, n := range names {
		want := float64(clients / 3)
		if i < clients%3 {
			want++
		}
		if after[n] != want {
			t.Errorf("reflex_server_peer_streams{consumer_name=%q} = %v, want %v", n, after[n], want)
		}
	}
	for label := range after {
		if strings.Contains(label, "127.0.0.1") {
			t.Errorf("a label value holds an address: %q", label)
		}
	}
	if got := len(rs.Peers()); got != clients {
		t.Errorf("%d peers, want %d", got, clients)
	}
}

// oldServer makes a server behave as one built before StreamRequest.types
// and consumer_name: an interceptor drops them from the request before
// the handler sees it.
var oldServer = grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, forgetfulStream{ss})
})

type forgetfulStream struct{ grpc.ServerStream }

func (f forgetfulStream) RecvMsg(m any) error {
	err := f.ServerStream.RecvMsg(m)
	if req, ok := m.(*reflexpb.StreamRequest); ok {
		req.Types, req.ConsumerName = nil, ""
	}
	return err
}

// filtered is a client that does not know server-side filtering: it
// receives every event and keeps those of the types, as a consumer's
// event filter would.
func filtered(stream reflex.StreamFunc, types ...int) reflex.StreamFunc {
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		cl, err := stream(ctx, after, opts...)
		if err != nil {
			return nil, err
		}
		return reflex.StreamClient(filterClient{cl, types}), nil
	}
}

type filterClient struct {
	reflex.StreamClient
	types []int
}

func (c filterClient) Recv() (*reflex.Event, error) {
	for {
		e, err := c.StreamClient.Recv()
		if err != nil || slices.Contains(c.types, e.Type.ReflexType()) {
			return e, err
		}
	}
}

// TestGRPCFilterCompatibility streams 2000 events of 50 types to clients
// that want types 7 and 31: new clients (WithGRPCEventTypes) and old ones
// (which filter themselves), against new servers and servers that ignore
// the request's types, by batches and one event per message. Every pairing
// delivers the same events.
func TestGRPCFilterCompatibility(t *testing.T) {
	l := newHeadLog()
	appendTypes(l, 2000)
	var want []string
	for _, e := range l.Events() {
		if ty := e.Type.ReflexType(); ty == 7 || ty == 31 {
			want = append(want, e.ID)
		}
	}
	types := reflex.WithGRPCEventTypes(grpcType(31), grpcType(7))
	for _, srv := range []struct {
		name string
		opts []grpc.ServerOption
	}{{"NewServer", nil}, {"OldServer", []grpc.ServerOption{oldServer}}} {
		for _, cl := range []struct {
			name   string
			single bool // the server has no StreamBatch: one event per message
			stream func(conn *grpc.ClientConn) reflex.StreamFunc
		}{
			{"NewBatchClient", false, func(conn *grpc.ClientConn) reflex.StreamFunc { return reflex.GRPCStreamFunc(conn, types) }},
			{"NewFallbackClient", true, func(conn *grpc.ClientConn) reflex.StreamFunc { return reflex.GRPCStreamFunc(conn, types) }},
			{"OldBatchClient", false, func(conn *grpc.ClientConn) reflex.StreamFunc { return filtered(reflex.GRPCStreamFunc(conn), 7, 31) }},
			{"OldSingleClient", false, func(conn *grpc.ClientConn) reflex.StreamFunc { return filtered(singleClient(conn), 7, 31) }},
		} {
			t.Run(srv.name+"/"+cl.name, func(t *testing.T) {
				opts := srv.opts
				if cl.single {
					opts = append(slices.Clone(opts), grpc.ChainStreamInterceptor(noBatchInterceptor))
				}
				stream := cl.stream(dial(t, serveWith(t, reflex.NewServer(), l.Stream, opts...)))
				for _, after := range []string{"", "1000"} {
					got := readAll(t, stream, after)
					w := want
					if after != "" {
						w = slices.DeleteFunc(slices.Clone(want), func(id string) bool { n, _ := strconv.Atoi(id); return n <= 1000 })
					}
					if !slices.Equal(got, w) {
						t.Errorf("after %q: received %d events %v..., want %d", after, len(got), got[:min(len(got), 5)], len(w))
					}
				}
			})
		}
	}
}

// noBatchInterceptor answers StreamBatch with Unimplemented, as servers
// built before it do.
func noBatchInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod == reflexpb.Reflex_StreamBatch_FullMethodName {
		return status.Error(codes.Unimplemented, "no StreamBatch here")
	}
	return h(srv, ss)
}

// wireCounter is a gRPC stats handler that counts the bytes of the
// messages sent, as they go on the wire.
type wireCounter struct{ n atomic.Int64 }

func (c *wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *wireCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.OutPayload); ok {
		c.n.Add(int64(p.WireLength))
	}
}
func (c *wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *wireCounter) HandleConn(context.Context, stats.ConnStats)                       {}

// TestGRPCFilterBytesOnTheWire measures the bytes the server writes for a
// client that wants 1 type in 50, with and without server-side filtering.
func TestGRPCFilterBytesOnTheWire(t *testing.T) {
	l := newHeadLog()
	appendTypes(l, 20000)
	var wire [2]int64
	for i, srv := range []struct {
		name string
		opts []grpc.ServerOption
	}{{"filtered by the server", nil}, {"filtered by the client", []grpc.ServerOption{oldServer}}} {
		var counter wireCounter
		conn := dial(t, serveWith(t, reflex.NewServer(), l.Stream, append(srv.opts, grpc.StatsHandler(&counter))...))
		got := readAll(t, reflex.GRPCStreamFunc(conn, reflex.WithGRPCEventTypes(grpcType(7))), "")
		if len(got) != 400 {
			t.Fatalf("%s: received %d events, want 400", srv.name, len(got))
		}
		wire[i] = counter.n.Load()
		t.Logf("%s: %d bytes on the wire for 400 of 20000 events", srv.name, wire[i])
	}
	if wire[0]*10 > wire[1] {
		t.Errorf("server-side filtering sent %d bytes, client-side %d: want at least 10 times fewer", wire[0], wire[1])
	}
}
