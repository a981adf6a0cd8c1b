package reflextest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

type typ int

func (t typ) ReflexType() int { return int(t) }

func TestCursorStoreFaults(t *testing.T) {
	errGet, errSet, errFlush := errors.New("get"), errors.New("set"), errors.New("flush")
	s := reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{
		Get:   func(name string) error { return map[bool]error{true: errGet}[name == "bad"] },
		Set:   func(name, cursor string) error { return map[bool]error{true: errSet}[cursor == "13"] },
		Flush: func() error { return errFlush },
	}))
	ctx := t.Context()
	if _, err := s.GetCursor(ctx, "bad"); !errors.Is(err, errGet) {
		t.Errorf("GetCursor(bad) = %v, want %v", err, errGet)
	}
	if err := s.SetCursor(ctx, "c", "12"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCursor(ctx, "c", "13"); !errors.Is(err, errSet) {
		t.Errorf("SetCursor(13) = %v, want %v", err, errSet)
	}
	if err := s.Flush(ctx); !errors.Is(err, errFlush) {
		t.Errorf("Flush = %v, want %v", err, errFlush)
	}
	if got := s.Sets("c"); len(got) != 1 || got[0] != "12" {
		t.Errorf("Sets = %v, want [12] (a failed set has no effect)", got)
	}
	if got := s.Flushes(); got != 0 {
		t.Errorf("Flushes = %d, want 0 (failed flushes are not counted)", got)
	}
	if c, _ := s.GetCursor(ctx, "c"); c != "12" {
		t.Errorf("GetCursor = %q, want 12", c)
	}
}

func TestCursorStoreBuffering(t *testing.T) {
	s := reflextest.NewCursorStore(reflextest.WithBuffering())
	ctx := t.Context()
	_ = s.SetCursor(ctx, "c", "1")
	_ = s.SetCursor(ctx, "c", "2")
	if c, _ := s.GetCursor(ctx, "c"); c != "" {
		t.Errorf("GetCursor before Flush = %q, want \"\"", c)
	}
	_ = s.Flush(ctx)
	if c, _ := s.GetCursor(ctx, "c"); c != "2" {
		t.Errorf("GetCursor after Flush = %q, want 2", c)
	}
	if s.Flushes() != 1 || s.Cursor("c") != "2" {
		t.Errorf("Flushes = %d, Cursor = %q", s.Flushes(), s.Cursor("c"))
	}
}

func TestLogRecvHookRedelivers(t *testing.T) {
	l := reflextest.NewLog()
	l.Append(reflex.Event{ForeignID: "1", Type: typ(1)}, reflex.Event{ForeignID: "2", Type: typ(1)})
	boom := errors.New("boom")
	fail := true
	l.SetRecvHook(func(ctx context.Context, e *reflex.Event) error {
		if e.ID == "2" && fail {
			fail = false
			return boom
		}
		return nil
	})
	cl, err := l.Stream(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := cl.Recv(); err != nil || e.ID != "1" {
		t.Fatalf("Recv = %v, %v", e, err)
	}
	if _, err := cl.Recv(); !errors.Is(err, boom) {
		t.Fatalf("Recv = %v, want injected error", err)
	}
	if e, err := cl.Recv(); err != nil || e.ID != "2" {
		t.Fatalf("Recv after injected error = %v, %v; want event 2 again", e, err)
	}
}

func TestLogExplicitIDs(t *testing.T) {
	l := reflextest.NewLog()
	ids := l.Append(reflex.Event{ID: "100", Type: typ(1)}, reflex.Event{Type: typ(1)})
	if ids[0] != "100" || ids[1] != "101" {
		t.Fatalf("ids = %v", ids)
	}
	cl, _ := l.Stream(t.Context(), "100", reflex.WithStreamToHead())
	if e, err := cl.Recv(); err != nil || e.ID != "101" {
		t.Fatalf("Recv after 100 = %v, %v", e, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Append with a non-increasing ID did not panic")
		}
	}()
	l.Append(reflex.Event{ID: "5"})
}

func TestLogLagWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := reflextest.NewLog()
		start := time.Now()
		l.Append(reflex.Event{Type: typ(1)})
		cl, _ := l.Stream(t.Context(), "", reflex.WithStreamLag(time.Minute))
		if _, err := cl.Recv(); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("lagged Recv returned after %v, want 1m", waited)
		}
	})
}

// TestLogClose checks that Close ends the streams of the log, open and
// opened later, including a Recv waiting at the head or on a lag.
func TestLogClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := reflextest.NewLog()
		l.Append(reflex.Event{Type: typ(1)})
		atHead, _ := l.Stream(t.Context(), "1")
		lagged, _ := l.Stream(t.Context(), "", reflex.WithStreamLag(time.Hour))
		errs := make(chan error, 2)
		for _, cl := range []reflex.StreamClient{atHead, lagged} {
			go func() {
				_, err := cl.Recv()
				errs <- err
			}()
		}
		synctest.Wait()
		l.Close()
		l.Close() // idempotent
		for range 2 {
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Errorf("blocked Recv after Close = %v, want context.Canceled", err)
			}
		}
		later, err := l.Stream(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := later.Recv(); !errors.Is(err, context.Canceled) {
			t.Errorf("Recv of a stream opened after Close = %v, want context.Canceled", err)
		}
	})
}

// TestLogEventsAsGiven checks that WithEventsAsGiven keeps events as they
// are: no ID or timestamp filled in, IDs in any order.
func TestLogEventsAsGiven(t *testing.T) {
	l := reflextest.NewLog(reflextest.WithEventsAsGiven())
	l.Append(reflex.Event{ID: "5"}, reflex.Event{ID: "x"}, reflex.Event{ID: "3"}, reflex.Event{}, reflex.Event{ID: "9"})
	for i, e := range l.Events() {
		if !e.Timestamp.IsZero() {
			t.Errorf("event %d got timestamp %v", i, e.Timestamp)
		}
	}
	cl, err := l.Stream(t.Context(), "4", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		e, err := cl.Recv()
		if err != nil {
			break
		}
		ids = append(ids, e.ID)
	}
	// From the first event whose ID is above the cursor, in insertion
	// order.
	if fmt.Sprint(ids) != "[5 x 3  9]" {
		t.Errorf("after 4: IDs %q, want [5 x 3  9]", ids)
	}
}

func TestNilOptionsPanic(t *testing.T) {
	for name, build := range map[string]func(){
		"NewLog":         func() { reflextest.NewLog(nil) },
		"NewCursorStore": func() { reflextest.NewCursorStore(nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if msg, _ := recover().(string); msg != "reflextest: "+name+": option 0 is nil" {
					t.Errorf("panic %q, want one naming the nil option", msg)
				}
			}()
			build()
		})
	}
}
