package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// failNTimes returns a ConsumerFunc that fails each event n times before
// succeeding, returning err.
func failNTimes(n int, err error) reflex.ConsumerFunc {
	fails := make(map[string]int)
	return func(ctx context.Context, e *reflex.Event) error {
		if fails[e.ID] < n {
			fails[e.ID]++
			return err
		}
		return nil
	}
}

// consumeSeq consumes events 1..events, repeating an event while Consume
// fails, up to calls calls, and returns which calls failed.
func consumeSeq(t *testing.T, c reflex.Consumer, events, calls int) []bool {
	t.Helper()
	var failed []bool
	id := 1
	for range calls {
		if id > events {
			break
		}
		err := c.Consume(t.Context(), &reflex.Event{ID: fmt.Sprint(id)})
		failed = append(failed, err != nil)
		if err == nil {
			id++
		}
	}
	return failed
}

func TestBestEffortVectors(t *testing.T) {
	tests := []struct {
		name      string
		retries   int
		failTimes int
		want      []bool // true: Consume returned an error
	}{
		{"retries 0 never surfaces", 0, 5, []bool{false, false}},
		{"retries 1 one failure", 1, 1, []bool{true, false, true, false}},
		{"retries 3 two failures", 3, 2, []bool{true, true, false, true, true, false}},
		{"retries 2 always failing", 2, 100, []bool{true, true, false, true, true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewBestEffortConsumer("best_effort", tc.retries, failNTimes(tc.failTimes, errTest))
			if got := consumeSeq(t, c, 2, len(tc.want)); !slices.Equal(got, tc.want) {
				t.Errorf("failures = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestBestEffortCountsPerEvent: a failure of another event restarts the
// count, so alternating failures never skip.
func TestBestEffortCountsPerEvent(t *testing.T) {
	c := NewBestEffortConsumer("best_effort", 1, func(context.Context, *reflex.Event) error { return errTest })
	for i, id := range []string{"1", "2", "1", "2"} {
		if err := c.Consume(t.Context(), &reflex.Event{ID: id}); !errors.Is(err, errTest) {
			t.Fatalf("Consume #%d (event %s) = %v, want %v", i, id, err, errTest)
		}
	}
	if err := c.Consume(t.Context(), &reflex.Event{ID: "2"}); err != nil {
		t.Fatalf("second consecutive failure of event 2 = %v, want nil (skipped)", err)
	}
}

// TestBestEffortCtxDone: an error while the context is done is never
// swallowed, so shutting down does not skip events.
func TestBestEffortCtxDone(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := NewBestEffortConsumer("best_effort", 0, func(ctx context.Context, e *reflex.Event) error { return ctx.Err() })
	if err := c.Consume(ctx, &reflex.Event{ID: "1"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume = %v, want context.Canceled", err)
	}
}

// TestBestEffortRun: under Run a poison event fails one run and is skipped
// by the next.
func TestBestEffortRun(t *testing.T) {
	store := reflextest.NewCursorStore()
	var seen recorder
	c := NewBestEffortConsumer("best_effort", 1, func(ctx context.Context, e *reflex.Event) error {
		if e.ID == "2" {
			return errTest
		}
		seen.add(e.ID)
		return nil
	})
	spec := reflex.NewSpec(newLog(3).Stream, store, c, reflex.WithStreamToHead())
	if err := reflex.Run(t.Context(), spec); !errors.Is(err, errTest) {
		t.Fatalf("first Run = %v, want %v", err, errTest)
	}
	runToHead(t, spec)
	if got := seen.got(); !slices.Equal(got, []string{"1", "3"}) {
		t.Errorf("processed %q, want [1 3]", got)
	}
	if c := store.Cursor("best_effort"); c != "3" {
		t.Errorf("cursor = %q, want 3", c)
	}
}
