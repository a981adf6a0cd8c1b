package rsql_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// headOf returns the Head of a client of this package as an integer.
func headOf(t *testing.T, cl reflex.StreamClient) (int64, bool) {
	t.Helper()
	hr, ok := cl.(reflex.HeadReporter)
	if !ok {
		t.Fatalf("%T does not implement reflex.HeadReporter", cl)
	}
	id, ok := hr.Head()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		t.Fatalf("Head %q: %v", id, err)
	}
	return n, true
}

// TestStreamHead checks what a stream client knows of its head: the
// last ID of a load that reached the head, the head queried while it
// catches up, and the watcher's head while it waits at a gap.
func TestStreamHead(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		ms := make([]int, 3000)
		table := e.seedEvents(t, minutes(ms...)...)
		small := rsql.NewEventsTable(table.Name(), rsql.WithEventsDialect(e.d), rsql.WithEventLookupLimit(100))

		cl := small.Stream(ctx, e.db, "2990")
		defer closeClient(cl)
		if h, ok := headOf(t, cl); ok {
			t.Errorf("HeadID before any load = %d, true; want false", h)
		}
		if _, err := cl.Recv(); err != nil {
			t.Fatal(err)
		}
		if h, ok := headOf(t, cl); !ok || h != 3000 {
			t.Errorf("HeadID after a load that reached the head = %d, %v; want 3000", h, ok)
		}

		// Catching up 100 events at a time: the read-ahead queries the
		// head.
		cl2 := small.Stream(ctx, e.db, "")
		defer closeClient(cl2)
		for range 250 {
			if _, err := cl2.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		err := testguard.Poll(time.Minute, 5*time.Millisecond, "the head query of a catching-up stream", func() (int64, bool, error) {
			h, _ := headOf(t, cl2)
			return h, h == 3000, nil
		})
		if err != nil {
			t.Fatal(err)
		}

		// At a gap the stream cannot pass, the watcher's polls tell the
		// head.
		e.exec(t, "DELETE FROM "+table.Name()+" WHERE id = 2995")
		cl3 := table.Stream(ctx, e.db, "2990")
		defer closeClient(cl3)
		for range 4 {
			if _, err := cl3.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			<-rctx.Done()
			closeClient(cl3)
		}()
		recvDone := make(chan struct{})
		go func() {
			defer close(recvDone)
			_, _ = cl3.Recv() // waits at the gap until closed
		}()
		if h, _ := headOf(t, cl3); h > 2994 {
			t.Logf("head %d known before the wait", h)
		}
		err = testguard.Poll(time.Minute, 5*time.Millisecond, "the watcher's head at a gap", func() (int64, bool, error) {
			h, _ := headOf(t, cl3)
			return h, h == 3000, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		<-recvDone
	})
}

// gatherLag returns the lag families' values for consumer name.
func gatherLag(t *testing.T, name string) (secs, events float64, hasEvents bool) {
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
			case "reflex_consumer_lag_seconds":
				secs = m.GetGauge().GetValue()
			case "reflex_consumer_lag_events":
				events, hasEvents = m.GetGauge().GetValue(), true
			}
		}
	}
	return secs, events, hasEvents
}

// TestRunLagAtGap: a consumer whose stream waits at a gap is behind: its
// lag in events is the head minus its cursor, and its lag in seconds
// grows.
func TestRunLagAtGap(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		name := fmt.Sprintf("lag_at_gap_%s_%d", e.name, tableSeq.Add(1))
		table := e.seedEvents(t, time.Now().Add(-time.Minute), time.Now(), time.Now(), time.Now(), time.Now())
		e.exec(t, "DELETE FROM "+table.Name()+" WHERE id = 3")
		e.tables.CreateCursorsTable(t, e.db, "cursors")
		store := rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(e.d), rsql.WithCursorAsyncDisabled()).ToStore(e.db)
		consumed := make(chan string, 10)
		spec := reflex.NewSpec(table.ToStream(e.db), store, reflex.NewConsumer(name, func(_ context.Context, ev *reflex.Event) error {
			consumed <- ev.ID
			return nil
		}))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- reflex.Run(ctx, spec) }()
		for _, want := range []string{"1", "2"} {
			if got := <-consumed; got != want {
				t.Fatalf("consumed %s, want %s", got, want)
			}
		}
		var first float64
		err := testguard.Poll(time.Minute, 5*time.Millisecond, "lag at the gap", func() (int64, bool, error) {
			secs, events, ok := gatherLag(t, name)
			first = secs
			return int64(events), ok && events == 3, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = testguard.Poll(time.Minute, 5*time.Millisecond, "growing lag in seconds", func() (int64, bool, error) {
			secs, _, _ := gatherLag(t, name)
			return int64(secs * 1000), secs > first, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
	})
}
