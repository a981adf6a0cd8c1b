package testmock_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/testmock"
)

// TestCursorStoreMock uses the mock as luno/reflex users' tests do: with
// expectations, under reflex.Run.
func TestCursorStoreMock(t *testing.T) {
	l := reflextest.NewLog()
	l.Append(reflex.Event{Type: testType(1)}, reflex.Event{Type: testType(1)}, reflex.Event{Type: testType(1)})

	cs := new(testmock.CursorStore)
	cs.On("GetCursor", mock.Anything, "c").Return("1", nil).Once()
	cs.On("SetCursor", mock.Anything, "c", "2").Return(nil).Once()
	cs.On("SetCursor", mock.Anything, "c", "3").Return(nil).Once()
	cs.On("Flush", mock.Anything).Return(nil).Once()

	consumer := reflex.NewConsumer("c", func(context.Context, *reflex.Event) error { return nil })
	err := reflex.Run(t.Context(), reflex.NewSpec(l.Stream, cs, consumer, reflex.WithStreamToHead()))
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Run = %v, want ErrHeadReached", err)
	}
	cs.AssertExpectations(t)
}

func TestCursorStoreMockResultFuncs(t *testing.T) {
	ctx := t.Context()
	errSet := errors.New("set failed")
	cs := new(testmock.CursorStore)
	cs.On("GetCursor", mock.Anything, mock.Anything).Return(
		func(_ context.Context, name string) string { return name + "-cursor" },
		func(_ context.Context, name string) error { return nil })
	cs.On("SetCursor", mock.Anything, "bad", mock.Anything).Return(func(context.Context, string, string) error { return errSet })
	cs.On("SetCursor", mock.Anything, "good", mock.Anything).Return(nil)
	cs.On("Flush", mock.Anything).Return(func(ctx context.Context) error { return ctx.Err() })

	if got, err := cs.GetCursor(ctx, "x"); got != "x-cursor" || err != nil {
		t.Errorf("GetCursor = %q, %v; want x-cursor, nil", got, err)
	}
	if err := cs.SetCursor(ctx, "bad", "1"); !errors.Is(err, errSet) {
		t.Errorf("SetCursor(bad) = %v, want %v", err, errSet)
	}
	if err := cs.SetCursor(ctx, "good", "1"); err != nil {
		t.Errorf("SetCursor(good) = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := cs.Flush(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Flush = %v, want the function's result", err)
	}
	cs.AssertNumberOfCalls(t, "SetCursor", 2)
}
