//go:build unix

package faulttest_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/faulttest"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// grpcServer serves an rsql stream with reflex.Server.ReflexServer on a
// fixed loopback port, and can stop and start again on it.
type grpcServer struct {
	port int
	sFn  reflex.StreamFunc

	mu   sync.Mutex // protects the following fields
	rs   *reflex.Server
	gs   *grpc.Server
	done chan struct{} // closed when Serve returns
}

func startGRPCServer(t *testing.T, sFn reflex.StreamFunc) *grpcServer {
	t.Helper()
	s := &grpcServer{port: faulttest.FreePort(t), sFn: sFn}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *grpcServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// start listens on the server's port (waiting while something else holds
// it), serves, and returns when it listened: from then on it accepts.
func (s *grpcServer) start(t *testing.T) time.Time {
	t.Helper()
	var ln net.Listener
	waitFor(t, "listening on port "+strconv.Itoa(s.port), func() (int64, bool) {
		l, err := net.Listen("tcp", s.addr())
		if err != nil {
			return 0, false
		}
		ln = l
		return 0, true
	})
	at := time.Now()
	rs, gs, done := reflex.NewServer(), grpc.NewServer(), make(chan struct{})
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(s.sFn))
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	s.mu.Lock()
	s.rs, s.gs, s.done = rs, gs, done
	s.mu.Unlock()
	return at
}

// stop stops the server as a service shutting down does: the reflex
// streams end (ErrStopped), then a graceful gRPC stop. It is idempotent.
func (s *grpcServer) stop() {
	s.mu.Lock()
	rs, gs, done := s.rs, s.gs, s.done
	s.rs, s.gs, s.done = nil, nil, nil
	s.mu.Unlock()
	if rs == nil {
		return
	}
	rs.Stop()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(time.Minute): // hang guard
		gs.Stop()
		<-stopped
	}
	<-done
}

// dialGRPC connects to addr as a consumer service would, with a
// connection backoff of at most 1 s (gRPC's default grows to 2 minutes,
// which no library can shorten for its user).
func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// grpcConsumer is a consumer of a gRPC stream under RunForever, with its
// cursors in an asynchronous cursors table.
type grpcConsumer struct {
	name    string
	cursors *rsql.CursorsTable
	r       *runner
}

func startGRPCConsumer(t *testing.T, l *ledger, conn *grpc.ClientConn, db *sql.DB) *grpcConsumer {
	t.Helper()
	return startGRPCConsumerNamed(t, l, conn, db, uniqueName("grpc-consumer"))
}

func startGRPCConsumerNamed(t *testing.T, l *ledger, conn *grpc.ClientConn, db *sql.DB, name string) *grpcConsumer {
	t.Helper()
	c := &grpcConsumer{name: name, cursors: rsql.NewCursorsTable("cursors")}
	t.Cleanup(func() { _ = c.cursors.Close() })
	spec := reflex.NewSpec(
		spyStream(l, reflex.GRPCStreamFunc(conn)),
		spyStore{CursorStore: c.cursors.ToStore(db), l: l},
		&consumer{name: c.name, l: l},
	)
	c.r = startRunner(t, spec)
	return c
}

// serverStream returns the stream a server serves: the events table of
// db, with gap filling.
func serverStream(t *testing.T, db *sql.DB, opts ...rsql.EventsOption) reflex.StreamFunc {
	t.Helper()
	events := rsql.NewEventsTable("events", opts...)
	if err := rsql.FillGaps(db, events); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rsql.StopFillingGaps(context.Background(), events) })
	return events.ToStream(db)
}

// TestGRPCFaults runs a consumer of a real gRPC server (an rsql stream
// served by reflex.Server) through a proxy, while events are produced
// every 5 ms, and injects faults twice each: a server restart (stopped for
// 1.5 s then 4 s, then started on the same port), a cut of every
// connection, and a partition (1.5 s, then 4 s). After each fault: the first new event within
// recoveryTarget of the server accepting again (restart), of the cut (the
// server stays reachable), or of the partition healing; the stored cursor
// not ahead of consumption. At the end: every committed event consumed,
// in order within each run, no noop, a bounded shutdown.
func TestGRPCFaults(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, i int, srv *grpcServer, px *faulttest.Proxy) time.Time
	}{
		{"restart", func(t *testing.T, i int, srv *grpcServer, _ *faulttest.Proxy) time.Time {
			srv.stop()
			time.Sleep(outage(i)) // the outage itself
			return srv.start(t)
		}},
		{"cut", func(t *testing.T, _ int, _ *grpcServer, px *faulttest.Proxy) time.Time {
			if n := px.Cut(); n == 0 {
				t.Error("Cut found no connection to cut")
			}
			return time.Now()
		}},
		{"blackhole", func(t *testing.T, i int, _ *grpcServer, px *faulttest.Proxy) time.Time {
			px.Blackhole()
			time.Sleep(outage(i)) // the partition itself
			px.Heal()
			return time.Now()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newDBSetup(t)
			l := newLedger()
			srv := startGRPCServer(t, serverStream(t, s.db))
			px := faulttest.NewProxy(t, srv.addr())
			c := startGRPCConsumer(t, l, dialGRPC(t, px.Addr()), s.db)
			p := startProducer(t, l, s.db, s.events, produceEvery)
			t.Cleanup(px.Heal) // before the consumer's cleanup

			for i := 1; i <= faults; i++ {
				waitDelivered(t, l, l.delivered(), 300)
				start := time.Now()
				reachable := tc.fault(t, i, srv, px)
				recovery(t, l, fmt.Sprintf("fault %d", i), start, reachable)
				c.checkStored(t, s.db, l, fmt.Sprintf("after fault %d", i))
			}
			p.stop()
			waitAllConsumed(t, l)
			shutdown(t, c.r, c.cursors, nil)
			c.checkStored(t, s.db, l, "after shutdown")
			l.checkFinal(t)
		})
	}
}

