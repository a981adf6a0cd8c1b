package faulttest_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/faulttest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
)

// echoServer is a TCP target that sends back what it receives, prefixed
// per connection by nothing: it copies its input to its output, and closes
// its side once the input ends.
type echoServer struct {
	ln       net.Listener
	wg       sync.WaitGroup
	received atomic.Int64
	accepted atomic.Int64
	// ended receives the read error that ended each connection (nil for
	// a clean end of file).
	ended chan error

	mu    sync.Mutex // protects conns
	conns map[net.Conn]bool
}

func newEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, ended: make(chan error, 100), conns: map[net.Conn]bool{}}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.mu.Lock()
			e.conns[c] = true
			e.mu.Unlock()
			e.wg.Go(func() { e.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		e.mu.Lock()
		for c := range e.conns {
			c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *echoServer) serve(c net.Conn) {
	defer c.Close()
	b := make([]byte, 64<<10)
	for {
		n, err := c.Read(b)
		if n > 0 {
			e.received.Add(int64(n))
			if _, werr := c.Write(b[:n]); werr != nil {
				e.ended <- werr
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			e.ended <- err
			return
		}
	}
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg on c and reads it back, failing the test if the
// echo does not come back or differs.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(time.Minute)) // hang guard
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// poll waits for cond, failing the test if the value it reports stops
// changing for a minute.
func poll(t *testing.T, what string, cond func() (int64, bool)) {
	t.Helper()
	err := testguard.Poll(time.Minute, 2*time.Millisecond, what, func() (int64, bool, error) {
		p, ok := cond()
		return p, ok, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readFails reports whether a read on c fails (reset or end of file)
// before the hang guard.
func readFails(t *testing.T, c net.Conn) error {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	defer c.SetReadDeadline(time.Time{})
	n, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("read returned %d bytes, want an error", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read: %v, want a reset or end of file", err)
	}
	return err
}

// resetOnConnect connects to addr, which accepts and resets, and returns
// the error of the connect or of the first read.
func resetOnConnect(t *testing.T, addr string) error {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err // the reset came before the connect returned
	}
	defer c.Close()
	return readFails(t, c)
}

func TestProxyForwards(t *testing.T) {
	e := newEcho(t)
	p := faulttest.NewProxy(t, e.addr())
	c := dial(t, p.Addr())
	roundTrip(t, c, "hello")
	roundTrip(t, c, "again")

	// A large transfer arrives whole and in order, both ways at once.
	big := make([]byte, 4<<20)
	_, _ = rand.Read(big)
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() { _, werr = c.Write(big) })
	got := make([]byte, len(big))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back 4 MiB: %v", err)
	}
	wg.Wait()
	if werr != nil {
		t.Fatalf("write 4 MiB: %v", werr)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("4 MiB came back different")
	}
	if s := p.Stats(); s.Open != 1 || s.Accepted != 1 {
		t.Errorf("Stats() = %+v, want 1 open, 1 accepted", s)
	}
}

// TestProxyHalfClose checks that an end of file is forwarded as such: the
// target sees it after the data, and its reply still comes back.
func TestProxyHalfClose(t *testing.T) {
	e := newEcho(t)
	p := faulttest.NewProxy(t, e.addr())
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("ReadAll = %q, %v; want the echo then end of file", got, err)
	}
	if err := <-e.ended; err != nil {
		t.Errorf("target connection ended with %v, want end of file", err)
	}
	poll(t, "link closed", func() (int64, bool) { n := p.Stats().Open; return int64(n), n == 0 })
}

func TestProxyCut(t *testing.T) {
	e := newEcho(t)
	p := faulttest.NewProxy(t, e.addr())
	c1, c2 := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, c1, "one")
	roundTrip(t, c2, "two")

	if n := p.Cut(); n != 2 {
		t.Fatalf("Cut() = %d, want 2", n)
	}
	for _, c := range []net.Conn{c1, c2} {
		if err := readFails(t, c); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client read after Cut: %v, want a connection reset", err)
		}
	}
	for range 2 {
		if err := <-e.ended; err == nil {
			t.Errorf("target connection ended cleanly, want a reset")
		}
	}
	// New connections work.
	roundTrip(t, dial(t, p.Addr()), "three")
	if s := p.Stats(); s.Cut != 2 || s.Accepted != 3 {
		t.Errorf("Stats() = %+v, want 2 cut of 3 accepted", s)
	}
}

func TestProxyBlackholeAndHeal(t *testing.T) {
	e := newEcho(t)
	p := faulttest.NewProxy(t, e.addr())
	c1 := dial(t, p.Addr())
	roundTrip(t, c1, "before")
	before := e.received.Load()

	p.Blackhole()
	p.Blackhole() // idempotent
	if _, err := c1.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	poll(t, "held bytes", func() (int64, bool) { n := p.Stats().HeldToTarget; return n, n == 4 })
	// A connection made during the partition is accepted, not forwarded.
	c2 := dial(t, p.Addr())
	if _, err := c2.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	poll(t, "a connection waiting", func() (int64, bool) { n := p.Stats().Waiting; return int64(n), n == 1 })
	if s := p.Stats(); s.Open != 2 || s.Accepted != 2 {
		t.Errorf("Stats() = %+v during the partition, want 2 open connections", s)
	}
	// Nothing comes back (a timed negative check: it cannot fail spuriously).
	_ = c1.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c1.Read(make([]byte, 8)); !isTimeout(err) {
		t.Fatalf("read during partition = %d, %v; want a timeout", n, err)
	}
	if got := e.received.Load(); got != before {
		t.Fatalf("target received %d bytes during the partition", got-before)
	}
	if got := e.accepted.Load(); got != 1 {
		t.Fatalf("target accepted %d connections during the partition, want 1", got)
	}

	p.Heal()
	p.Heal() // idempotent
	got := make([]byte, 4)
	_ = c1.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadFull(c1, got); err != nil || string(got) != "held" {
		t.Fatalf("after Heal read %q, %v; want the held data", got, err)
	}
	got = make([]byte, 3)
	_ = c2.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadFull(c2, got); err != nil || string(got) != "new" {
		t.Fatalf("after Heal read %q, %v on the new connection", got, err)
	}
	roundTrip(t, c1, "after")
	if s := p.Stats(); s.Waiting != 0 {
		t.Errorf("Stats() = %+v after Heal, want no connection waiting", s)
	}
	// The count drops just after each write returns.
	poll(t, "held bytes after Heal", func() (int64, bool) {
		s := p.Stats()
		return s.HeldToTarget + s.HeldToClient, s.HeldToTarget+s.HeldToClient == 0
	})
}

func TestProxyLatency(t *testing.T) {
	e := newEcho(t)
	p := faulttest.NewProxy(t, e.addr())
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")
	const lat = 150 * time.Millisecond
	p.SetLatency(lat)
	start := time.Now()
	roundTrip(t, c, "slow")
	// A lower bound only: a busy machine makes it longer, never shorter.
	if d := time.Since(start); d < 2*lat {
		t.Errorf("round trip with latency %v took %v, want at least %v", lat, d, 2*lat)
	}
	p.SetLatency(0)
	roundTrip(t, c, "fast")
}

func TestProxyRefuse(t *testing.T) {
	e := newEcho(t)
	p := faulttest.NewProxy(t, e.addr())
	open := dial(t, p.Addr())
	roundTrip(t, open, "open")

	p.Refuse(true)
	if err := resetOnConnect(t, p.Addr()); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on a refused connection: %v, want a reset", err)
	}
	roundTrip(t, open, "still open")
	if got := e.accepted.Load(); got != 1 {
		t.Errorf("target accepted %d connections, want 1", got)
	}

	p.Refuse(false)
	roundTrip(t, dial(t, p.Addr()), "accepted again")
}

