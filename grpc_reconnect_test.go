package reflex_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

// faultyPeer serves a log on a fixed loopback address through a
// reflex.Server whose stream calls fail with Unavailable while failing
// is positive (decrementing it), and records when each call came. It can
// be stopped and started again on the same address.
type faultyPeer struct {
	t    *testing.T
	log  *reflextest.Log
	addr string

	failing atomic.Int64

	mu    sync.Mutex
	calls []time.Time // every stream call, failed or not
	fails []time.Time // the calls failed on purpose
	rs    *reflex.Server
	gs    *grpc.Server
	done  chan struct{}
}

func (p *faultyPeer) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	now := time.Now()
	p.mu.Lock()
	p.calls = append(p.calls, now)
	p.mu.Unlock()
	if p.failing.Add(-1) >= 0 {
		p.mu.Lock()
		p.fails = append(p.fails, now)
		p.mu.Unlock()
		return status.Error(codes.Unavailable, "injected fault")
	}
	return h(srv, ss)
}

// start serves on p.addr (a new port the first time).
func (p *faultyPeer) start() {
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Errorf("listen %s: %v", addr, err)
		return
	}
	p.addr = lis.Addr().String()
	rs := reflex.NewServer()
	gs := grpc.NewServer(grpc.ChainStreamInterceptor(p.intercept))
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(unbuffered(p.log.Stream))) // read ahead: the hook may block
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	p.mu.Lock()
	p.rs, p.gs, p.done = rs, gs, done
	p.mu.Unlock()
}

// stop stops serving; it is a no-op when stopped.
func (p *faultyPeer) stop() {
	p.mu.Lock()
	rs, gs, done := p.rs, p.gs, p.done
	p.rs = nil
	p.mu.Unlock()
	if rs == nil {
		return
	}
	rs.Stop()
	gs.Stop()
	<-done
}

func (p *faultyPeer) failTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.fails...)
}

// TestGRPCReconnectUnderRunForever runs a consumer under
// rpatterns.RunForeverCtx with a resilient client against a peer that
// fails its first 6 stream calls, and is later stopped and started again
// on the same address (failing 2 more calls): the consumer backs off
// (its attempts are spaced by the backoff, then by the open breaker), the
// breaker opens and half-opens, and after the peer is back every event
// has been consumed exactly once, in order.
func TestGRPCReconnectUnderRunForever(t *testing.T) {
	const n = 3000
	l := reflextest.NewLog()
	appendN(l, n)
	p := &faultyPeer{t: t, log: l}
	p.failing.Store(6)
	p.start()
	t.Cleanup(p.stop)

	const (
		minBackoff = 2 * time.Millisecond
		openFor    = 40 * time.Millisecond
		threshold  = 3
	)
	var (
		mu     sync.Mutex
		states []reflex.BreakerState
		opened = make(chan struct{}, 1000) // a signal per opening
	)
	onState := func(s reflex.BreakerState) {
		mu.Lock()
		states = append(states, s)
		mu.Unlock()
		if s == reflex.BreakerOpen {
			opened <- struct{}{}
		}
	}
	// gRPC's own reconnection backoff, shortened so that the connection
	// comes back soon after the peer.
	conn := dial(t, p.addr, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 5 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 50 * time.Millisecond},
		MinConnectTimeout: time.Second,
	}))
	stream := reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName("resilient"), reflex.WithGRPCReconnect(reflex.ReconnectPolicy{
		Peer: "faulty-" + t.Name(), MinBackoff: minBackoff, MaxBackoff: 4 * minBackoff,
		FailureThreshold: threshold, OpenFor: openFor,
		OnState: onState,
	}))

	ctx, cancel := context.WithCancel(t.Context())
	var (
		got     []string
		dups    int
		outOf   int
		outage  sync.Once
		restart = make(chan struct{})
	)
	consumer := reflex.NewConsumer("resilient", func(ctx context.Context, e *reflex.Event) error {
		if want := strconv.Itoa(len(got) + 1); e.ID != want {
			if e.IDInt() <= int64(len(got)) {
				dups++
			} else {
				outOf++
			}
		}
		got = append(got, e.ID)
		if len(got) == n/3 {
			outage.Do(func() {
				// The peer goes away; it comes back, failing its first
				// 2 calls, once the client has felt it (see below).
				p.stop()
				close(restart)
			})
		}
		if len(got) == n {
			cancel()
		}
		return nil
	})
	// The peer holds the events after n/3 back until the outage, so that
	// the client has not read them ahead.
	l.SetRecvHook(func(ctx context.Context, e *reflex.Event) error {
		if e.IDInt() <= n/3 {
			return nil
		}
		select {
		case <-restart:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	store := reflextest.NewCursorStore()
	var wg sync.WaitGroup
	wg.Go(func() {
		<-restart
		// The breaker opened (several times) on the first faults, before
		// any event was consumed; wait until it opens on the outage
		// (calls fail with Unavailable while the port is closed), then
		// serve again.
		for drained := false; !drained; {
			select {
			case <-opened:
			default:
				drained = true
			}
		}
		select {
		case <-opened:
		case <-ctx.Done():
			return
		}
		p.failing.Store(2)
		p.start()
	})
	err := rpatterns.RunForeverCtx(ctx, nil, reflex.NewSpec(stream, store, consumer))
	wg.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("RunForeverCtx = %v, want context.Canceled", err)
	}
	if len(got) != n || dups != 0 || outOf != 0 {
		t.Errorf("consumed %d events (%d duplicates, %d out of order), want %d once each in order", len(got), dups, outOf, n)
	}
	if c := store.Cursor("resilient"); c != strconv.Itoa(n) {
		t.Errorf("cursor %q, want %d", c, n)
	}

	// The first 6 calls failed: 3 in a row open the breaker, then each
	// probe came after the breaker had been open for at least half of
	// openFor (its jitter), never in a tight loop.
	fails := p.failTimes()
	if len(fails) != 8 {
		t.Fatalf("%d calls failed on purpose, want 8", len(fails))
	}
	for i := 1; i < 6; i++ {
		gap := fails[i].Sub(fails[i-1])
		floor := minBackoff / 2
		if i >= threshold {
			floor = openFor / 2
		}
		if gap < floor {
			t.Errorf("failed calls %d and %d were %v apart, want at least %v", i, i+1, gap, floor)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if countOpen(states) < 3 || states[len(states)-1] != reflex.BreakerClosed || !containsState(states, reflex.BreakerHalfOpen) {
		t.Errorf("breaker states %v: want it opened, half-opened and ended closed", states)
	}
}

func countOpen(states []reflex.BreakerState) int {
	n := 0
	for _, s := range states {
		if s == reflex.BreakerOpen {
			n++
		}
	}
	return n
}

func containsState(states []reflex.BreakerState, s reflex.BreakerState) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}
