package testmock_test

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/testmock"
)

// TestServiceTest is how a service test uses the package: a consumer runs
// in the background and the test waits until it has processed an event.
func TestServiceTest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		streamer := testmock.NewTestStreamer(t)
		store := reflextest.NewCursorStore()
		var seen []string
		consumer := reflex.NewConsumer("service-test", func(ctx context.Context, e *reflex.Event) error {
			time.Sleep(time.Second) // slow work, on the fake clock
			seen = append(seen, e.ForeignID)
			return nil
		})

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- reflex.Run(ctx, reflex.NewSpec(streamer.StreamFunc(), store, consumer)) }()
		defer func() {
			cancel()
			if err := <-done; !reflex.IsExpected(err) {
				t.Errorf("Run = %v, want a cancellation error", err)
			}
		}()

		for i := 1; i <= 3; i++ {
			streamer.InsertEvent(reflex.Event{ID: strconv.Itoa(i), ForeignID: "user-" + strconv.Itoa(i), Type: testType(1), Timestamp: time.Now()})
		}
		testmock.AwaitConsumer(t, store, "service-test", 3)
		if len(seen) != 3 || seen[2] != "user-3" {
			t.Errorf("consumer saw %v, want user-1..user-3", seen)
		}
	})
}
