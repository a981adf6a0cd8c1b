package testmock_test

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/testmock"
)

type testType int

func (t testType) ReflexType() int { return int(t) }

func TestTestStreamerConformance(t *testing.T) {
	reflextest.TestStreamFunc(t, reflextest.StreamHarness{
		New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
			s := testmock.NewTestStreamer(t)
			var (
				mu   sync.Mutex
				next int
			)
			return s.StreamFunc(), func(t *testing.T, events ...reflex.Event) {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range events {
					next++
					e.ID = strconv.Itoa(next)
					e.Timestamp = time.Now()
					s.InsertEvent(e)
				}
			}
		},
		InvalidCursors: reflextest.InvalidIntCursors(),
	})
}

// open opens a stream that is closed at the end of the test.
func open(t *testing.T, s testmock.TestStreamer, after string, opts ...reflex.StreamOption) reflex.StreamClient {
	t.Helper()
	cl, err := s.StreamFunc()(t.Context(), after, opts...)
	if err != nil {
		t.Fatalf("StreamFunc(%q): %v", after, err)
	}
	t.Cleanup(func() { _ = cl.(io.Closer).Close() })
	return cl
}

// drain reads a to-head stream and returns the IDs it delivered.
func drain(t *testing.T, cl reflex.StreamClient) []string {
	t.Helper()
	var ids []string
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			return ids
		}
		if err != nil {
			t.Fatalf("Recv after %v: %v", ids, err)
		}
		ids = append(ids, e.ID)
	}
}

func insertIDs(s testmock.TestStreamer, ids ...string) {
	for _, id := range ids {
		s.InsertEvent(reflex.Event{ID: id, Type: testType(1), Timestamp: time.Now()})
	}
}

// TestTestStreamerCursorIsAnID checks that the cursor is compared with event
// IDs, not used as an index into the log (luno/reflex's bug).
func TestTestStreamerCursorIsAnID(t *testing.T) {
	s := testmock.NewTestStreamer(t)
	insertIDs(s, "10", "20", "30")
	for _, tc := range []struct {
		after string
		want  []string
	}{
		{"", []string{"10", "20", "30"}},
		{"0", []string{"10", "20", "30"}},
		{"5", []string{"10", "20", "30"}},
		{"10", []string{"20", "30"}},
		{"15", []string{"20", "30"}},
		{"20", []string{"30"}},
		{"30", nil},
		{"1000", nil},
	} {
		got := drain(t, open(t, s, tc.after, reflex.WithStreamToHead()))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("after %q: got %v, want %v", tc.after, got, tc.want)
		}
	}
}

func TestTestStreamerResumeSeesLaterEvents(t *testing.T) {
	s := testmock.NewTestStreamer(t)
	insertIDs(s, "1", "2")
	cl := open(t, s, "2")
	insertIDs(s, "3")
	e, err := cl.Recv()
	if err != nil || e.ID != "3" {
		t.Fatalf("Recv = (%v, %v), want event 3", e, err)
	}
}

func TestTestStreamerReturnsEventsAsInserted(t *testing.T) {
	s := testmock.NewTestStreamer(t)
	want := reflex.Event{
		ID:        "7",
		Type:      testType(3),
		ForeignID: "user-9",
		Timestamp: time.Date(2024, 5, 1, 2, 3, 4, 5, time.UTC),
		MetaData:  []byte{0, 1, 2},
		Trace:     []byte("trace"),
	}
	s.InsertEvent(want)
	e, err := open(t, s, "").Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*e, want) {
		t.Errorf("Recv = %+v, want %+v", *e, want)
	}
}

func TestTestStreamerInvalidCursor(t *testing.T) {
	s := testmock.NewTestStreamer(t)
	if _, err := s.StreamFunc()(t.Context(), "abc"); err == nil {
		t.Error("StreamFunc with cursor \"abc\" returned nil error")
	}
	// From-head ignores the cursor, so it need not be valid.
	if _, err := s.StreamFunc()(t.Context(), "abc", reflex.WithStreamFromHead()); err != nil {
		t.Errorf("StreamFunc from head with cursor \"abc\": %v", err)
	}
}

