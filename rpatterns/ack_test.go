package rpatterns

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

func TestAckSpecVectors(t *testing.T) {
	tests := []struct {
		name        string
		n           int
		ack         func() AckFunc
		wantSets    []string
		wantFlushes int
	}{
		{"no acks", 4, func() AckFunc {
			return func(context.Context, *AckEvent) error { return nil }
		}, nil, 1},
		{"ack all", 4, func() AckFunc {
			return func(ctx context.Context, e *AckEvent) error { return e.Ack(ctx) }
		}, ids(1, 4), 5},
		{"ack only 2", 4, func() AckFunc {
			return func(ctx context.Context, e *AckEvent) error {
				if e.ID == "2" {
					return e.Ack(ctx)
				}
				return nil
			}
		}, []string{"2"}, 2},
		{"batches of 2", 6, func() AckFunc {
			var held []*AckEvent
			return func(ctx context.Context, e *AckEvent) error {
				held = append(held, e)
				if len(held) < 2 {
					return nil
				}
				last := held[len(held)-1]
				held = nil
				return last.Ack(ctx)
			}
		}, []string{"2", "4", "6"}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := reflextest.NewCursorStore()
			ac := NewAckConsumer("acker", store, tc.ack())
			runToHead(t, NewAckSpec(newLog(tc.n).Stream, ac, reflex.WithStreamToHead()))
			if got := store.Sets("acker"); !slices.Equal(got, tc.wantSets) {
				t.Errorf("sets = %q, want %q", got, tc.wantSets)
			}
			if got := store.Flushes(); got != tc.wantFlushes {
				t.Errorf("flushes = %d, want %d", got, tc.wantFlushes)
			}
		})
	}
}

// TestAckSpecResumes: a new run starts after the last acknowledged event.
func TestAckSpecResumes(t *testing.T) {
	store := reflextest.NewCursorStore()
	log := newLog(5)
	var seen recorder
	ac := NewAckConsumer("acker", store, func(ctx context.Context, e *AckEvent) error {
		seen.add(e.ID)
		if e.ID == "3" {
			return e.Ack(ctx)
		}
		return nil
	})
	spec := NewAckSpec(log.Stream, ac, reflex.WithStreamToHead())
	runToHead(t, spec)
	runToHead(t, spec)
	if got, want := seen.got(), []string{"1", "2", "3", "4", "5", "4", "5"}; !slices.Equal(got, want) {
		t.Errorf("events seen = %q, want %q", got, want)
	}
}

// TestAckConsumerOptions: NewAckSpec applies the consumer options.
func TestAckConsumerOptions(t *testing.T) {
	log := reflextest.NewLog()
	log.Append(reflex.Event{Type: testType(1)}, reflex.Event{Type: testType(2)}, reflex.Event{Type: testType(1)})
	var seen recorder
	ac := NewAckConsumer("acker", reflextest.NewCursorStore(), func(ctx context.Context, e *AckEvent) error {
		seen.add(e.ID)
		return nil
	}, reflex.WithFilterIncludeTypes(testType(1)))
	runToHead(t, NewAckSpec(log.Stream, ac, reflex.WithStreamToHead()))
	if got := seen.got(); !slices.Equal(got, []string{"1", "3"}) {
		t.Errorf("events seen = %q, want [1 3]", got)
	}
	if ac.Name() != "acker" {
		t.Errorf("Name = %q, want acker", ac.Name())
	}
}

func TestAckErrors(t *testing.T) {
	errSet, errFlush := errors.New("set"), errors.New("flush")
	tests := []struct {
		name   string
		faults reflextest.Faults
		want   error
	}{
		{"set", reflextest.Faults{Set: func(string, string) error { return errSet }}, errSet},
		{"flush", reflextest.Faults{Flush: func() error { return errFlush }}, errFlush},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := reflextest.NewCursorStore(reflextest.WithFaults(tc.faults))
			ac := NewAckConsumer("acker", store, func(ctx context.Context, e *AckEvent) error { return e.Ack(ctx) })
			err := reflex.Run(t.Context(), NewAckSpec(newLog(1).Stream, ac, reflex.WithStreamToHead()))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Run = %v, want %v", err, tc.want)
			}
		})
	}
}
