package testmock

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

const (
	// awaitTimeout bounds AwaitConsumer: a hang guard for consumers that
	// never get there, generous enough for slow CI machines.
	awaitTimeout = 15 * time.Second
	// awaitPoll is how often AwaitConsumer reads the cursor; the
	// CursorStore interface has no change notification.
	awaitPoll = 5 * time.Millisecond
)

// AwaitConsumer blocks until the cursor of consumerName in store is an
// integer greater than or equal to eventID (no cursor counts as 0),
// reading it every 5 ms. It fails the test (t.Fatalf) if that does not
// happen within 15 seconds, if the test's context ends first, if GetCursor
// returns an error, or if the cursor is not an integer. Like t.Fatalf, it
// must be called from the goroutine running the test.
//
// Use it when a test cannot control a consumer that runs in the
// background; stores that buffer cursors are awaited only as far as they
// have flushed.
func AwaitConsumer(t *testing.T, store reflex.CursorStore, consumerName string, eventID int64) {
	t.Helper()
	awaitConsumer(t, store, consumerName, eventID)
}

// awaitConsumer is AwaitConsumer for any testing.TB.
func awaitConsumer(t testing.TB, store reflex.CursorStore, consumerName string, eventID int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), awaitTimeout)
	defer cancel()
	var timer wait.Timer
	defer timer.Stop()

	last := ""
	for {
		cur, err := store.GetCursor(ctx, consumerName)
		if err != nil && ctx.Err() == nil {
			t.Fatalf("AwaitConsumer(%q, %d): GetCursor: %v", consumerName, eventID, err)
		}
		if err == nil {
			last = cur
			var n int64 // no cursor counts as 0
			if cur != "" {
				n, err = strconv.ParseInt(cur, 10, 64)
				if err != nil {
					t.Fatalf("AwaitConsumer(%q, %d): cursor %s is not an integer", consumerName, eventID, bounded.Quote(cur))
				}
			}
			if n >= eventID {
				return
			}
		}
		if timer.Sleep(ctx, awaitPoll) != nil {
			t.Fatalf("AwaitConsumer(%q, %d): cursor is %s after %v: %v", consumerName, eventID, bounded.Quote(last), awaitTimeout, context.Cause(ctx))
		}
	}
}
