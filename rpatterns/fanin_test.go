package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// TestFanInThreeSources feeds one consumer from three logs that are
// written to while it runs, with the consumer failing every 97th call and
// each run stopping at the heads, so that runs restart again and again:
// every event of every source is consumed exactly once, in its source's
// order, and each source's cursor is stored under "name/source".
func TestFanInThreeSources(t *testing.T) {
	const perSource = 600
	names := []string{"users", "orders", "payments"}
	logs := make([]*reflextest.Log, len(names))
	sources := make([]FanInSource, len(names))
	for i, n := range names {
		logs[i] = reflextest.NewLog()
		sources[i] = FanInSource{Name: n, Stream: logs[i].Stream}
	}
	var (
		mu    sync.Mutex
		calls int
		got   = map[string][]int{} // source -> sequence numbers consumed
	)
	consumer := reflex.NewConsumer("fan", func(ctx context.Context, e *reflex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls%97 == 0 {
			return errTest
		}
		src, seq, _ := strings.Cut(e.ForeignID, ":")
		n, _ := strconv.Atoi(seq)
		got[src] = append(got[src], n)
		return nil
	})
	store := reflextest.NewCursorStore()
	spec := NewFanInSpec(sources, store, consumer, reflex.WithStreamToHead())

	// Writers: each appends its events in chunks of 1 to 20.
	var writers sync.WaitGroup
	for i, l := range logs {
		writers.Go(func() {
			for n := 1; n <= perSource; {
				k := min(1+(n*7+i)%20, perSource-n+1)
				events := make([]reflex.Event, k)
				for j := range events {
					events[j] = reflex.Event{ForeignID: fmt.Sprintf("%s:%d", names[i], n+j), Type: testType(1)}
				}
				l.Append(events...)
				n += k
			}
		})
	}
	writersDone := make(chan struct{})
	go func() { writers.Wait(); close(writersDone) }()

	runs, restarts := 0, 0
	for {
		runs++
		err := reflex.Run(t.Context(), spec)
		switch {
		case errors.Is(err, errTest):
			restarts++
			continue
		case !reflex.IsHeadReachedErr(err):
			t.Fatalf("run %d: %v", runs, err)
		}
		select {
		case <-writersDone:
		default:
			continue // more to come
		}
		mu.Lock()
		total := len(got["users"]) + len(got["orders"]) + len(got["payments"])
		mu.Unlock()
		if total == perSource*len(names) {
			break
		}
		if runs > 100000 {
			t.Fatalf("%d runs and %d of %d events consumed", runs, total, perSource*len(names))
		}
	}
	if restarts == 0 {
		t.Error("the consumer never failed: the test did not restart it")
	}
	for i, n := range names {
		seq := got[n]
		if len(seq) != perSource {
			t.Errorf("%s: consumed %d events, want %d", n, len(seq), perSource)
		}
		for j, v := range seq {
			if v != j+1 {
				t.Errorf("%s: event %d consumed as number %d: not exactly once in order", n, v, j+1)
				break
			}
		}
		last := logs[i].Events()[perSource-1].ID
		if c := store.Cursor(FanInCursorName("fan", n)); c != last {
			t.Errorf("cursor of %s = %q, want %q", n, c, last)
		}
	}
	if c := store.Cursor("fan"); c != "" {
		t.Errorf("cursor %q stored under the consumer's own name", c)
	}
}

// TestFanInInterleavingRule checks the rule across sources: among events
// ready, the oldest timestamp first, ties to the source listed first.
func TestFanInInterleavingRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
		a, b, c := reflextest.NewLog(), reflextest.NewLog(), reflextest.NewLog()
		a.Append(reflex.Event{ForeignID: "a1", Timestamp: at(1)}, reflex.Event{ForeignID: "a4", Timestamp: at(4)}, reflex.Event{ForeignID: "a7", Timestamp: at(7)})
		b.Append(reflex.Event{ForeignID: "b2", Timestamp: at(2)}, reflex.Event{ForeignID: "b4", Timestamp: at(4)}, reflex.Event{ForeignID: "b9", Timestamp: at(9)})
		c.Append(reflex.Event{ForeignID: "c0", Timestamp: at(0)}, reflex.Event{ForeignID: "c4", Timestamp: at(4)}, reflex.Event{ForeignID: "c8", Timestamp: at(8)})
		f := &fanIn{name: "merge", store: reflextest.NewCursorStore(),
			sources: []FanInSource{{"a", a.Stream}, {"b", b.Stream}, {"c", c.Stream}}}
		cl, err := f.stream(t.Context(), "", reflex.WithStreamToHead())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.(io.Closer).Close()
		synctest.Wait() // every reader has queued its source's events
		var got []string
		for {
			e, err := cl.Recv()
			if reflex.IsHeadReachedErr(err) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e.ForeignID)
		}
		want := "c0 a1 b2 a4 b4 c4 a7 c8 b9"
		if strings.Join(got, " ") != want {
			t.Errorf("order %q, want %q", strings.Join(got, " "), want)
		}
	})
}

func TestNewFanInSpecPanics(t *testing.T) {
	l := reflextest.NewLog()
	c := reflex.NewConsumer("x", func(context.Context, *reflex.Event) error { return nil })
	for name, sources := range map[string][]FanInSource{
		"none":      nil,
		"no name":   {{"", l.Stream}},
		"repeated":  {{"a", l.Stream}, {"a", l.Stream}},
		"no stream": {{"a", nil}},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "rpatterns:") {
					t.Errorf("%s: recovered %v, want an rpatterns: panic", name, r)
				}
			}()
			NewFanInSpec(sources, reflextest.NewCursorStore(), c)
		}()
	}
}
