package metrics

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// newTestLags returns a fresh lag collector on a fake clock, registered in
// its own registry.
func newTestLags(t *testing.T) (*LagCollector, *fakeClock, *prometheus.Registry) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := newLagCollector()
	c.now = clock.now
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return c, clock, reg
}

func TestLagCollector(t *testing.T) {
	c, clock, reg := newTestLags(t)
	lag := func() string {
		return fmt.Sprint(gather(t, reg, "reflex_consumer_lag_seconds"), gather(t, reg, "reflex_consumer_lag_events"))
	}
	c.State("idle") // not exported: no series
	var head atomic.Int64
	head.Store(20)
	ts := func(ago time.Duration) int64 { return clock.now().Add(-ago).UnixNano() }

	r := c.StartRun("a", 5, func() (int64, bool) { return head.Load(), true })
	if got := lag(); got != "map[a:0] map[a:15]" {
		t.Errorf("after StartRun: %s", got)
	}
	t6 := ts(10 * time.Second)
	r.Started(6, t6)
	clock.add(5 * time.Second)
	if got := lag(); got != "map[a:15] map[a:15]" {
		t.Errorf("consuming event 6 for 5s: %s", got)
	}
	r.Consumed(6, t6)
	clock.add(5 * time.Second)
	if got := lag(); got != "map[a:20] map[a:14]" {
		t.Errorf("behind after event 6: %s", got)
	}
	c.State("a").startLag.Store(int64(3 * time.Second))
	head.Store(6)
	if got := lag(); got != "map[a:3] map[a:0]" {
		t.Errorf("caught up: %s", got)
	}

	// A run that fails on event 7: the next run from the same cursor
	// keeps it as the event it is stuck on.
	head.Store(9)
	t7 := ts(time.Second)
	r.Started(7, t7)
	r.End()
	head.Store(100) // the ended run keeps the head it knew
	clock.add(time.Minute)
	if got := lag(); got != "map[a:61] map[a:3]" {
		t.Errorf("a minute after the run ended on event 7: %s", got)
	}
	c.StartRun("a", 6, nil)
	clock.add(time.Minute)
	if got := lag(); got != "map[a:121] map[]" {
		t.Errorf("next run without a head, not past event 7: %s", got)
	}
	// A run from another cursor (moved by an operator) starts afresh.
	c.StartRun("a", 2, nil)
	if got := lag(); got != "map[a:3] map[]" {
		t.Errorf("run from a moved cursor: %s", got)
	}
	c.State("a").exported.Store(false)
	if got := lag(); got != "map[] map[]" {
		t.Errorf("after DeleteLag: %s", got)
	}
}