func (c *grpcConsumer) checkStored(t *testing.T, db *sql.DB, l *ledger, what string) {
	t.Helper()
	l.checkCursor(t, what, storedCursor(t, db, "cursors", c.name))
}

// countingStream counts, on the server, the streams open and the events
// read from their source. Its clients keep the source's optional
// interfaces (reflex.Buffered, io.Closer), which decide how the server
// batches.
type countingStream struct {
	open  atomic.Int64
	total atomic.Int64
	reads atomic.Int64
}

func (cs *countingStream) wrap(sFn reflex.StreamFunc) reflex.StreamFunc {
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		cl, err := sFn(ctx, after, opts...)
		if err != nil {
			return nil, err
		}
		cs.open.Add(1)
		cs.total.Add(1)
		return &countedClient{cl: cl, cs: cs}, nil
	}
}

type countedClient struct {
	cl   reflex.StreamClient
	cs   *countingStream
	once sync.Once
}

func (c *countedClient) Recv() (*reflex.Event, error) {
	e, err := c.cl.Recv()
	if err == nil {
		c.cs.reads.Add(1)
	}
	return e, err
}

func (c *countedClient) Buffered() int {
	if b, ok := c.cl.(reflex.Buffered); ok {
		return b.Buffered()
	}
	return 0
}

