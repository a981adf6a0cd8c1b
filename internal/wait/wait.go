// Package wait holds the one way this module waits for a duration that a
// context can cut short: a reusable timer, so that a loop which waits on
// every turn allocates one timer, not one per turn.
package wait

import (
	"context"
	"time"
)

// Timer waits for durations, cancellably. The zero value is ready to use;
// a Timer is not safe for concurrent use (each waiting loop owns its own).
type Timer struct {
	t *time.Timer
}

// Sleep blocks for d, or until ctx is done, and returns ctx.Err() in the
// second case. A d of zero or less returns at once (nil unless ctx is
// already done).
func (w *Timer) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	if w.t == nil {
		w.t = time.NewTimer(d)
	} else {
		w.t.Reset(d)
	}
	select {
	case <-ctx.Done():
		w.t.Stop()
		return ctx.Err()
	case <-w.t.C:
		return nil
	}
}

// Stop releases the timer; the Timer stays usable. It is safe to call on
// the zero value.
func (w *Timer) Stop() {
	if w.t != nil {
		w.t.Stop()
	}
}
