package reflex_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// userEvent is the event type enum of the examples.
type userEvent int

const (
	UserCreated userEvent = 1
	UserUpdated userEvent = 2
	UserDeleted userEvent = 3
)

func (t userEvent) ReflexType() int { return int(t) }

// ExampleRun is the README's quick start.
func ExampleRun() {
	// An in-memory log stands in for a database table or a remote service.
	events := reflextest.NewLog()
	events.Append(
		reflex.Event{ForeignID: "42", Type: UserCreated},
		reflex.Event{ForeignID: "42", Type: UserUpdated},
	)

	consumer := reflex.NewConsumer("welcome-emails",
		func(ctx context.Context, e *reflex.Event) error {
			fmt.Printf("event %s: user %s type %d\n", e.ID, e.ForeignID, e.Type.ReflexType())
			return nil
		})

	cursors := reflextest.NewCursorStore()
	spec := reflex.NewSpec(events.Stream, cursors, consumer, reflex.WithStreamToHead())

	err := reflex.Run(context.Background(), spec) // blocks; always returns an error
	fmt.Println(reflex.IsHeadReachedErr(err), cursors.Cursor("welcome-emails"))
	// Output:
	// event 1: user 42 type 1
	// event 2: user 42 type 2
	// true 2
}

// ExampleNewConsumer shows filters and a recovery function: skipped events
// count as consumed, and the recovery function decides which errors stop
// Run.
func ExampleNewConsumer() {
	events := reflextest.NewLog()
	events.Append(
		reflex.Event{ForeignID: "1", Type: UserCreated},
		reflex.Event{ForeignID: "2", Type: UserDeleted},
		reflex.Event{ForeignID: "bot-3", Type: UserCreated},
		reflex.Event{ForeignID: "4", Type: UserUpdated},
		reflex.Event{ForeignID: "5", Type: UserCreated},
	)
	errGone := errors.New("user gone")

	consumer := reflex.NewConsumer("profiles",
		func(ctx context.Context, e *reflex.Event) error {
			if e.ForeignID == "4" {
				return errGone
			}
			fmt.Printf("event %s: user %s\n", e.ID, e.ForeignID)
			return nil
		},
		// Deleted users are not interesting; the event filter then drops bots.
		reflex.WithFilterIncludeTypes(UserCreated, UserUpdated),
		reflex.WithEventFilter(func(e *reflex.Event) (bool, error) {
			return len(e.ForeignID) < 4 || e.ForeignID[:4] != "bot-", nil
		}),
		// Swallow errors about users that no longer exist.
		reflex.WithRecoverFunction(func(ctx context.Context, e *reflex.Event, c reflex.Consumer, err error) error {
			if errors.Is(err, errGone) {
				fmt.Printf("event %s: skipped by %s: %v\n", e.ID, c.Name(), err)
				return nil
			}
			return err
		}),
		reflex.WithConsumerLagAlert(time.Hour),
	)

	cursors := reflextest.NewCursorStore()
	err := reflex.Run(context.Background(), reflex.NewSpec(events.Stream, cursors, consumer, reflex.WithStreamToHead()))
	fmt.Println(err)
	fmt.Println("cursor:", cursors.Cursor("profiles"))
	// Output:
	// event 1: user 1
	// event 4: skipped by profiles: user gone
	// event 5: user 5
	// recv error: the event stream has reached the current head
	// cursor: 5
}

// ExampleNewSpec shows that a Spec resumes from its stored cursor: after a
// consume error, running it again redelivers the failed event.
func ExampleNewSpec() {
	events := reflextest.NewLog()
	events.Append(
		reflex.Event{ForeignID: "1", Type: UserCreated},
		reflex.Event{ForeignID: "2", Type: UserCreated},
		reflex.Event{ForeignID: "3", Type: UserCreated},
	)

	failures := 1
	consumer := reflex.NewConsumer("mailer", func(ctx context.Context, e *reflex.Event) error {
		if e.ID == "2" && failures > 0 {
			failures--
			return errors.New("smtp timeout")
		}
		fmt.Println("mailed user", e.ForeignID)
		return nil
	})
	spec := reflex.NewSpec(events.Stream, reflextest.NewCursorStore(), consumer, reflex.WithStreamToHead())

	for range 2 {
		err := reflex.Run(context.Background(), spec)
		fmt.Println(spec.Name()+":", err)
	}
	// Output:
	// mailed user 1
	// mailer: consume error: smtp timeout
	// mailed user 2
	// mailed user 3
	// mailer: recv error: the event stream has reached the current head
}
