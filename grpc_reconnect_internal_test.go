package reflex

import (
	"context"
	"errors"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakePeer is a peer's stream as a resilient client sees it, with faults:
// open attempt n fails with fail(n) if that is not nil, and the stream it
// opens fails after breakAfter[n] events. It records when each attempt
// was made and after which cursor.
type fakePeer struct {
	start      time.Time
	events     []Event
	fail       func(n int) error
	breakAfter map[int]int
	// block, if set, makes attempt blockOn wait for it to close.
	block   chan struct{}
	blockOn int

	mu       sync.Mutex
	attempts []time.Duration // since start
	afters   []string
}

func newFakePeer(n int) *fakePeer {
	p := &fakePeer{start: time.Now(), breakAfter: map[int]int{}}
	for i := range n {
		p.events = append(p.events, Event{ID: strconv.Itoa(i + 1), Type: eventtype.Type(1), Timestamp: p.start})
	}
	return p
}

func (p *fakePeer) stream(ctx context.Context, after string, opts ...StreamOption) (StreamClient, error) {
	p.mu.Lock()
	p.attempts = append(p.attempts, time.Since(p.start))
	p.afters = append(p.afters, after)
	n := len(p.attempts)
	p.mu.Unlock()
	if n == p.blockOn && p.block != nil {
		select {
		case <-p.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if p.fail != nil {
		if err := p.fail(n); err != nil {
			return nil, err
		}
	}
	next := 0
	if after != "" {
		a, _ := strconv.Atoi(after)
		next = a
	}
	limit := -1
	if k, ok := p.breakAfter[n]; ok {
		limit = k
	}
	return &fakePeerClient{p: p, ctx: ctx, next: next, limit: limit}, nil
}

func (p *fakePeer) attemptTimes() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.attempts)
}

type fakePeerClient struct {
	p     *fakePeer
	ctx   context.Context
	next  int
	limit int // events before an Unavailable error; -1 for none
}

func (c *fakePeerClient) Recv() (*Event, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	if c.limit == 0 {
		return nil, status.Error(codes.Unavailable, "connection reset")
	}
	if c.next == len(c.p.events) {
		return nil, ErrHeadReached
	}
	c.limit--
	c.next++
	return &c.p.events[c.next-1], nil
}

var errUnavailable = status.Error(codes.Unavailable, "peer down")

// noJitter makes jitter return its argument, for the duration of a test.
func noJitter(t *testing.T) {
	old := randFloat64
	randFloat64 = func() float64 { return 0 }
	t.Cleanup(func() { randFloat64 = old })
}

// TestReconnectBackoffAndBreaker drives a resilient StreamFunc against a
// peer whose first 5 attempts fail: the attempts follow the backoff, the
// breaker opens after 4 failures, refuses without contacting the peer
// while open, lets one probe through when half-open (the others fail at
// once), opens again when it fails and closes when it succeeds; a stream
// that breaks later resumes after its last event, so every event arrives
// once, in order.
func TestReconnectBackoffAndBreaker(t *testing.T) {
	noJitter(t)
	synctest.Test(t, func(t *testing.T) {
		p := newFakePeer(10)
		p.fail = func(n int) error {
			if n <= 5 {
				return errUnavailable
			}
			return nil
		}
		p.breakAfter[6] = 3 // the stream that opens breaks after 3 events
		var (
			mu     sync.Mutex
			states []BreakerState
		)
		policy := ReconnectPolicy{
			Peer: "fake-" + t.Name(), MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
			FailureThreshold: 4, OpenFor: 10 * time.Second,
			OnState: func(s BreakerState) { mu.Lock(); states = append(states, s); mu.Unlock() },
		}
		stream := newReconnecting(p.stream, policy.withDefaults())
		start := time.Now()

		// Attempts 1-4 fail, 100, 200 and 400ms apart; the breaker opens
		// (until 10.7s); the next wait (800ms) ends with the breaker open.
		_, err := stream(t.Context(), "", WithStreamToHead())
		if !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("StreamFunc = %v, want ErrCircuitOpen", err)
		}
		if got, want := time.Since(start), 1500*time.Millisecond; got != want {
			t.Errorf("StreamFunc returned after %v, want %v", got, want)
		}
		ms := func(ds ...int) []time.Duration {
			out := make([]time.Duration, len(ds))
			for i, d := range ds {
				out[i] = time.Duration(d) * time.Millisecond
			}
			return out
		}
		if got, want := p.attemptTimes(), ms(0, 100, 300, 700); !slices.Equal(got, want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}

		// Open: refused at once, the peer not contacted.
		if _, err := stream(t.Context(), ""); !errors.Is(err, ErrCircuitOpen) {
			t.Errorf("StreamFunc while open = %v, want ErrCircuitOpen", err)
		}
		if got := len(p.attemptTimes()); got != 4 {
			t.Errorf("%d attempts, want 4: the open breaker let one through", got)
		}

		// Half-open at 10.7s: attempt 5 is the probe, held while another
		// call is refused; it fails and the breaker opens again.
		time.Sleep(10700*time.Millisecond - time.Since(start))
		p.block, p.blockOn = make(chan struct{}), 5
		probeErr := make(chan error, 1)
		go func() {
			_, err := stream(t.Context(), "")
			probeErr <- err
		}()
		synctest.Wait()
		if _, err := stream(t.Context(), ""); !errors.Is(err, ErrCircuitOpen) {
			t.Errorf("StreamFunc while the probe is in flight = %v, want ErrCircuitOpen", err)
		}
		close(p.block)
		if err := <-probeErr; !errors.Is(err, ErrCircuitOpen) {
			t.Errorf("StreamFunc of the failed probe = %v, want ErrCircuitOpen (open again)", err)
		}

		// Open until 20.7s; then attempt 6 succeeds: closed.
		time.Sleep(20700*time.Millisecond - time.Since(start))
		cl, err := stream(t.Context(), "", WithStreamToHead())
		if err != nil {
			t.Fatalf("StreamFunc after the peer recovered: %v", err)
		}
		var ids []string
		for {
			e, err := cl.Recv()
			if errors.Is(err, ErrHeadReached) {
				break
			}
			if err != nil {
				t.Fatalf("Recv after %v: %v", ids, err)
			}
			ids = append(ids, e.ID)
		}
		want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
		if !slices.Equal(ids, want) {
			t.Errorf("received %v, want %v", ids, want)
		}
		// The break after event 3 was followed by attempt 7, 100ms later,
		// after event 3.
		got := p.attemptTimes()
		if len(got) != 7 || got[6]-got[5] != 100*time.Millisecond || p.afters[6] != "3" {
			t.Errorf("attempts at %v after %q, want a 7th 100ms after the 6th, after \"3\"", got, p.afters)
		}
		mu.Lock()
		defer mu.Unlock()
		wantStates := []BreakerState{BreakerOpen, BreakerHalfOpen, BreakerOpen, BreakerHalfOpen, BreakerClosed}
		if !slices.Equal(states, wantStates) {
			t.Errorf("breaker states %v, want %v", states, wantStates)
		}
		_ = cl.(interface{ Close() error }).Close()
	})
}

