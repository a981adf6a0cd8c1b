package rpatterns

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// pager serves events 1..n in pages of size, recording each call's cursor.
type pager struct {
	mu      sync.Mutex // protects n
	n, size int
	afters  []string
	opts    []reflex.StreamOptions
	err     error
}

func (p *pager) poll(ctx context.Context, after string, opts ...reflex.StreamOption) ([]reflex.Event, error) {
	p.afters = append(p.afters, after)
	p.opts = append(p.opts, reflex.ResolveOptions(opts...))
	if p.err != nil {
		return nil, p.err
	}
	from := 1
	if after != "" {
		a, err := strconv.Atoi(after)
		if err != nil {
			return nil, err
		}
		from = a + 1
	}
	p.mu.Lock()
	n := p.n
	p.mu.Unlock()
	var page []reflex.Event
	for i := from; i <= n && len(page) < p.size; i++ {
		page = append(page, reflex.Event{ID: strconv.Itoa(i)})
	}
	return page, nil
}

func TestPollerPages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &pager{n: 5, size: 2}
		cl, err := NewPoller(p.poll).Stream(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for range 5 {
			e, err := cl.Recv()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e.ID)
		}
		if !slices.Equal(got, ids(1, 5)) {
			t.Errorf("events = %q, want 1..5", got)
		}
		if want := []string{"", "2", "4"}; !slices.Equal(p.afters, want) {
			t.Errorf("polled after %q, want %q", p.afters, want)
		}
	})
}

// TestPollerBackoff: empty polls are repeated after the backoff (default 1
// minute) until events arrive; the stream's options reach the poll
// function.
func TestPollerBackoff(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []func(*Poller)
		want time.Duration
	}{{"default", nil, time.Minute}, {"custom", []func(*Poller){WithPollBackoff(5 * time.Second)}, 5 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &pager{n: 0, size: 10}
				cl, _ := NewPoller(p.poll, tc.opts...).Stream(t.Context(), "3", reflex.WithStreamLag(time.Hour))
				start := time.Now()
				go func() {
					time.Sleep(2*tc.want + tc.want/2)
					p.mu.Lock()
					p.n = 4 // visible to the poll after the third backoff
					p.mu.Unlock()
				}()
				e, err := cl.Recv()
				if err != nil || e.ID != "4" {
					t.Fatalf("Recv = %v, %v; want event 4", e, err)
				}
				if got := time.Since(start); got != 3*tc.want {
					t.Errorf("event after %v, want %v (three backoffs)", got, 3*tc.want)
				}
				if want := []string{"3", "3", "3", "3"}; !slices.Equal(p.afters, want) {
					t.Errorf("polled after %q, want %q", p.afters, want)
				}
				if p.opts[0].Lag != time.Hour {
					t.Errorf("poll options %+v, want the stream's lag", p.opts[0])
				}
			})
		})
	}
}

func TestPollerErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &pager{err: errTest}
		cl, _ := NewPoller(p.poll).Stream(t.Context(), "")
		if _, err := cl.Recv(); !errors.Is(err, errTest) {
			t.Errorf("Recv = %v, want %v", err, errTest)
		}

		ctx, cancel := context.WithCancel(t.Context())
		cl, _ = NewPoller((&pager{}).poll).Stream(ctx, "")
		go func() {
			time.Sleep(90 * time.Second)
			cancel()
		}()
		if _, err := cl.Recv(); !errors.Is(err, context.Canceled) {
			t.Errorf("Recv = %v, want context.Canceled", err)
		}

		cl, _ = NewPoller((&pager{}).poll).Stream(t.Context(), "", reflex.WithStreamToHead())
		if _, err := cl.Recv(); !reflex.IsHeadReachedErr(err) {
			t.Errorf("Recv with WithStreamToHead = %v, want ErrHeadReached", err)
		}
	})
	defer func() {
		if recover() == nil {
			t.Error("NewPoller with a zero backoff did not panic")
		}
	}()
	NewPoller((&pager{}).poll, WithPollBackoff(0))
}

// TestPollerNilFunc: a nil poll function is a programming error caught at
// construction, not by a panic in a later Recv.
func TestPollerNilFunc(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewPoller(nil) did not panic")
		}
	}()
	NewPoller(nil)
}

func TestPollerBuffered(t *testing.T) {
	p := &pager{n: 3, size: 3}
	cl, _ := NewPoller(p.poll).Stream(t.Context(), "")
	if _, err := cl.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := cl.(reflex.Buffered).Buffered(); n != 2 {
		t.Errorf("Buffered = %d, want 2", n)
	}
}

// gate is an injected sleep (WithSleep): it records the durations asked for
// and returns a channel that the test closes to end the wait.
type gate struct {
	mu   sync.Mutex // protects the following fields
	ch   chan time.Time
	asks []time.Duration
}

func (g *gate) sleep(d time.Duration) <-chan time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asks = append(g.asks, d)
	return g.ch
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.ch)
	g.ch = make(chan time.Time)
}

// TestPollerWithSleep: an injected sleep replaces the timer between empty
// polls (a *testing.T is accepted as the first argument, as luno/reflex
// required, and nil too).
func TestPollerWithSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gate{ch: make(chan time.Time)}
		p := &pager{n: 0, size: 10}
		poller := NewPoller(p.poll, WithPollBackoff(time.Hour), WithSleep(t, g.sleep), WithSleep(nil, nil))
		cl, err := poller.Stream(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		res := make(chan *reflex.Event, 1)
		go func() {
			e, _ := cl.Recv()
			res <- e
		}()
		synctest.Wait() // polled once, waiting on the gate
		p.mu.Lock()
		p.n = 1
		p.mu.Unlock()
		start := time.Now()
		g.open()
		if e := <-res; e == nil || e.ID != "1" {
			t.Fatalf("Recv = %v, want event 1", e)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Recv returned %v after the gate opened, want at once (no timer)", d)
		}
		if want := []time.Duration{time.Hour}; !slices.Equal(g.asks, want) {
			t.Errorf("sleep asked for %v, want %v", g.asks, want)
		}
	})
}
