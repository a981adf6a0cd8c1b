package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// cacheDisabled is set by DisableCache.
var cacheDisabled atomic.Bool

// DisableCache makes every load of every events table in the process read
// through to the database (the caches are still filled). It is meant for
// tests that change event rows behind the tables' backs; there is no way
// to re-enable the caches. It is safe for concurrent use.
func DisableCache() { cacheDisabled.Store(true) }

// loadFunc is a load without the cache: gap detector and base loader.
type loadFunc func(ctx context.Context, db *sql.DB, prev int64, lag time.Duration, limit int) (batch, error)

// rcache is a table's read-through cache (contract 4.9): a contiguous,
// ascending window of at most size events near the head, shared by all
// streams of the table. Concurrent misses for the same position share one
// load.
type rcache struct {
	size int
	m    *metrics.EventsTable

	mu      sync.RWMutex // protects the following fields
	events  []*reflex.Event
	ids     []int64
	flights map[flightKey]*flight
	// tailHeadCh is the headCh of the load that added the tail, if that
	// load reached the head; nil otherwise.
	tailHeadCh <-chan struct{}
}

// flightKey identifies a load that concurrent misses can share.
type flightKey struct {
	prev  int64
	lag   time.Duration
	limit int
}

// flight is an in-progress load; done is closed when b and err are set.
type flight struct {
	done chan struct{}
	b    batch
	err  error
}

func newRCache(size int, m *metrics.EventsTable) *rcache {
	return &rcache{size: size, m: m, flights: make(map[flightKey]*flight)}
}

// load returns the cached events after prev (all of them, or with lag
// those older than lag) when prev+1 is cached; otherwise it loads through
// inner and adds the result to the cache.
func (c *rcache) load(ctx context.Context, db *sql.DB, prev int64, lag time.Duration, limit int, inner loadFunc) (batch, error) {
	if !cacheDisabled.Load() {
		c.mu.RLock()
		b, ok := c.hitLocked(prev, lag)
		c.mu.RUnlock()
		if ok {
			c.m.CacheHits.Inc()
			return b, nil
		}
	}
	c.m.CacheMisses.Inc()
	key := flightKey{prev: prev, lag: lag, limit: limit}
	for {
		c.mu.Lock()
		if !cacheDisabled.Load() {
			if b, ok := c.hitLocked(prev, lag); ok {
				c.mu.Unlock()
				return b, nil
			}
		}
		f, shared := c.flights[key]
		if !shared {
			f = &flight{done: make(chan struct{})}
			c.flights[key] = f
		}
		c.mu.Unlock()

		if shared {
			select {
			case <-ctx.Done():
				return batch{}, ctx.Err()
			case <-f.done:
			}
			if f.err != nil && isContextErr(f.err) && ctx.Err() == nil {
				continue // the loader's context ended, not ours: retry
			}
			b := f.b
			b.head = false // loaded before this caller may have looked (headCh tells)
			return b, f.err
		}

		f.b, f.err = inner(ctx, db, prev, lag, limit)
		if f.err == nil {
			f.err = checkConsecutive(f.b.ids)
		}
		c.mu.Lock()
		if f.err == nil && c.addLocked(f.b) {
			c.tailHeadCh = f.b.headCh
		}
		delete(c.flights, key)
		c.mu.Unlock()
		close(f.done)
		return f.b, f.err
	}
}

// hitLocked returns the cached events after prev if prev+1 is cached.
func (c *rcache) hitLocked(prev int64, lag time.Duration) (batch, bool) {
	n := len(c.ids)
	if n == 0 || prev+1 < c.ids[0] || prev+1 > c.ids[n-1] {
		return batch{}, false
	}
	i := int(prev + 1 - c.ids[0])
	evs, ids := c.events[i:], c.ids[i:]
	if lag > 0 {
		cutoff := time.Now().Add(-lag)
		k := 0
		for k < len(evs) && evs[k].Timestamp.Before(cutoff) {
			k++
		}
		evs, ids = evs[:k], ids[:k]
	}
	b := batch{events: evs, ids: ids, next: prev}
	if len(ids) > 0 {
		b.next = ids[len(ids)-1]
	}
	if lag == 0 {
		b.headCh = c.tailHeadCh // the hit ends at the tail
	}
	return b, true
}

// addLocked adds a loaded batch of consecutive events: it starts the cache
// if empty, appends it if it follows the tail, replaces the cache if it
// starts past the tail, and ignores an overlap. The oldest events beyond
// the size are dropped. Readers may hold sub-slices of the cache: it only
// ever appends past their length, never overwrites. It reports whether b
// became the tail.
func (c *rcache) addLocked(b batch) bool {
	if len(b.ids) == 0 {
		return false
	}
	n := len(c.ids)
	switch {
	case n == 0 || b.ids[0] > c.ids[n-1]+1:
		c.events, c.ids = b.events, b.ids
	case b.ids[0] == c.ids[n-1]+1:
		c.events = append(c.events, b.events...)
		c.ids = append(c.ids, b.ids...)
	default:
		return false
	}
	if over := len(c.ids) - c.size; over > 0 {
		c.events, c.ids = c.events[over:], c.ids[over:]
	}
	return true
}

// checkConsecutive reports ErrConsecEvent if ids are not consecutive.
func checkConsecutive(ids []int64) error {
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			return fmt.Errorf("rsql: cache: event %d follows %d: %w", ids[i], ids[i-1], ErrConsecEvent)
		}
	}
	return nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
