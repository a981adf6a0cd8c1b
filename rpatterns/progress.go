package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/seed-e488ba2e/reflex"
)

// ErrEventIDNotInt is returned by ConcurrentConsumer.Consume and
// KeyedConsumer.Consume (wrapped, naming the ID) for an event whose ID is
// not a base-10 integer: they track completion by integer IDs.
var ErrEventIDNotInt = errors.New("rpatterns: event ID is not an integer")

// eventIDInt returns e's ID as an int64 or an error wrapping
// ErrEventIDNotInt.
func eventIDInt(e *reflex.Event) (int64, error) {
	id, err := strconv.ParseInt(e.ID, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrEventIDNotInt, e.ID)
	}
	return id, nil
}

// progress moves a consumer's cursor to the highest event up to which all
// dispatched events completed, from a goroutine of its own (so that slow
// cursor stores do not slow the workers), and keeps the first failure.
type progress struct {
	name  string
	store reflex.CursorStore

	mu      sync.Mutex // protects the following fields
	seq     *GapSequence
	failed  error
	written int64         // the cursor last set, 0 for none; never decreases
	kick    chan struct{} // wakes the loop; nil when it is not running
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

func newProgress(name string, store reflex.CursorStore) *progress {
	return &progress{name: name, store: store, seq: NewGapSequence()}
}

// err returns the first failure, or nil.
func (p *progress) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// fail records err unless a failure is recorded already.
func (p *progress) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed == nil {
		p.failed = err
	}
}

// doing registers id as dispatched and returns the sequence to report its
// completion to.
func (p *progress) doing(id int64) *GapSequence {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq.Doing(id)
	return p.seq
}

// done reports the completion of id in seq and wakes the loop.
func (p *progress) done(seq *GapSequence, id int64) {
	seq.Done(id)
	p.mu.Lock()
	kick := p.kick
	p.mu.Unlock()
	if kick == nil {
		return
	}
	select {
	case kick <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// start starts the loop; it runs until parent is done or stopLoop.
func (p *progress) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	kick := make(chan struct{}, 1) // one pending wake-up is enough
	p.mu.Lock()
	p.kick, p.stop = kick, cancel
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			if err := p.write(ctx); err != nil {
				p.fail(err)
				return
			}
		}
	})
}

// stopLoop stops the loop and waits for it. It is idempotent.
func (p *progress) stopLoop() {
	p.mu.Lock()
	stop := p.stop
	p.stop, p.kick = nil, nil
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	p.wg.Wait()
}

// write sets the cursor to the sequence's current maximum if it moved.
// Writes are not concurrent: the loop writes, and the final write happens
// after the loop stopped.
func (p *progress) write(ctx context.Context) error {
	p.mu.Lock()
	cur, written := p.seq.CurrentMax(), p.written
	p.mu.Unlock()
	if cur <= written {
		return nil
	}
	c := strconv.FormatInt(cur, 10)
	if err := p.store.SetCursor(ctx, p.name, c); err != nil {
		return fmt.Errorf("rpatterns: consumer %q: set cursor %s: %w", p.name, c, err)
	}
	p.mu.Lock()
	p.written = cur
	p.mu.Unlock()
	return nil
}

// finish writes the final cursor and flushes the store; the loop and the
// workers must have stopped.
func (p *progress) finish(ctx context.Context) error {
	if err := p.write(ctx); err != nil {
		return err
	}
	if err := p.store.Flush(ctx); err != nil {
		return fmt.Errorf("rpatterns: consumer %q: flush cursors: %w", p.name, err)
	}
	return nil
}

// reset forgets all events and the failure, for a new run that resumes at
// the stored cursor. It keeps written: Run reads the cursor before Reset
// writes the previous run's final one, so a run may start below written
// (its first events are then delivered again), and writing its lower
// cursors would move the cursor back, which stores such as rsql's reject.
func (p *progress) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq = NewGapSequence()
	p.failed = nil
}
