package faulttest

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/wait"
)

const (
	// chunkSize is the largest read the proxy forwards as one write.
	chunkSize = 32 << 10
	// pipeDepth is how many chunks a direction of a connection holds
	// between its reader and its writer (during a partition or under
	// latency) before the reader stops reading, so that the sender feels
	// back-pressure as it would from a real network: 16 chunks, 512 KiB.
	pipeDepth = 16
	// dialTimeout bounds the proxy's connection to its target, which is on
	// a loopback address and answers or refuses at once when it is up.
	dialTimeout = 5 * time.Second
)

// Proxy is a TCP proxy on a loopback port that forwards every connection
// to a target address and injects network faults on demand: Cut resets
// the open connections, Blackhole holds all traffic (a partition) until
// Heal, SetLatency delays it, and Refuse resets new connections.
//
// Create it with NewProxy; it is closed when the test ends. Its methods
// are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	ctx    context.Context // the proxy's lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the connection goroutines

	accepted atomic.Int64
	cut      atomic.Int64
	waiting  atomic.Int64 // accepted connections not yet connected to the target
	toTarget atomic.Int64 // bytes read from clients, not yet written to the target
	toClient atomic.Int64 // bytes read from the target, not yet written to clients

	mu sync.Mutex // protects the following fields
	// flowing is closed while traffic flows; while black-holed it is open
	// and the writers wait on it.
	flowing chan struct{}
	target  string
	latency time.Duration
	refuse  bool
	closed  bool
	links   map[*link]struct{}

	closeOnce sync.Once
}

// NewProxy starts a proxy on 127.0.0.1 (a free port) that forwards to
// target, a host:port. It fails tb if it cannot listen, and closes the
// proxy when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("faulttest: proxy listen: %v", err)
	}
	flowing := make(chan struct{})
	close(flowing)
	ctx, cancel := context.WithCancel(context.Background()) // the proxy's lifetime
	p := &Proxy{
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		flowing: flowing,
		target:  target,
		links:   make(map[*link]struct{}),
	}
	p.wg.Go(p.acceptLoop)
	tb.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address, 127.0.0.1:port: point clients at it.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget makes new connections go to target; open ones keep theirs.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// Cut resets every open connection on both sides (each side sees a
// connection reset) and returns how many it cut. New connections are
// forwarded as before.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	for _, l := range ls {
		l.close(true)
	}
	p.cut.Add(int64(len(ls)))
	return len(ls)
}

// Blackhole stops forwarding, like a network partition: connections stay
// open and data sent on them is held, new connections are accepted but not
// connected to the target, and nothing moves in either direction until
// Heal. Calling it again while black-holed does nothing.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
		p.flowing = make(chan struct{})
	default: // already black-holed
	}
}

// Heal ends a partition started by Blackhole: the held data is delivered
// in order, and connections accepted meanwhile are connected to the
// target. It does nothing if traffic is flowing.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
	default:
		close(p.flowing)
	}
}

// SetLatency delays every chunk of data, in both directions, until d after
// the proxy read it (0, the default, for no delay). It applies to the data
// forwarded from then on, on open connections too.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = max(d, 0)
}

// Refuse makes the proxy reset new connections as soon as it accepts them
// (on is true) or forward them again (on is false). Open connections are
// not affected. A client sees a connection reset rather than a refused
// connection: the proxy keeps its port.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// ProxyStats are counters of a Proxy.
type ProxyStats struct {
	// Open is the number of open client connections.
	Open int
	// Waiting is the number of open client connections not yet connected
	// to the target: accepted during a partition, or being dialled.
	Waiting int
	// Accepted counts the connections accepted so far, refused ones
	// included; Cut counts those reset by Cut.
	Accepted, Cut int64
	// HeldToTarget and HeldToClient are the bytes read from one side and
	// not yet written to the other: data held by a partition or by latency.
	HeldToTarget, HeldToClient int64
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	open := len(p.links)
	p.mu.Unlock()
	return ProxyStats{
		Open:         open,
		Waiting:      int(p.waiting.Load()),
		Accepted:     p.accepted.Load(),
		Cut:          p.cut.Load(),
		HeldToTarget: p.toTarget.Load(),
		HeldToClient: p.toClient.Load(),
	}
}

// OutboundAddrs returns the local addresses (host:port) of the proxy's
// open connections to the target: how the target sees the clients behind
// the proxy, for example in the Host column of MariaDB's processlist.
func (p *Proxy) OutboundAddrs() []string {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	var addrs []string
	for _, l := range ls {
		l.mu.Lock()
		if l.server != nil {
			addrs = append(addrs, l.server.LocalAddr().String())
		}
		l.mu.Unlock()
	}
	return addrs
}

// Close stops accepting, closes every connection and returns once every
// goroutine of the proxy has exited. It is idempotent and safe for
// concurrent use: every call returns once the proxy is closed.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		ls := make([]*link, 0, len(p.links))
		for l := range p.links {
			ls = append(ls, l)
		}
		p.mu.Unlock()
		_ = p.ln.Close()
		p.cancel()
		for _, l := range ls {
			l.close(false)
		}
		p.wg.Wait()
	})
}