func (c *countedClient) Close() error {
	c.once.Do(func() { c.cs.open.Add(-1) })
	if cl, ok := c.cl.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

const (
	// stalledChildEnv, when set, makes TestGRPCStalledClients run as a
	// client process that reads some events of a stream and then stops
	// reading it (see stalledChild).
	stalledChildEnv = "FAULTTEST_STALLED_CLIENT"
	// stalledStreamBudget bounds the server memory one stalled stream may
	// hold (with this test's 1 KiB events): the per-stream buffer the
	// server bounds (reflex.DefaultStreamBuffer, 1 MiB); what gRPC holds
	// for a client that stopped reading (messages of up to 256 KiB and
	// the frames queued behind them: about 2 MiB measured); and the
	// source's rows read ahead (rsql bounds a catch-up load by bytes: the
	// batch being handed out and one read ahead, at most 2 MiB). Before
	// these bounds a stalled stream held about 15 MiB.
	stalledStreamBudget = 6 << 20
	// A stalled client reads stalledReads events (a client that stopped
	// reading after a while: its source reads bigger chunks by then), the
	// i-th (from 0) starting after event i*stalledSpacing, so that no two
	// hold the same events (which a source may share between its streams);
	// the backlog of events with stalledMetaSize bytes of metadata is
	// more than any of them can buffer.
	stalledReads, stalledSpacing, stalledMetaSize = 6000, 2000, 1024
	stalledClients                                = 8 // 4 StreamBatch, 4 Stream
	stalledBacklog                                = (stalledClients-1)*stalledSpacing + stalledReads + 12000
	// quiet is how long the server's reads must stand still before the
	// stalled streams are taken to be full.
	quiet = time.Second
)

// liveHeap returns the live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// startStalledClient starts a client process that streams addr's events
// with rpc after cursor after, reads stalledReads of them and stops
// reading, and returns a function that ends it (closes its stdin and
// waits). It is ended (killed if need be) when the test ends, and ends
// itself if the test binary dies (its stdin closes).
func startStalledClient(t *testing.T, addr, rpc string, after int) (end func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGRPCStalledClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %s", stalledChildEnv, rpc, after, addr))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	end = func() {
		once.Do(func() {
			stdin.Close()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		end()
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "stalled" {
			return end
		}
	}
	t.Fatalf("stalled client did not read its %d events (%v)", stalledReads, sc.Err())
	return nil
}

// stalledChild is the client process of startStalledClient: arg is the
// RPC ("StreamBatch", as reflex.GRPCStreamFunc uses, or "Stream", one
// event per message, as clients built before batches), the cursor and the
// address.
func stalledChild(t *testing.T, arg string) {
	f := strings.Fields(arg)
	if len(f) != 3 {
		t.Fatalf("%s=%q: want RPC, cursor and address", stalledChildEnv, arg)
	}
	rpc, after, addr := f[0], f[1], f[2]
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sFn := reflex.GRPCStreamFunc(conn)
	if rpc == "Stream" {
		rc := reflexpb.NewReflexClient(conn)
		sFn = reflex.WrapStreamPB(func(ctx context.Context, req *reflexpb.StreamRequest) (reflex.StreamClientPB, error) {
			return rc.Stream(ctx, req)
		})
	}
	cl, err := sFn(t.Context(), after)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < stalledReads; i++ {
		if _, err := cl.Recv(); err != nil {
			t.Fatalf("stalled client: Recv %d: %v", i, err)
		}
	}
	fmt.Println("stalled")
	_, _ = io.Copy(io.Discard, os.Stdin) // read no more: until the test closes stdin or dies
}

// waitQuiet waits until n has not changed for quiet (the streams are
// full), failing after a hang guard if it keeps changing.
func waitQuiet(t *testing.T, what string, n func() int64) {
	t.Helper()
	deadline := time.Now().Add(stallGuard) // a hang guard: it normally takes a second or two
	last, since := n(), time.Now()
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for range tk.C {
		if v := n(); v != last {
			last, since = v, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never stood still for %v", what, quiet)
		}
	}
}

// TestGRPCStalledClients streams from clients that read 6000 events and
// then stop reading (in other processes, so that only the server's memory
// is in this one) over a backlog of events with 1 KiB of metadata, each
// client 2000 events after the previous one, and measures the live heap
// the server holds per stalled stream (the growth from the second to the
// fourth stream, past what the first ones share) against
// stalledStreamBudget, for StreamBatch and for Stream clients. Then a slow
// consumer (through a proxy adding 20 ms of latency each way), starting at
// the head, consumes every event produced while the stalled streams stay
// open, and the server ends the stalled streams once their clients go.
func TestGRPCStalledClients(t *testing.T) {
	if arg := os.Getenv(stalledChildEnv); arg != "" {
		stalledChild(t, arg)
		return
	}
	skipShort(t)
	s := newDBSetup(t)
	insertBacklog(t, newLedger(), s.db, s.events, stalledBacklog, stalledMetaSize)
	var cs countingStream
	srv := startGRPCServer(t, cs.wrap(serverStream(t, s.db, rsql.WithEventMetadataField("metadata"))))

	var ends []func()
	for _, rpc := range []string{"StreamBatch", "Stream"} {
		h0 := liveHeap()
		first := len(ends)
		heap := func(n int) uint64 {
			t.Helper()
			for len(ends)-first < n {
				ends = append(ends, startStalledClient(t, srv.addr(), rpc, len(ends)*stalledSpacing))
			}
			waitFor(t, "stalled streams opened", func() (int64, bool) { o := cs.open.Load(); return o, o == int64(len(ends)) })
			waitQuiet(t, "the server's reads", cs.reads.Load)
			return liveHeap()
		}
		reads0 := cs.reads.Load()
		h2 := heap(2)
		reads := (cs.reads.Load() - reads0) / 2
		h4 := heap(4)
		per := (int64(h4) - int64(h2)) / 2
		t.Logf("RESULT %s: %s: live heap %.1f MiB before, %.1f MiB with 2 stalled streams, %.1f MiB with 4: %.2f MiB per stalled stream (%d events of %d B metadata read from the source per stream, %d received by the client)",
			t.Name(), rpc, mib(h0), mib(h2), mib(h4), float64(per)/(1<<20), reads, stalledMetaSize, stalledReads)
		if per > stalledStreamBudget {
			t.Errorf("%s: a stalled stream holds %.1f MiB of server memory, want <= %.1f MiB", rpc, float64(per)/(1<<20), float64(stalledStreamBudget)/(1<<20))
		}
	}

	// A slow consumer, from the head, is served in full meanwhile.
	l := newLedger()
	px := faulttest.NewProxy(t, srv.addr())
	px.SetLatency(20 * time.Millisecond)
	conn := dialGRPC(t, px.Addr())
	name := uniqueName("slow-consumer")
	if _, err := s.db.ExecContext(t.Context(), "INSERT INTO cursors (id, last_event_id, updated_at) VALUES (?, ?, NOW(6))", name, stalledBacklog); err != nil {
		t.Fatal(err)
	}
	c := startGRPCConsumerNamed(t, l, conn, s.db, name)
	p := startProducer(t, l, s.db, s.events, produceEvery)
	waitDelivered(t, l, 0, 300)
	p.stop()
	waitAllConsumed(t, l)
	shutdown(t, c.r, c.cursors, nil)
	c.checkStored(t, s.db, l, "after shutdown")
	l.checkFinal(t)

	// The server lets go of the streams of clients that are gone.
	for _, end := range ends {
		end()
	}
	waitFor(t, "the server closing the streams of gone clients", func() (int64, bool) {
		o := cs.open.Load()
		return o, o == 0
	})
	t.Logf("RESULT %s: live heap %.1f MiB once the stalled clients are gone", t.Name(), mib(liveHeap()))
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
