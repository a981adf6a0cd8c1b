package rpatterns

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/seed-e488ba2e/reflex"
)

// countingConsumer records the events passed to it, failing the calls
// whose number is in fail.
type countingConsumer struct {
	ids   []string
	at    []time.Duration
	start time.Time
	calls int
	fail  map[int]bool
}

func (c *countingConsumer) Name() string { return "counted" }
func (c *countingConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	c.calls++
	if c.fail[c.calls] {
		return errTest
	}
	c.ids = append(c.ids, e.ID)
	c.at = append(c.at, time.Since(c.start))
	return nil
}

func consumeIDs(t *testing.T, c reflex.Consumer, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_ = c.Consume(t.Context(), &reflex.Event{ID: id})
	}
}

func TestDedupeConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &countingConsumer{fail: map[int]bool{3: true}}
		d := NewDedupeConsumer(inner, WithDedupeSize(3), WithDedupeWindow(time.Minute))
		if d.Name() != "counted" {
			t.Errorf("Name = %q", d.Name())
		}
		// 1 and 2 pass; 1 again is skipped; 3 fails (not recorded), so
		// the next 3 passes.
		consumeIDs(t, d, "1", "2", "1")
		if err := d.Consume(t.Context(), &reflex.Event{ID: "3"}); !errors.Is(err, errTest) {
			t.Errorf("Consume of a failing event = %v, want the inner error", err)
		}
		consumeIDs(t, d, "3", "3")
		if want := []string{"1", "2", "3"}; !slices.Equal(inner.ids, want) {
			t.Errorf("passed %v, want %v", inner.ids, want)
		}
		// Size 3: recording 4 forgets 1, the oldest.
		consumeIDs(t, d, "4", "1", "4")
		if want := []string{"1", "2", "3", "4", "1"}; !slices.Equal(inner.ids, want) {
			t.Errorf("passed %v, want %v (1 forgotten by size)", inner.ids, want)
		}
		if d.Len() != 3 {
			t.Errorf("Len = %d, want 3", d.Len())
		}
		// The window: a minute later every key is forgotten.
		time.Sleep(time.Minute)
		consumeIDs(t, d, "4")
		if want := []string{"1", "2", "3", "4", "1", "4"}; !slices.Equal(inner.ids, want) {
			t.Errorf("passed %v, want %v (4 forgotten by the window)", inner.ids, want)
		}
		if d.Len() != 1 {
			t.Errorf("Len = %d after the window, want 1", d.Len())
		}
	})
}

func TestDedupeConsumerByKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &countingConsumer{}
		byForeignID := func(e *reflex.Event) string { return e.ForeignID }
		d := NewDedupeConsumer(inner, WithDedupeKey(byForeignID), WithDedupeWindow(10*time.Second))
		for i, f := range []string{"u1", "u2", "u1", "", ""} {
			_ = d.Consume(t.Context(), &reflex.Event{ID: string(rune('a' + i)), ForeignID: f})
			time.Sleep(time.Second)
		}
		time.Sleep(10 * time.Second)
		_ = d.Consume(t.Context(), &reflex.Event{ID: "f", ForeignID: "u1"})
		if want := []string{"a", "b", "d", "e", "f"}; !slices.Equal(inner.ids, want) {
			t.Errorf("passed %v, want %v", inner.ids, want)
		}
	})
}

func TestNewDedupeConsumerPanics(t *testing.T) {
	c := &countingConsumer{}
	for name, f := range map[string]func(){
		"nil consumer": func() { NewDedupeConsumer(nil) },
		"nil option":   func() { NewDedupeConsumer(c, nil) },
		"nil key":      func() { NewDedupeConsumer(c, WithDedupeKey(nil)) },
		"size":         func() { NewDedupeConsumer(c, WithDedupeSize(0)) },
		"window":       func() { NewDedupeConsumer(c, WithDedupeWindow(-time.Second)) },
		"rl nil":       func() { NewRateLimitConsumer(c, nil) },
		"rl burst":     func() { NewRateLimitConsumer(c, rate.NewLimiter(1, 0)) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestRateLimitConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &countingConsumer{start: time.Now()}
		c := NewRateLimitConsumer(inner, rate.NewLimiter(rate.Every(100*time.Millisecond), 2))
		consumeIDs(t, c, "1", "2", "3", "4", "5", "6")
		want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond}
		if !slices.Equal(inner.at, want) {
			t.Errorf("events passed at %v, want %v", inner.at, want)
		}

		// A wait is cut short by the context.
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			errc <- c.Consume(ctx, &reflex.Event{ID: "7"})
		}()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Consume with a cancelled context = %v, want context.Canceled", err)
		}
		if len(inner.ids) != 6 {
			t.Errorf("%d events passed, want 6", len(inner.ids))
		}
	})
}

// TestRateLimitAndDedupeUnderRun stacks both wrappers under reflex.Run: a
// stream that repeats events is consumed once per event, at the rate.
func TestRateLimitAndDedupeUnderRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLog(0)
		for i := range 5 {
			// Each event twice: a source that repeats itself.
			e := reflex.Event{ForeignID: "x", Type: testType(i)}
			l.Append(e, e)
		}
		inner := &countingConsumer{start: time.Now()}
		byType := func(e *reflex.Event) string { return string(rune('0' + e.Type.ReflexType())) }
		c := NewRateLimitConsumer(NewDedupeConsumer(inner, WithDedupeKey(byType)), rate.NewLimiter(rate.Every(time.Second), 1))
		err := reflex.Run(t.Context(), reflex.NewSpec(l.Stream, MemCursorStore(), c, reflex.WithStreamToHead()))
		if !reflex.IsHeadReachedErr(err) {
			t.Fatalf("Run = %v", err)
		}
		if want := []string{"1", "3", "5", "7", "9"}; !slices.Equal(inner.ids, want) {
			t.Errorf("consumed %v, want %v", inner.ids, want)
		}
		if got := time.Since(inner.start); got != 9*time.Second {
			t.Errorf("10 events at 1 per second took %v, want 9s", got)
		}
	})
}
