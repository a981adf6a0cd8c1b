package reflex_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// lagClient is a stream client of events whose source reports a head.
type lagClient struct {
	events []*reflex.Event
	next   int
	head   *atomic.Int64
}

func (c *lagClient) Recv() (*reflex.Event, error) {
	if c.next == len(c.events) {
		return nil, reflex.ErrHeadReached
	}
	c.next++
	return c.events[c.next-1], nil
}

func (c *lagClient) Head() (string, bool) { return strconv.FormatInt(c.head.Load(), 10), true }

// lagValues returns reflex_consumer_lag_seconds and _events of name, and
// whether each has a series.
func lagValues(t *testing.T, name string) (secs float64, hasSecs bool, events float64, hasEvents bool) {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != name {
				continue
			}
			switch mf.GetName() {
			case famLag:
				secs, hasSecs = m.GetGauge().GetValue(), true
			case "reflex_consumer_lag_events":
				events, hasEvents = m.GetGauge().GetValue(), true
			}
		}
	}
	return
}

// TestRunLagMetrics checks the lag that Run exports, on a fake clock: in
// events from a stream that reports its head, and in seconds growing
// while the consumer is stuck on an event (consuming it, then failed on
// it with Run stopped), back to the lag measured at the event's start
// once it is caught up.
func TestRunLagMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := uniqueName(t)
		t0 := time.Now()
		var events []*reflex.Event
		for i := 1; i <= 3; i++ {
			events = append(events, &reflex.Event{ID: strconv.Itoa(i), Type: testType(1), Timestamp: t0.Add(-time.Minute)})
		}
		head := new(atomic.Int64)
		head.Store(10)
		stream := func(ctx context.Context, after string, _ ...reflex.StreamOption) (reflex.StreamClient, error) {
			n, _ := strconv.Atoi(after)
			return &lagClient{events: events[n:], head: head}, nil
		}
		entered, release := make(chan string), make(chan error)
		consumer := reflex.NewConsumer(name, func(ctx context.Context, e *reflex.Event) error {
			if e.ID != "3" {
				return nil
			}
			entered <- e.ID
			return <-release
		})
		store := reflextest.NewCursorStore()
		spec := reflex.NewSpec(stream, store, consumer)
		done := make(chan error, 1)
		go func() { done <- reflex.Run(t.Context(), spec) }()
		<-entered // consuming event 3; events 1 and 2 are consumed
		time.Sleep(time.Minute)
		secs, _, evs, hasEvents := lagValues(t, name)
		if secs != 120 || !hasEvents || evs != 8 {
			t.Errorf("while consuming event 3 for a minute: lag %vs, %v events (series %v); want 120s, 8 events", secs, evs, hasEvents)
		}
		release <- errors.New("boom")
		if err := <-done; err == nil {
			t.Fatal("Run = nil")
		}
		time.Sleep(time.Minute)
		if secs, _, evs, _ := lagValues(t, name); secs != 180 || evs != 8 {
			t.Errorf("a minute after Run failed on event 3: lag %vs, %v events; want 180s, 8 events", secs, evs)
		}

		// The next run consumes event 3 and reaches the stream's head.
		head.Store(3)
		go func() { done <- reflex.Run(t.Context(), spec) }()
		<-entered
		release <- nil
		if err := <-done; !errors.Is(err, reflex.ErrHeadReached) {
			t.Fatalf("Run = %v, want ErrHeadReached", err)
		}
		time.Sleep(time.Hour)
		secs, hasSecs, evs, _ := lagValues(t, name)
		if !hasSecs || secs != 180 || evs != 0 {
			t.Errorf("an hour after catching up: lag %vs, %v events; want the 180s measured when event 3 started, 0 events", secs, evs)
		}
		if err := spec.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, hasSecs, _, hasEvents := lagValues(t, name); hasSecs || hasEvents {
			t.Error("lag series after Spec.Stop")
		}
	})
}

// TestRunLagWithoutHead: a stream that does not report its head has no
// lag in events, and a consumer stuck in Consume still has a growing
// lag in seconds.
func TestRunLagWithoutHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := uniqueName(t)
		log := reflextest.NewLog()
		log.Append(reflex.Event{ForeignID: "f", Timestamp: time.Now()})
		entered := make(chan struct{})
		ctx, cancel := context.WithCancel(t.Context())
		consumer := reflex.NewConsumer(name, func(ctx context.Context, e *reflex.Event) error {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		})
		done := make(chan error, 1)
		go func() { done <- reflex.Run(ctx, reflex.NewSpec(log.Stream, reflextest.NewCursorStore(), consumer)) }()
		<-entered
		time.Sleep(90 * time.Second)
		secs, _, _, hasEvents := lagValues(t, name)
		if secs != 90 || hasEvents {
			t.Errorf("stuck in Consume for 90s: lag %vs, events series %v; want 90s and no events series", secs, hasEvents)
		}
		cancel()
		<-done
	})
}
