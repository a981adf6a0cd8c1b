package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/seed-e488ba2e/reflex"
)

type deadLetter struct{ consumer, eventID, msg string }

// letters records dead letters; fail makes recording fail.
type letters struct {
	got  []deadLetter
	fail error
}

func (l *letters) insert(ctx context.Context, consumerName, eventID, errMsg string) error {
	if l.fail != nil {
		return l.fail
	}
	l.got = append(l.got, deadLetter{consumerName, eventID, errMsg})
	return nil
}

// TestDeadLetterArgumentOrder: the consumer name and event ID reach the
// ErrorInsertFunc in its documented order (luno/reflex swapped them).
func TestDeadLetterArgumentOrder(t *testing.T) {
	var l letters
	c := NewDeadLetterConsumer("dl_consumer", 0, func(context.Context, *reflex.Event) error { return errTest }, l.insert)
	if err := c.Consume(t.Context(), &reflex.Event{ID: "42"}); err != nil {
		t.Fatalf("Consume = %v, want nil", err)
	}
	want := []deadLetter{{consumer: "dl_consumer", eventID: "42", msg: errTest.Error()}}
	if !slices.Equal(l.got, want) {
		t.Fatalf("recorded %+v, want %+v", l.got, want)
	}
}

func TestDeadLetterVectors(t *testing.T) {
	errWrite := errors.New("write failed")
	tests := []struct {
		name      string
		retries   int
		failTimes int
		failErr   error
		writeErr  error
		events    int
		wantFail  []bool
		wantRecs  int
	}{
		{"retries 0 records each", 0, 1, errTest, nil, 3, []bool{false, false, false}, 3},
		{"expected error not recorded", 0, 1, reflex.ErrStopped, nil, 1, []bool{false}, 0},
		{"write failure blocks", 0, 100, errTest, errWrite, 1, []bool{true, true, true}, 0},
		{"retries 2", 2, 100, errTest, nil, 2, []bool{true, true, false, true, true, false}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := letters{fail: tc.writeErr}
			c := NewDeadLetterConsumer("dl", tc.retries, failNTimes(tc.failTimes, tc.failErr), l.insert)
			if got := consumeSeq(t, c, tc.events, len(tc.wantFail)); !slices.Equal(got, tc.wantFail) {
				t.Errorf("failures = %v, want %v", got, tc.wantFail)
			}
			if len(l.got) != tc.wantRecs {
				t.Errorf("recorded %d, want %d", len(l.got), tc.wantRecs)
			}
		})
	}
}

// TestDeadLetterWriteFailureError: a failed record returns the original
// error, with the recording error also matchable.
func TestDeadLetterWriteFailureError(t *testing.T) {
	errWrite := errors.New("write failed")
	l := letters{fail: errWrite}
	c := NewDeadLetterConsumer("dl", 0, func(context.Context, *reflex.Event) error { return errTest }, l.insert)
	for i := range 3 {
		err := c.Consume(t.Context(), &reflex.Event{ID: fmt.Sprint(1)})
		if !errors.Is(err, errTest) || !errors.Is(err, errWrite) {
			t.Fatalf("Consume #%d = %v, want %v wrapping %v", i, err, errTest, errWrite)
		}
	}
	// Once recording works again the event is recorded and skipped.
	l.fail = nil
	if err := c.Consume(t.Context(), &reflex.Event{ID: "1"}); err != nil {
		t.Fatalf("Consume = %v, want nil", err)
	}
	if len(l.got) != 1 {
		t.Fatalf("recorded %d, want 1", len(l.got))
	}
}

func TestDeadLetterCtxDone(t *testing.T) {
	var l letters
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := NewDeadLetterConsumer("dl", 0, func(ctx context.Context, e *reflex.Event) error { return errTest }, l.insert)
	if err := c.Consume(ctx, &reflex.Event{ID: "1"}); !errors.Is(err, errTest) {
		t.Fatalf("Consume = %v, want %v", err, errTest)
	}
	if len(l.got) != 0 {
		t.Fatalf("recorded %d while the context was done, want 0", len(l.got))
	}
}
