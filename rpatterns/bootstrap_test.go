package rpatterns

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// optsRecorder wraps a stream and records the options of each open.
type optsRecorder struct {
	stream reflex.StreamFunc
	mu     sync.Mutex
	opened []reflex.StreamOptions
}

func (r *optsRecorder) Stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	r.mu.Lock()
	r.opened = append(r.opened, reflex.ResolveOptions(opts...))
	r.mu.Unlock()
	return r.stream(ctx, after, opts...)
}

func (r *optsRecorder) last() reflex.StreamOptions {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opened[len(r.opened)-1]
}

func TestBootstrapSpec(t *testing.T) {
	log := newLog(3)
	rec := &optsRecorder{stream: log.Stream}
	store := reflextest.NewCursorStore()
	var seen recorder
	spec := NewBootstrapSpec(rec.Stream, store, reflex.NewConsumer("boot", seen.fn), reflex.WithStreamToHead())

	// No cursor: start at the head, so the existing events are not seen.
	runToHead(t, spec)
	if !rec.last().StreamFromHead || len(seen.got()) != 0 {
		t.Fatalf("first run: from head %v, saw %q; want from head, nothing", rec.last().StreamFromHead, seen.got())
	}

	// New events after a cursor exists are consumed normally.
	log.Append(reflex.Event{}, reflex.Event{})
	_ = store.SetCursor(t.Context(), "boot", "3")
	runToHead(t, spec)
	if rec.last().StreamFromHead {
		t.Error("second run streamed from head although a cursor exists")
	}
	if got := seen.got(); !slices.Equal(got, []string{"4", "5"}) {
		t.Errorf("saw %q, want [4 5]", got)
	}
}

func TestBootstrapGetCursorError(t *testing.T) {
	store := reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{Get: func(string) error { return errTest }}))
	var seen recorder
	err := reflex.Run(t.Context(), NewBootstrapSpec(newLog(1).Stream, store, reflex.NewConsumer("boot", seen.fn)))
	if !errors.Is(err, errTest) {
		t.Fatalf("Run = %v, want %v", err, errTest)
	}
}

// TestBootstrapConsumableOptions: the deprecated consumable honours its
// options (luno/reflex ignored them) and those of each Consume call.
func TestBootstrapConsumableOptions(t *testing.T) {
	log := newLog(2)
	rec := &optsRecorder{stream: log.Stream}
	var seen recorder
	bc := NewBootstrapConsumable(rec.Stream, reflextest.NewCursorStore(), reflex.WithStreamToHead())
	err := bc.Consume(t.Context(), reflex.NewConsumer("boot", seen.fn), reflex.WithStreamLag(0))
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Consume = %v, want ErrHeadReached (WithStreamToHead honoured)", err)
	}
	if o := rec.last(); !o.StreamToHead || !o.StreamFromHead {
		t.Errorf("stream options %+v, want to head and from head", o)
	}
}
