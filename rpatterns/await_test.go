package rpatterns

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// awaitAsync starts Await and returns a channel receiving its result.
func awaitAsync(ctx context.Context, stream reflex.StreamFunc, poll func() (bool, error), fid string, types ...reflex.EventType) <-chan error {
	res := make(chan error, 1)
	go func() { res <- Await(ctx, stream, poll, fid, types...) }()
	return res
}

func TestAwaitStreamEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := reflextest.NewLog()
		// Events before Await starts do not count.
		log.Append(reflex.Event{ForeignID: "x", Type: testType(2)})
		res := awaitAsync(t.Context(), log.Stream, nil, "x", testType(2), testType(3))
		synctest.Wait()

		log.Append(
			reflex.Event{ForeignID: "y", Type: testType(2)}, // wrong foreign ID
			reflex.Event{ForeignID: "x", Type: testType(1)}, // wrong type
		)
		synctest.Wait()
		select {
		case err := <-res:
			t.Fatalf("Await returned %v before a matching event", err)
		default:
		}
		log.Append(reflex.Event{ForeignID: "x", Type: testType(3)})
		if err := <-res; err != nil {
			t.Fatalf("Await = %v, want nil", err)
		}
	})
}

// TestAwaitAnyType: with no types, any event of the foreign ID matches.
func TestAwaitAnyType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := reflextest.NewLog()
		res := awaitAsync(t.Context(), log.Stream, nil, "x")
		synctest.Wait()
		log.Append(reflex.Event{ForeignID: "x", Type: testType(7)})
		if err := <-res; err != nil {
			t.Fatalf("Await = %v, want nil", err)
		}
	})
}

// TestAwaitPoll: pollFn is called at once and then every second until it
// reports true.
func TestAwaitPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var calls []time.Duration
		poll := func() (bool, error) {
			calls = append(calls, time.Since(start))
			return len(calls) == 3, nil
		}
		if err := Await(t.Context(), reflextest.NewLog().Stream, poll, "x", testType(1)); err != nil {
			t.Fatalf("Await = %v, want nil", err)
		}
		want := []time.Duration{0, time.Second, 2 * time.Second}
		if len(calls) != len(want) {
			t.Fatalf("poll called at %v, want %v", calls, want)
		}
		for i := range want {
			if calls[i] != want[i] {
				t.Fatalf("poll called at %v, want %v", calls, want)
			}
		}
	})
}

func TestAwaitErrors(t *testing.T) {
	errPoll, errOpen, errRecv := errors.New("poll"), errors.New("open"), errors.New("recv")
	never := func() (bool, error) { return false, nil }
	failingOpen := func(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) {
		return nil, errOpen
	}
	tests := []struct {
		name   string
		stream func(l *reflextest.Log) reflex.StreamFunc
		poll   func() (bool, error)
		cancel bool
		want   error
	}{
		{"poll error", func(l *reflextest.Log) reflex.StreamFunc { return l.Stream }, func() (bool, error) { return false, errPoll }, false, errPoll},
		{"open error", func(*reflextest.Log) reflex.StreamFunc { return failingOpen }, never, false, errOpen},
		{"recv error", func(l *reflextest.Log) reflex.StreamFunc {
			l.SetRecvHook(func(context.Context, *reflex.Event) error { return errRecv })
			return l.Stream
		}, never, false, errRecv},
		{"cancelled", func(l *reflextest.Log) reflex.StreamFunc { return l.Stream }, never, true, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := reflextest.NewLog()
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				res := awaitAsync(ctx, tc.stream(log), tc.poll, "x", testType(1))
				synctest.Wait()
				log.Append(reflex.Event{ForeignID: "y", Type: testType(1)})
				if tc.cancel {
					time.Sleep(5 * time.Second) // fake time: several polls
					cancel()
				}
				// The error as it came, comparable with ==.
				if err := <-res; err != tc.want {
					t.Fatalf("Await = %v, want %v (unwrapped)", err, tc.want)
				}
			})
		})
	}
}

// TestAwaitCancelsOtherSide: when the poll side wins, the stream side is
// cancelled and its goroutine ends on its own, closing the client
// (synctest fails on leaked goroutines).
func TestAwaitCancelsOtherSide(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var closed atomic.Bool
		log := reflextest.NewLog()
		stream := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
			cl, err := log.Stream(ctx, after, opts...)
			return closer{cl, &closed}, err
		}
		if err := Await(t.Context(), stream, func() (bool, error) { return true, nil }, "x"); err != nil {
			t.Fatalf("Await = %v", err)
		}
		synctest.Wait()
		if !closed.Load() {
			t.Error("stream client not closed")
		}
	})
}

// deafClient is a stream client whose Recv ignores its context: it blocks
// until release is closed, as many test doubles do.
type deafClient struct{ release chan struct{} }

func (c deafClient) Recv() (*reflex.Event, error) {
	<-c.release
	return nil, errors.New("released")
}

// TestAwaitReturnsOnFirstAnswer: Await returns as soon as one side
// answers, even when the other side's Recv ignores its context.
func TestAwaitReturnsOnFirstAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		stream := func(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) {
			return deafClient{release}, nil
		}
		res := awaitAsync(t.Context(), stream, func() (bool, error) { return true, nil }, "x")
		synctest.Wait()
		select {
		case err := <-res:
			if err != nil {
				t.Errorf("Await = %v, want nil", err)
			}
		default:
			t.Error("Await did not return after the poll answered: it waits for a Recv that ignores its context")
		}
		close(release) // lets the stream's goroutine (and Await, if stuck) end
		synctest.Wait()
	})
}

type closer struct {
	reflex.StreamClient
	closed *atomic.Bool
}

func (c closer) Close() error {
	c.closed.Store(true)
	return nil
}

// nilClient is a misbehaving stream client whose Recv returns no event and
// no error.
type nilClient struct{}

func (nilClient) Recv() (*reflex.Event, error) { return nil, nil }

// TestAwaitBadStream: a stream that returns a nil client or a nil event
// makes Await return an error instead of panicking in its goroutine.
func TestAwaitBadStream(t *testing.T) {
	for name, stream := range map[string]reflex.StreamFunc{
		"nil client": func(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) { return nil, nil },
		"nil event": func(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) {
			return nilClient{}, nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := Await(t.Context(), stream, nil, "x"); err == nil {
				t.Fatal("Await = nil, want an error")
			}
		})
	}
}
