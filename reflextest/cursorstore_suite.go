package reflextest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/seed-e488ba2e/reflex"
)

// TestCursorStore checks that stores made by newStore behave as a
// reflex.CursorStore must. newStore returns a fresh, empty store each time
// it is called (it may register clean-up with t.Cleanup).
//
// The suite sets only strictly increasing integer cursors per consumer and
// calls Flush before it expects GetCursor to see a value, so stores that
// buffer writes or reject non-increasing cursors pass.
func TestCursorStore(t *testing.T, newStore func(t *testing.T) reflex.CursorStore) {
	t.Helper()
	ctx := t.Context()

	t.Run("UnknownConsumerIsEmpty", func(t *testing.T) {
		s := newStore(t)
		got, err := s.GetCursor(ctx, "unknown")
		if err != nil || got != "" {
			t.Fatalf(`GetCursor("unknown") = %q, %v; want "", nil`, got, err)
		}
	})

	t.Run("FlushEmpty", func(t *testing.T) {
		s := newStore(t)
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("Flush on an empty store: %v", err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("second Flush on an empty store: %v", err)
		}
	})

	t.Run("SetFlushGet", func(t *testing.T) {
		s := newStore(t)
		for i := 1; i <= 5; i++ {
			if err := s.SetCursor(ctx, "c1", strconv.Itoa(i)); err != nil {
				t.Fatalf("SetCursor(c1, %d): %v", i, err)
			}
		}
		mustFlush(t, s)
		wantCursor(t, s, "c1", "5")

		if err := s.SetCursor(ctx, "c1", "12"); err != nil {
			t.Fatalf("SetCursor(c1, 12): %v", err)
		}
		mustFlush(t, s)
		wantCursor(t, s, "c1", "12")
	})

	t.Run("NamesAreIndependent", func(t *testing.T) {
		s := newStore(t)
		names := []string{"a", "b", "consumer-with.dots_and-dashes", "UPPER lower 123"}
		for i, n := range names {
			if err := s.SetCursor(ctx, n, strconv.Itoa(100+i)); err != nil {
				t.Fatalf("SetCursor(%q): %v", n, err)
			}
		}
		mustFlush(t, s)
		for i, n := range names {
			wantCursor(t, s, n, strconv.Itoa(100+i))
		}
		wantCursor(t, s, "c", "")
	})

	t.Run("LargeCursor", func(t *testing.T) {
		s := newStore(t)
		const big = "9223372036854775807" // max int64
		if err := s.SetCursor(ctx, "big", big); err != nil {
			t.Fatalf("SetCursor(big, %s): %v", big, err)
		}
		mustFlush(t, s)
		wantCursor(t, s, "big", big)
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := newStore(t)
		const consumers, sets = 8, 50
		var wg sync.WaitGroup
		errs := make(chan error, consumers)
		for c := range consumers {
			wg.Go(func() {
				name := fmt.Sprintf("concurrent-%d", c)
				for i := 1; i <= sets; i++ {
					if err := s.SetCursor(ctx, name, strconv.Itoa(i)); err != nil {
						errs <- fmt.Errorf("SetCursor(%s, %d): %w", name, i, err)
						return
					}
					if i%10 == 0 {
						if err := s.Flush(ctx); err != nil {
							errs <- fmt.Errorf("Flush: %w", err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		mustFlush(t, s)
		for c := range consumers {
			wantCursor(t, s, fmt.Sprintf("concurrent-%d", c), strconv.Itoa(sets))
		}
	})
}

func mustFlush(t *testing.T, s reflex.CursorStore) {
	t.Helper()
	if err := s.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func wantCursor(t *testing.T, s reflex.CursorStore, name, want string) {
	t.Helper()
	got, err := s.GetCursor(context.WithoutCancel(t.Context()), name)
	if err != nil {
		t.Fatalf("GetCursor(%q): %v", name, err)
	}
	if got != want {
		t.Errorf("GetCursor(%q) = %q, want %q", name, got, want)
	}
}
