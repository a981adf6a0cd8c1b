package rsql

import (
	"testing"

	"github.com/seed-e488ba2e/reflex"
)

// TestCatchUpLimit: a stream far behind the head doubles its loads up to
// maxCatchUpLimit rows, but no further than maxCatchUpBytes of events at
// the size the last load measured, and never below the lookup limit.
func TestCatchUpLimit(t *testing.T) {
	b := func(n, perEvent int) batch { return batch{events: make([]*reflex.Event, n), bytes: n * perEvent} }
	for _, tc := range []struct {
		name        string
		limit, base int
		b           batch
		want        int
	}{
		{"small events double", 1000, 1000, b(1000, 200), 2000},
		{"small events cap at rows", 4000, 1000, b(4000, 200), maxCatchUpLimit},
		{"big events cap at bytes", 1000, 100, b(1000, 1200), maxCatchUpBytes / 1200},
		{"huge events keep the base", 1000, 1000, b(1000, 64<<10), 1000},
		{"unknown size doubles", 1000, 1000, batch{events: make([]*reflex.Event, 1000)}, 2000},
	} {
		if got := catchUpLimit(tc.limit, tc.base, tc.b); got != tc.want {
			t.Errorf("%s: catchUpLimit(%d, %d, %d events of %d bytes) = %d, want %d",
				tc.name, tc.limit, tc.base, len(tc.b.events), tc.b.bytes, got, tc.want)
		}
	}
}
