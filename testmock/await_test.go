package testmock_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/testmock"
)

// fatalTB records a Fatalf instead of failing the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// await runs AwaitConsumer on a goroutine and returns the Fatalf message
// it reported, or "" if it returned normally.
func await(t *testing.T, store *reflextest.CursorStore, eventID int64) string {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testmock.AwaitConsumerTB(tb, store, "c", eventID)
	}()
	<-done
	return tb.msg
}

func TestAwaitConsumerReturnsWhenReached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		setter := make(chan struct{})
		defer func() { <-setter }()
		go func() {
			defer close(setter)
			for i := range 5 {
				time.Sleep(time.Second)
				_ = store.SetCursor(t.Context(), "c", fmt.Sprint(i+1))
			}
		}()
		start := time.Now()
		if msg := await(t, store, 3); msg != "" {
			t.Fatalf("AwaitConsumer failed: %s", msg)
		}
		// The poll at 3s may run just before or just after the set.
		if d := time.Since(start); d != 3*time.Second && d != 3*time.Second+5*time.Millisecond {
			t.Errorf("AwaitConsumer returned after %v, want 3s (when cursor 3 was set) or one poll later", d)
		}
	})
}

func TestAwaitConsumerAlreadyPast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		if msg := await(t, store, 0); msg != "" {
			t.Errorf("AwaitConsumer(0) with no cursor failed: %s", msg)
		}
		_ = store.SetCursor(t.Context(), "c", "10")
		if msg := await(t, store, 9); msg != "" {
			t.Errorf("AwaitConsumer(9) at cursor 10 failed: %s", msg)
		}
	})
}

// TestAwaitConsumerFailsOnTimeout checks the fix of luno/reflex's
// bug: a consumer that never gets there fails the test.
func TestAwaitConsumerFailsOnTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		_ = store.SetCursor(t.Context(), "c", "2")
		start := time.Now()
		msg := await(t, store, 3)
		if msg == "" {
			t.Fatal("AwaitConsumer returned normally, want a test failure")
		}
		if !strings.Contains(msg, `"2"`) {
			t.Errorf("failure %q does not name the last cursor", msg)
		}
		if d := time.Since(start); d != 15*time.Second {
			t.Errorf("AwaitConsumer failed after %v, want 15s", d)
		}
	})
}

func TestAwaitConsumerFailsOnStoreError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{
			Get: func(string) error { return errors.New("db down") },
		}))
		if msg := await(t, store, 1); !strings.Contains(msg, "db down") {
			t.Errorf("failure = %q, want the GetCursor error", msg)
		}
	})
}

func TestAwaitConsumerFailsOnNonIntegerCursor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		_ = store.SetCursor(t.Context(), "c", "key|03|17")
		if msg := await(t, store, 1); !strings.Contains(msg, "not an integer") {
			t.Errorf("failure = %q, want one about the cursor", msg)
		}
	})
}
