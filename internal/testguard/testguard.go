// Package testguard bounds long tests by progress instead of wall clock.
//
// A busy machine makes work slower, not wrong: a test that streams tens of
// thousands of events must not fail because a fixed deadline expired while
// the events were still arriving. [Progress] returns a context that ends
// only when no progress was reported for a whole stall period, so a slow
// run goes on and a stuck run still ends with a clear cause.
package testguard

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Guard reports progress to the context returned by [Progress].
type Guard struct {
	stall time.Duration
	tick  chan struct{}
}

// Tick records progress: the stall period starts again. It never blocks and
// is safe for concurrent use.
func (g *Guard) Tick() {
	select {
	case g.tick <- struct{}{}:
	default: // a tick is already pending
	}
}

// Progress returns a context that is cancelled, with a cause naming what
// stalled and for how long, when no Tick arrived for stall, and at the
// end of the test. Its watchdog goroutine is owned by the test and waited for in
// tb.Cleanup.
func Progress(tb testing.TB, stall time.Duration, what string) (context.Context, *Guard) {
	tb.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	g := &Guard{stall: stall, tick: make(chan struct{}, 1)}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTimer(stall)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-g.tick:
				t.Reset(stall)
			case <-t.C:
				cancel(fmt.Errorf("testguard: no progress in %s for %v", what, stall))
				return
			}
		}
	})
	var once sync.Once
	tb.Cleanup(func() {
		once.Do(func() { close(done) })
		wg.Wait()
		cancel(context.Canceled)
	})
	return ctx, g
}

// Poll calls check every interval until it reports done, and returns nil
// then. check also reports a progress value (events consumed, rows left,
// any number that changes while the work advances); Poll returns an error
// naming what when that value has not changed for stall.
func Poll(stall, interval time.Duration, what string, check func() (progress int64, done bool, err error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	last, since := int64(0), time.Now()
	for first := true; ; first = false {
		p, done, err := check()
		if err != nil || done {
			return err
		}
		if first || p != last {
			last, since = p, time.Now()
		} else if time.Since(since) > stall {
			return fmt.Errorf("testguard: no progress in %s for %v (stuck at %d)", what, stall, p)
		}
		<-t.C
	}
}