func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		p.accepted.Add(1)
		// wg.Go while the accept loop itself is counted: Close's Wait
		// cannot have returned yet.
		p.wg.Go(func() { p.handle(c) })
	}
}

// link is one proxied connection: the client side and, once dialled, the
// target side.
type link struct {
	client net.Conn
	ctx    context.Context // done once the link is closed
	cancel context.CancelFunc
	once   sync.Once

	mu     sync.Mutex // protects the following fields
	server net.Conn   // nil until dialled
	closed bool
}

// close closes both sides, with a reset (SO_LINGER 0) if rst, and ends
// the link's goroutines. It is idempotent.
func (l *link) close(rst bool) {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		s := l.server
		l.mu.Unlock()
		l.cancel()
		closeConn(l.client, rst)
		if s != nil {
			closeConn(s, rst)
		}
	})
}

// setServer records the target side; false if the link was closed.
func (l *link) setServer(s net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.server = s
	return true
}

func closeConn(c net.Conn, rst bool) {
	if tc, ok := c.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0) // close sends RST
	}
	_ = c.Close()
}

// handle serves one accepted connection until both directions end or the
// link is closed.
func (p *Proxy) handle(c net.Conn) {
	ctx, cancel := context.WithCancel(p.ctx)
	l := &link{client: c, ctx: ctx, cancel: cancel}
	p.mu.Lock()
	if p.closed || p.refuse {
		p.mu.Unlock()
		closeConn(c, true)
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		l.close(false)
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()

	// During a partition nothing reaches the target, not even the
	// connection: dial only once traffic flows.
	p.waiting.Add(1)
	connected := false
	defer func() {
		if !connected {
			p.waiting.Add(-1)
		}
	}()
	if !p.waitFlowing(l) {
		return
	}
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	dctx, dcancel := context.WithTimeout(l.ctx, dialTimeout)
	var d net.Dialer
	s, err := d.DialContext(dctx, "tcp", target)
	dcancel()
	if err != nil {
		l.close(true) // the client sees a reset, as if the target refused
		return
	}
	if !l.setServer(s) {
		closeConn(s, true)
		return
	}
	connected = true
	p.waiting.Add(-1)

	var wg sync.WaitGroup
	up := p.pipe(&wg, l, c, s, &p.toTarget)
	down := p.pipe(&wg, l, s, c, &p.toClient)
	wg.Wait()
	// Chunks still queued were never written: no longer held.
	unhold(up, &p.toTarget)
	unhold(down, &p.toClient)
}

// unhold empties ch, whose goroutines have exited, from the held count.
func unhold(ch chan chunk, held *atomic.Int64) {
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				return
			}
			held.Add(-int64(len(c.b)))
		default:
			return
		}
	}
}

// waitFlowing blocks while the proxy is black-holed; false if the link
// was closed meanwhile.
func (p *Proxy) waitFlowing(l *link) bool {
	for {
		p.mu.Lock()
		ch := p.flowing
		p.mu.Unlock()
		select {
		case <-l.ctx.Done():
			return false
		case <-ch:
		}
		// Black-holed again between the wake-up and now? Look once more.
		p.mu.Lock()
		ok := ch == p.flowing
		p.mu.Unlock()
		if ok {
			return true
		}
	}
}

type chunk struct {
	b  []byte
	at time.Time // when it was read
}

// pipe forwards src to dst with a reader and a writer goroutine (counted
// in wg) and returns the channel between them: the reader reads chunks
// into it (pipeDepth deep), the writer writes each one once its latency
// has passed and traffic flows. An end of file half-closes dst after the
// data before it is written; any other error resets the whole link. held
// counts the bytes read and not yet written.
func (p *Proxy) pipe(wg *sync.WaitGroup, l *link, src, dst net.Conn, held *atomic.Int64) chan chunk {
	ch := make(chan chunk, pipeDepth)
	wg.Go(func() {
		for {
			b := make([]byte, chunkSize)
			n, err := src.Read(b)
			if n > 0 {
				held.Add(int64(n))
				select {
				case ch <- chunk{b: b[:n], at: time.Now()}:
				case <-l.ctx.Done():
					held.Add(-int64(n))
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					close(ch) // the writer half-closes dst after the rest
				} else {
					l.close(true)
				}
				return
			}
		}
	})
	wg.Go(func() {
		var t wait.Timer
		defer t.Stop()
		for {
			var c chunk
			select {
			case <-l.ctx.Done():
				return
			case cc, ok := <-ch:
				if !ok {
					if tc, ok := dst.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
					return
				}
				c = cc
			}
			err := p.deliver(&t, l, dst, c)
			held.Add(-int64(len(c.b)))
			if err != nil {
				return
			}
		}
	})
	return ch
}

// deliver writes c to dst once its latency has passed and traffic flows.
// It returns an error if the link was closed first or the write failed
// (then it resets the link).
func (p *Proxy) deliver(t *wait.Timer, l *link, dst net.Conn, c chunk) error {
	p.mu.Lock()
	lat := p.latency
	p.mu.Unlock()
	if err := t.Sleep(l.ctx, time.Until(c.at.Add(lat))); err != nil {
		return err
	}
	if !p.waitFlowing(l) {
		return l.ctx.Err()
	}
	if _, err := dst.Write(c.b); err != nil {
		l.close(true)
		return err
	}
	return nil
}
