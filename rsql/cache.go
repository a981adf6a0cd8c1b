package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
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

// rcache is a table's read-through cache: a contiguous, ascending window
// of the events near the head, shared by all streams of the table, of at
// most size events and about maxBytes of memory. Concurrent misses for the
// same position share one load.
//
// Readers: besides the events added during the current readerWindow (for
// streams that start or arrive at the same position soon after), the
// cache keeps only the events that a stream may still read from it: those
// after the lowest position at which a load through the cache left a
// stream (the last event it returned, or its prev if none) during the
// current or the previous window. Streams that all keep up with the head
// so hold about a window of events, not size; a stream that does not load
// for longer than a window may find its next events dropped and read them
// from the database.
//
// Memory: the events of one load share their allocations (see decoder),
// so the cache counts the memory of each added batch (a segment) until
// its last event leaves, and drops whole old segments to stay under
// maxBytes. Its arrays are copied once the dropped prefix outgrows the
// kept events, so dropped events are not kept reachable.
type rcache struct {
	size     int
	maxBytes int
	m        *metrics.EventsTable

	mu      sync.RWMutex // protects the following fields
	events  []*reflex.Event
	ids     []int64
	segs    []segment // ascending; segs[0] may start before ids[0]
	bytes   int       // sum of segs' bytes
	dropped int       // entries dropped from the front of the arrays
	flights map[flightKey]*flight
	// tailHeadCh is the headCh of the load that added the tail, if that
	// load reached the head; nil otherwise.
	tailHeadCh <-chan struct{}
	// lowPrev is the lowest reader position of the previous window
	// (noReader if none); windowStart is the start of the current one
	// and windowTail the cache's tail then (the events after it were
	// added during the window).
	lowPrev     int64
	windowStart time.Time
	windowTail  int64

	// lowCur is the lowest reader position of the current window, noReader
	// if none; hits under the read lock lower it atomically.
	lowCur atomic.Int64
}

// readerWindow is how long the cache keeps the events after a reader's
// position for it (between one and two windows): a stream that loads at
// least this often reads only from the cache while it keeps up.
const readerWindow = time.Second

// noReader is a window's lowest reader position when nobody loaded in it.
const noReader = math.MaxInt64

// minCompact is the fewest dropped entries for which the cache copies its
// arrays (a tiny cache would otherwise copy on every add).
const minCompact = 64

// segment is one batch added to the cache: its first ID and the memory its
// events pin together.
type segment struct {
	first int64
	bytes int
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

func newRCache(size, maxBytes int, m *metrics.EventsTable) *rcache {
	c := &rcache{size: size, maxBytes: maxBytes, m: m, flights: make(map[flightKey]*flight), lowPrev: noReader}
	c.lowCur.Store(noReader)
	return c
}

// sawReader records that a load left a stream at pos.
func (c *rcache) sawReader(pos int64) {
	for {
		cur := c.lowCur.Load()
		if pos >= cur || c.lowCur.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// rotateLocked starts a new window if the current one is over; tail is
// the cache's tail before an add (the ID before the added events if the
// cache is empty).
func (c *rcache) rotateLocked(now time.Time, tail int64) {
	if now.Sub(c.windowStart) >= readerWindow {
		c.lowPrev = c.lowCur.Swap(noReader)
		c.windowStart, c.windowTail = now, tail
	}
}

// readFloorLocked returns the ID at or below which the cache may drop
// events: no recent reader will read them and they were added before the
// current window. It returns -1 when no reader loaded in either window
// (then only the size and maxBytes bound the cache).
func (c *rcache) readFloorLocked() int64 {
	low := min(c.lowPrev, c.lowCur.Load())
	if low == noReader {
		return -1
	}
	return min(low, c.windowTail)
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
			c.sawReader(b.next)
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
				c.sawReader(b.next)
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
			if f.err == nil {
				c.sawReader(b.next)
			}
			return b, f.err
		}

		f.b, f.err = inner(ctx, db, prev, lag, limit)
		if f.err == nil {
			f.err = checkConsecutive(f.b.ids)
		}
		c.mu.Lock()
		if f.err == nil {
			c.sawReader(f.b.next)
			if c.addLocked(f.b) {
				c.tailHeadCh = f.b.headCh
			}
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
// the size, and the oldest segments beyond maxBytes, are dropped. Readers
// may hold sub-slices of the cache: it only ever appends past their
// length, never overwrites. It reports whether b became the tail.
func (c *rcache) addLocked(b batch) bool {
	if len(b.ids) == 0 {
		return false
	}
	n := len(c.ids)
	tail := b.ids[0] - 1
	if n > 0 {
		tail = c.ids[n-1]
	}
	c.rotateLocked(time.Now(), tail)
	switch {
	case n == 0 || b.ids[0] > c.ids[n-1]+1:
		c.events, c.ids = b.events, b.ids
		c.segs, c.bytes, c.dropped = c.segs[:0], 0, 0
	case b.ids[0] == c.ids[n-1]+1:
		c.events = append(c.events, b.events...)
		c.ids = append(c.ids, b.ids...)
	default:
		return false
	}
	size := b.bytes
	if size == 0 {
		size = estimateBytes(b.events)
	}
	c.segs = append(c.segs, segment{first: b.ids[0], bytes: size})
	c.bytes += size
	c.trimLocked()
	return true
}

// trimLocked drops the events no recent reader will read, the oldest
// events beyond the size and the oldest segments beyond maxBytes.
func (c *rcache) trimLocked() {
	drop := max(len(c.ids)-c.size, 0)
	if floor := c.readFloorLocked(); floor >= c.ids[0] {
		drop = max(drop, int(min(floor-c.ids[0]+1, int64(len(c.ids)))))
	}
	// Over maxBytes, drop whole segments, oldest first: only then is their
	// memory freed.
	freed := 0
	for k := 0; k < len(c.segs) && c.bytes-freed > c.maxBytes; k++ {
		freed += c.segs[k].bytes
		end := len(c.ids)
		if k+1 < len(c.segs) {
			end = int(c.segs[k+1].first - c.ids[0])
		}
		drop = max(drop, end)
	}
	if drop == 0 {
		return
	}
	c.events, c.ids = c.events[drop:], c.ids[drop:]
	c.dropped += drop
	// Forget the segments whose events are all gone.
	k := 0
	for k < len(c.segs) && (len(c.ids) == 0 || k+1 < len(c.segs) && c.segs[k+1].first <= c.ids[0]) {
		c.bytes -= c.segs[k].bytes
		k++
	}
	c.segs = append(c.segs[:0], c.segs[k:]...)
	if len(c.ids) == 0 {
		c.events, c.ids, c.dropped = nil, nil, 0
		return
	}
	if c.dropped > max(len(c.ids)/2, minCompact) {
		// The arrays' dropped prefix still references old events: copy
		// the kept ones to new arrays (readers keep the old ones).
		c.events = slices.Clone(c.events)
		c.ids = slices.Clone(c.ids)
		c.dropped = 0
	}
}

// estimateBytes is the memory of events loaded by a custom loader, which
// share no allocations as far as the cache knows.
func estimateBytes(evs []*reflex.Event) int {
	n := 0
	for _, e := range evs {
		n += eventSize + len(e.ID) + len(e.ForeignID) + cap(e.MetaData) + cap(e.Trace)
	}
	return n
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
