package rpatterns

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

type testType int

func (t testType) ReflexType() int { return int(t) }

var errTest = errors.New("test failure")

// newLog returns a log with n events with IDs 1..n, foreign ID "f<i%10>"
// and type 1.
func newLog(n int) *reflextest.Log {
	l := reflextest.NewLog()
	events := make([]reflex.Event, n)
	for i := range events {
		events[i] = reflex.Event{ForeignID: "f" + strconv.Itoa((i+1)%10), Type: testType(1)}
	}
	l.Append(events...)
	return l
}

// recorder records the IDs of the events it sees.
type recorder struct {
	mu  sync.Mutex
	ids []string
}

func (r *recorder) add(ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, ids...)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

func (r *recorder) fn(ctx context.Context, e *reflex.Event) error {
	r.add(e.ID)
	return nil
}

// ids returns the decimal IDs from..to inclusive.
func ids(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}

// runToHead runs spec with WithStreamToHead semantics expected from its
// stream options and returns Run's error, failing unless it is
// ErrHeadReached.
func runToHead(t *testing.T, spec reflex.Spec) {
	t.Helper()
	if err := reflex.Run(t.Context(), spec); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Run = %v, want ErrHeadReached", err)
	}
}

// sortedInts sorts decimal IDs numerically.
func sortedInts(s []string) []string {
	s = slices.Clone(s)
	slices.SortFunc(s, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return s
}