// TestReconnectPermanentErrors checks that errors which retrying cannot
// fix are returned at once, and count as the peer answering.
func TestReconnectPermanentErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, perm := range []error{
			wireError(ErrInvalidCursor), status.Error(codes.Unauthenticated, "who are you"),
			status.Error(codes.Unimplemented, "no"), errors.New("malformed batch"),
		} {
			p := newFakePeer(1)
			p.fail = func(int) error { return perm }
			stream := newReconnecting(p.stream, ReconnectPolicy{FailureThreshold: 1}.withDefaults())
			if _, err := stream(t.Context(), ""); err != perm {
				t.Errorf("StreamFunc = %v, want %v at once", err, perm)
			}
			if got := len(p.attemptTimes()); got != 1 {
				t.Errorf("%v: %d attempts, want 1", perm, got)
			}
			// The breaker is still closed: the next call contacts the peer.
			_, _ = stream(t.Context(), "")
			if got := len(p.attemptTimes()); got != 2 {
				t.Errorf("%v: %d attempts after a second call, want 2 (breaker closed)", perm, got)
			}
		}
	})
}

// TestReconnectCloseCancelsWait closes a client that waits to reconnect:
// Recv returns context.Canceled at once.
func TestReconnectCloseCancelsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePeer(3)
		p.fail = func(n int) error {
			if n > 1 {
				return errUnavailable
			}
			return nil
		}
		p.breakAfter[1] = 1
		stream := newReconnecting(p.stream, ReconnectPolicy{MinBackoff: time.Hour}.withDefaults())
		cl, err := stream(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Recv(); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := cl.Recv()
			errc <- err
		}()
		synctest.Wait() // Recv waits an hour to reconnect
		_ = cl.(interface{ Close() error }).Close()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Recv after Close = %v, want context.Canceled", err)
		}
		if _, err := cl.Recv(); !errors.Is(err, context.Canceled) {
			t.Errorf("Recv after Close = %v, want context.Canceled", err)
		}
	})
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{wireError(ErrStopped), true},
		{wireError(ErrTooManyStreams), true},
		{status.Error(codes.Unavailable, "x"), true},
		{status.Error(codes.Unknown, "db down"), true},
		{status.Error(codes.Internal, "rst"), true},
		{wireError(ErrHeadReached), false},
		{wireError(ErrInvalidCursor), false},
		{status.Error(codes.PermissionDenied, "x"), false},
		{errors.New("plain"), false},
		{ErrCircuitOpen, false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