// TestProxyTargetDown checks that a connection to a target that refuses
// is reset, and that SetTarget moves new connections.
func TestProxyTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()

	p := faulttest.NewProxy(t, down)
	if err := resetOnConnect(t, p.Addr()); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read through a proxy to a closed port: %v, want a reset", err)
	}
	e := newEcho(t)
	p.SetTarget(e.addr())
	roundTrip(t, dial(t, p.Addr()), "moved")
}

func TestProxyOutboundAddrs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := faulttest.NewProxy(t, ln.Addr().String())
	dial(t, p.Addr())
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	poll(t, "outbound connection", func() (int64, bool) { return 0, len(p.OutboundAddrs()) == 1 })
	if got, want := p.OutboundAddrs()[0], s.RemoteAddr().String(); got != want {
		t.Errorf("OutboundAddrs() = [%s], want [%s] (the target's view of the client)", got, want)
	}
}

// TestProxyCloseWaits checks that Close ends every connection, even one
// held by a partition or blocked writing to a client that does not read,
// and returns only once every goroutine of the proxy has exited; a second
// and a concurrent Close return too.
func TestProxyCloseWaits(t *testing.T) {
	e := newEcho(t)
	p := faulttest.NewProxy(t, e.addr())
	reader := dial(t, p.Addr())
	roundTrip(t, reader, "x")
	// A client that writes a lot and never reads: the proxy's writer to it
	// blocks.
	stalled := dial(t, p.Addr())
	go func() { _, _ = stalled.Write(make([]byte, 8<<20)) }()
	poll(t, "data held for a stalled client", func() (int64, bool) {
		n := p.Stats().HeldToClient
		return n, n > 0
	})
	p.Blackhole()
	held := dial(t, p.Addr())
	poll(t, "accepted", func() (int64, bool) { n := p.Stats().Accepted; return n, n == 3 })

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(p.Close)
	}
	wg.Wait()
	if s := proxyStacks(); s != "" {
		t.Fatalf("proxy goroutines left after Close:\n%s", s)
	}
	for _, c := range []net.Conn{reader, held} {
		readFails(t, c)
	}
	p.Close()
}

// proxyStacks returns the stacks of goroutines running proxy code.
func proxyStacks() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "faulttest.(*Proxy)") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