func TestTestStreamerFromHeadResolvedAtOpen(t *testing.T) {
	s := testmock.NewTestStreamer(t)
	insertIDs(s, "1", "2")
	cl := open(t, s, "1", reflex.WithStreamFromHead(), reflex.WithStreamToHead())
	insertIDs(s, "3", "4")
	if got := drain(t, cl); !reflect.DeepEqual(got, []string{"3", "4"}) {
		t.Errorf("from head: got %v, want [3 4]", got)
	}
}

func TestTestStreamerToHeadWrapsErrHeadReached(t *testing.T) {
	s := testmock.NewTestStreamer(t)
	_, err := open(t, s, "", reflex.WithStreamToHead()).Recv()
	if !errors.Is(err, reflex.ErrHeadReached) {
		t.Errorf("Recv = %v, want ErrHeadReached", err)
	}
}

// TestTestStreamerWakesOnInsert checks that a blocked Recv returns as soon
// as an event is inserted, without polling: no (fake) time passes.
func TestTestStreamerWakesOnInsert(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testmock.NewTestStreamer(t)
		cl := open(t, s, "")
		start := time.Now()
		got := make(chan string)
		go func() {
			e, err := cl.Recv()
			if err != nil {
				t.Errorf("Recv: %v", err)
				close(got)
				return
			}
			got <- e.ID
		}()
		synctest.Wait()
		insertIDs(s, "1")
		if id := <-got; id != "1" {
			t.Errorf("Recv = %q, want 1", id)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Recv returned %v after the insert, want at once (no polling)", d)
		}
	})
}

func TestTestStreamerStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testmock.NewTestStreamer(t)
		insertIDs(s, "1")
		cl := open(t, s, "1")
		errc := make(chan error)
		go func() {
			_, err := cl.Recv()
			errc <- err
		}()
		synctest.Wait()
		s.Stop()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("blocked Recv after Stop = %v, want context.Canceled", err)
		}
		s.Stop() // idempotent
		if _, err := open(t, s, "").Recv(); !errors.Is(err, context.Canceled) {
			t.Errorf("Recv on a stream opened after Stop = %v, want context.Canceled", err)
		}
	})
}

func TestTestStreamerStoppedAtCleanup(t *testing.T) {
	var cl reflex.StreamClient
	t.Run("inner", func(t *testing.T) {
		s := testmock.NewTestStreamer(t)
		var err error
		cl, err = s.StreamFunc()(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
	})
	if _, err := cl.Recv(); !errors.Is(err, context.Canceled) {
		t.Errorf("Recv after the test's cleanup = %v, want context.Canceled", err)
	}
}

func TestTestStreamerContextError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testmock.NewTestStreamer(t)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cl, err := s.StreamFunc()(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Recv(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Recv = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestTestStreamerClose(t *testing.T) {
	s := testmock.NewTestStreamer(t)
	insertIDs(s, "1", "2")
	cl := open(t, s, "")
	if _, err := cl.Recv(); err != nil {
		t.Fatal(err)
	}
	c := cl.(io.Closer)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if e, err := cl.Recv(); !errors.Is(err, context.Canceled) {
		t.Errorf("Recv after Close = (%v, %v), want context.Canceled", e, err)
	}
	// Other streams are unaffected.
	if got := drain(t, open(t, s, "", reflex.WithStreamToHead())); len(got) != 2 {
		t.Errorf("other stream got %v, want 2 events", got)
	}
}

func TestTestStreamerLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testmock.NewTestStreamer(t)
		start := time.Now()
		s.InsertEvent(reflex.Event{ID: "1", Timestamp: start.Add(-time.Second)})

		if _, err := open(t, s, "", reflex.WithStreamLag(time.Minute), reflex.WithStreamToHead()).Recv(); !reflex.IsHeadReachedErr(err) {
			t.Errorf("to-head Recv of a too recent event = %v, want ErrHeadReached", err)
		}

		e, err := open(t, s, "", reflex.WithStreamLag(time.Minute)).Recv()
		if err != nil || e.ID != "1" {
			t.Fatalf("Recv = (%v, %v), want event 1", e, err)
		}
		if d := time.Since(start); d != 59*time.Second {
			t.Errorf("Recv waited %v, want 59s (lag minus age)", d)
		}
	})
}
