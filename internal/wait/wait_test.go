package wait_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/wait"
)

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w wait.Timer
		defer w.Stop()
		start := time.Now()
		for range 3 {
			if err := w.Sleep(t.Context(), time.Second); err != nil {
				t.Fatalf("Sleep: %v", err)
			}
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("3 sleeps of 1s took %v", got)
		}
		if err := w.Sleep(t.Context(), 0); err != nil {
			t.Errorf("Sleep(0) = %v", err)
		}
	})
}

func TestSleepCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w wait.Timer
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		if err := w.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
			t.Fatalf("Sleep = %v, want context.Canceled", err)
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("cancelled after %v, want 1s", got)
		}
		if err := w.Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
			t.Errorf("Sleep(0) on a done context = %v", err)
		}
		w.Stop()
		w.Stop()
	})
}
