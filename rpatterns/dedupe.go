package rpatterns

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// DefaultDedupeSize is the number of keys a DedupeConsumer remembers by
// default (see WithDedupeSize).
const DefaultDedupeSize = 10000

// DedupeOption configures NewDedupeConsumer.
type DedupeOption func(*dedupeConfig)

type dedupeConfig struct {
	key    func(*reflex.Event) string
	window time.Duration
	size   int
}

// WithDedupeKey sets what makes two events duplicates: the same key. The
// default is the event ID, which catches events delivered again (after a
// restart whose cursor was not flushed, or by sources that repeat
// themselves); a key such as the foreign ID and type catches different
// events about the same change. Events whose key is "" are never skipped.
func WithDedupeKey(key func(*reflex.Event) string) DedupeOption {
	return func(c *dedupeConfig) { c.key = key }
}

// WithDedupeWindow makes a key count as seen only for d after the event
// that carried it was consumed. The default, 0, is no time limit: a key
// is remembered until WithDedupeSize pushes it out.
func WithDedupeWindow(d time.Duration) DedupeOption {
	return func(c *dedupeConfig) { c.window = d }
}

// WithDedupeSize bounds the keys remembered to n, forgetting the oldest
// first. The default is DefaultDedupeSize (10000). Memory is about n
// times the length of a key plus 64 bytes.
func WithDedupeSize(n int) DedupeOption {
	return func(c *dedupeConfig) { c.size = n }
}

// DedupeConsumer is a consumer that skips events it has consumed already,
// by key. Make one with NewDedupeConsumer. It is safe for concurrent use.
type DedupeConsumer struct {
	inner reflex.Consumer
	cfg   dedupeConfig

	mu    sync.Mutex        // protects the following fields
	seen  map[string]uint64 // key -> seq of its last record
	ring  []seenKey         // the records, oldest at start; len(ring) == cfg.size
	start int               // index of the oldest record
	n     int               // records in use
	seq   uint64            // of the last record
}

// seenKey is a record of a key: the seq-th, at a time.
type seenKey struct {
	key string
	at  time.Time
	seq uint64
}

var (
	_ reflex.Consumer    = (*DedupeConsumer)(nil)
	_ reflex.ResetterCtx = (*DedupeConsumer)(nil)
	_ reflex.Stopper     = (*DedupeConsumer)(nil)
)

// NewDedupeConsumer returns a consumer, named as inner, that passes each
// event to inner unless an event with the same key (see WithDedupeKey)
// was consumed successfully before, within the window (see
// WithDedupeWindow) and among the last keys remembered (see
// WithDedupeSize): such an event is skipped, and Consume returns nil, so
// Run moves the cursor past it. A key is recorded only once inner returns
// nil, so a failed event is passed again when it comes again. The memory
// is in-process: it starts empty, and survives Run's restarts (Reset is
// passed on to inner and keeps it), not the process's. Two events with the
// same key consumed concurrently (under a concurrent wrapper) may both
// pass. Stop is passed on to inner. NewDedupeConsumer panics, with an
// "rpatterns:"-prefixed message, if inner or an option is nil, the key
// function is nil, the window is negative or the size is not positive.
func NewDedupeConsumer(inner reflex.Consumer, opts ...DedupeOption) *DedupeConsumer {
	if inner == nil {
		panic("rpatterns: NewDedupeConsumer: nil consumer")
	}
	cfg := dedupeConfig{key: func(e *reflex.Event) string { return e.ID }, size: DefaultDedupeSize}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("rpatterns: NewDedupeConsumer: option %d is nil", i))
		}
		o(&cfg)
	}
	switch {
	case cfg.key == nil:
		panic("rpatterns: NewDedupeConsumer: nil key function")
	case cfg.window < 0:
		panic(fmt.Sprintf("rpatterns: NewDedupeConsumer: negative window %v", cfg.window))
	case cfg.size <= 0:
		panic(fmt.Sprintf("rpatterns: NewDedupeConsumer: size %d is not positive", cfg.size))
	}
	return &DedupeConsumer{inner: inner, cfg: cfg, seen: make(map[string]uint64), ring: make([]seenKey, cfg.size)}
}

// Name returns the wrapped consumer's name.
func (c *DedupeConsumer) Name() string { return c.inner.Name() }

// Consume passes e to the wrapped consumer unless its key was seen.
func (c *DedupeConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	key := c.cfg.key(e)
	if key == "" {
		return c.inner.Consume(ctx, e)
	}
	c.mu.Lock()
	c.expireLocked(time.Now())
	_, dup := c.seen[key]
	c.mu.Unlock()
	if dup {
		return nil
	}
	if err := c.inner.Consume(ctx, e); err != nil {
		return err
	}
	c.mu.Lock()
	c.recordLocked(key, time.Now())
	c.mu.Unlock()
	return nil
}

// expireLocked forgets the keys recorded longer than the window ago.
func (c *DedupeConsumer) expireLocked(now time.Time) {
	if c.cfg.window == 0 {
		return
	}
	for c.n > 0 && now.Sub(c.ring[c.start].at) >= c.cfg.window {
		c.popLocked()
	}
}

// popLocked forgets the oldest record (its key only if it was not
// recorded again since).
func (c *DedupeConsumer) popLocked() {
	old := c.ring[c.start]
	if seq, ok := c.seen[old.key]; ok && seq == old.seq {
		delete(c.seen, old.key)
	}
	c.ring[c.start] = seenKey{}
	c.start = (c.start + 1) % len(c.ring)
	c.n--
}

// recordLocked remembers key as seen at now, forgetting the oldest entry
// if the ring is full.
func (c *DedupeConsumer) recordLocked(key string, now time.Time) {
	if c.n == len(c.ring) {
		c.popLocked()
	}
	c.seq++
	c.ring[(c.start+c.n)%len(c.ring)] = seenKey{key: key, at: now, seq: c.seq}
	c.n++
	c.seen[key] = c.seq
}

// Len returns the number of keys remembered now.
func (c *DedupeConsumer) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Reset calls the wrapped consumer's Reset, if it has one; the keys
// remembered are kept.
func (c *DedupeConsumer) Reset(ctx context.Context) error { return resetConsumer(ctx, c.inner) }

// Stop calls the wrapped consumer's Stop, if it has one.
func (c *DedupeConsumer) Stop() error { return stopConsumer(c.inner) }
