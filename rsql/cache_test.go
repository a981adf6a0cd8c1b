package rsql

import (
	"context"
	"database/sql"
	"errors"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// fakeSource is an in-memory inner loader over events with IDs 1..n
// (those in holes are missing), counting its calls.
type fakeSource struct {
	mu    sync.Mutex
	n     int64
	holes map[int64]bool
	calls int
	ts    func(id int64) time.Time
}

func (f *fakeSource) load(_ context.Context, _ *sql.DB, prev int64, lag time.Duration, limit int) (batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var b batch
	cutoff := time.Now().Add(-lag)
	for id := prev + 1; id <= f.n && len(b.ids) < limit; id++ {
		if f.holes[id] {
			break
		}
		ts := time.Now().Add(-time.Hour)
		if f.ts != nil {
			ts = f.ts(id)
		}
		if lag > 0 && !ts.Before(cutoff) {
			break
		}
		b.events = append(b.events, &reflex.Event{ID: strconv.FormatInt(id, 10), Timestamp: ts})
		b.ids = append(b.ids, id)
	}
	b.next = prev
	if n := len(b.ids); n > 0 {
		b.next = b.ids[n-1]
	}
	b.full = len(b.ids) == limit
	return b, nil
}

func (f *fakeSource) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func newTestCache(size int) *rcache {
	return newRCache(size, defaultCacheBytes, metrics.NewEventsTable("cache_test"))
}

func cacheLoad(t *testing.T, c *rcache, src *fakeSource, prev int64, limit int) []int64 {
	t.Helper()
	b, err := c.load(t.Context(), nil, prev, 0, limit, src.load)
	if err != nil {
		t.Fatalf("load(%d): %v", prev, err)
	}
	return b.ids
}

func eqIDs(a []int64, from, to int64) bool {
	if int64(len(a)) != max(to-from+1, 0) {
		return false
	}
	for i, id := range a {
		if id != from+int64(i) {
			return false
		}
	}
	return true
}

func TestCacheVectors(t *testing.T) {
	// In a bubble: the cache keeps what the readers need for a second
	// of its clock, which must not pass between the loads.
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{n: 3}
		c := newTestCache(defaultCacheSize)

		// Empty: a miss.
		if got := cacheLoad(t, c, src, 0, 100); !eqIDs(got, 1, 3) || src.callCount() != 1 {
			t.Fatalf("first load = %v with %d calls, want 1..3 with 1", got, src.callCount())
		}
		// The same range again: a hit.
		if got := cacheLoad(t, c, src, 0, 100); !eqIDs(got, 1, 3) || src.callCount() != 1 {
			t.Fatalf("second load = %v with %d calls, want a hit", got, src.callCount())
		}
		// Offset hit.
		if got := cacheLoad(t, c, src, 2, 100); !eqIDs(got, 3, 3) || src.callCount() != 1 {
			t.Fatalf("load after 2 = %v with %d calls, want [3] from the cache", got, src.callCount())
		}
		// prev == tail: a miss.
		if got := cacheLoad(t, c, src, 3, 100); len(got) != 0 || src.callCount() != 2 {
			t.Fatalf("load after the tail = %v with %d calls, want a query", got, src.callCount())
		}
		// Appending at the tail.
		src.n = 5
		if got := cacheLoad(t, c, src, 3, 100); !eqIDs(got, 4, 5) {
			t.Fatalf("load after 3 = %v", got)
		}
		if got := c.ids; !eqIDs(got, 1, 5) {
			t.Fatalf("cache = %v, want 1..5", got)
		}
		// A load past a hole after the tail replaces the cache.
		src.n = 10
		if got := cacheLoad(t, c, src, 7, 100); !eqIDs(got, 8, 10) {
			t.Fatalf("load after 7 = %v", got)
		}
		if got := c.ids; !eqIDs(got, 8, 10) {
			t.Fatalf("cache = %v, want 8..10", got)
		}
		// An overlapping load is ignored.
		cacheLoad(t, c, &fakeSource{n: 10}, 5, 100)
		if got := c.ids; !eqIDs(got, 8, 10) {
			t.Fatalf("cache after overlap = %v, want 8..10", got)
		}
	})
}

func TestCacheTrims(t *testing.T) {
	src := &fakeSource{n: 200}
	c := newTestCache(100)
	if got := cacheLoad(t, c, src, 0, 200); len(got) != 200 {
		t.Fatalf("loaded %d, want 200", len(got))
	}
	if got := c.ids; !eqIDs(got, 101, 200) {
		t.Fatalf("cache holds %d..%d, want the newest 100", got[0], got[len(got)-1])
	}
}

// TestCacheByteCap: beyond maxBytes the cache drops whole batches, oldest
// first, since only then is their memory freed.
func TestCacheByteCap(t *testing.T) {
	c := newRCache(1000, 1000, metrics.NewEventsTable("cache_test"))
	src := &fakeSource{n: 50}
	for prev := int64(0); prev < 50; prev += 10 {
		b, _ := src.load(t.Context(), nil, prev, 0, 10)
		b.bytes = 300
		c.mu.Lock()
		c.addLocked(b)
		c.mu.Unlock()
	}
	if !eqIDs(c.ids, 21, 50) || c.bytes != 900 || len(c.segs) != 3 {
		t.Fatalf("cache holds %v (%d bytes in %d batches), want 21..50 in 900 bytes, 3 batches", c.ids, c.bytes, len(c.segs))
	}
	// Trimming by count keeps a batch that is still partly cached.
	c.size = 25
	src.n = 55
	b, _ := src.load(t.Context(), nil, 50, 0, 10)
	b.bytes = 100
	c.mu.Lock()
	c.addLocked(b)
	c.mu.Unlock()
	if !eqIDs(c.ids, 31, 55) || c.bytes != 700 || len(c.segs) != 3 || c.segs[0].first != 31 {
		t.Fatalf("cache holds %v (%d bytes, batches %v), want 31..55 in 700 bytes from 3 batches", c.ids, c.bytes, c.segs)
	}
	// A batch bigger than the cap leaves the cache empty.
	b, _ = (&fakeSource{n: 60}).load(t.Context(), nil, 55, 0, 10)
	b.bytes = 5000
	c.mu.Lock()
	c.addLocked(b)
	c.mu.Unlock()
	if len(c.ids) != 0 || c.bytes != 0 || len(c.segs) != 0 {
		t.Fatalf("cache holds %v (%d bytes), want nothing", c.ids, c.bytes)
	}
}

// tailBatch decodes one row, as a load at the head finds it.
func tailBatch(id int64) batch {
	var d decoder
	d.add(id, []byte("foreign"), time.Now(), 1, nil, nil)
	return d.finish()
}

// TestCacheMemoryPerEvent: events loaded one per load (a tail) cost the
// cache about their own size, not a chunk each.
func TestCacheMemoryPerEvent(t *testing.T) {
	const n = 10_000
	c := newRCache(n, defaultCacheBytes, metrics.NewEventsTable("cache_test"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for id := int64(1); id <= n; id++ {
		c.mu.Lock()
		c.addLocked(tailBatch(id))
		c.mu.Unlock()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(c.ids) != n {
		t.Fatalf("cache holds %d events, want %d", len(c.ids), n)
	}
	// An event is about 120 bytes, plus its strings and the cache's arrays.
	if per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n; per > 512 {
		t.Errorf("cache of %d tailed events: %d bytes per event, want at most 512", n, per)
	}
	runtime.KeepAlive(c)
}

// TestCacheReleasesDropped: events dropped from the cache become garbage
// (the arrays are copied once their dropped prefix grows), and so do the
// batches they came from.
func TestCacheReleasesDropped(t *testing.T) {
	const size, n = 100, 1000
	c := newTestCache(size)
	var early []weak.Pointer[reflex.Event]
	for id := int64(1); id <= n; id++ {
		b := tailBatch(id)
		if id <= n-size-minCompact-1 {
			early = append(early, weak.Make(b.events[0]))
		}
		c.mu.Lock()
		c.addLocked(b)
		c.mu.Unlock()
	}
	runtime.GC()
	for i, p := range early {
		if p.Value() != nil {
			t.Fatalf("event %d of %d is still reachable after the cache dropped it (cache holds %d..%d)", i+1, n, c.ids[0], c.ids[len(c.ids)-1])
		}
	}
	runtime.KeepAlive(c)
}

// TestCacheKeepsWhatReadersNeed: the cache holds the events of the
// current window and those a recent reader has not read yet, not size
// events for streams that all keep up with the head; a reader that pauses
// for longer than two windows still gets the right events, from the
// database.
func TestCacheKeepsWhatReadersNeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const step = 10 * time.Millisecond // one event per step
		src := &fakeSource{}
		c := newTestCache(defaultCacheSize)
		var head, slow int64 // positions of a head reader and a slower one
		slowHits := 0
		for i := range 400 {
			src.mu.Lock()
			src.n++
			src.mu.Unlock()
			if got := cacheLoad(t, c, src, head, 100); !eqIDs(got, head+1, head+1) {
				t.Fatalf("head reader after %d got %v", head, got)
			}
			head++
			// The slower reader loads every 50 steps (half a window) for
			// the first 200 events, then pauses for two windows and more.
			if i%50 == 49 && i < 200 {
				calls := src.callCount()
				if got := cacheLoad(t, c, src, slow, 100); !eqIDs(got, slow+1, head) {
					t.Fatalf("slow reader after %d got %v, want %d..%d", slow, got, slow+1, head)
				}
				if src.callCount() == calls {
					slowHits++
				}
				slow = head
			}
			time.Sleep(step)
		}
		if slowHits != 4 {
			t.Errorf("slow reader hit the cache %d times of 4", slowHits)
		}
		// Only the events of the current window (plus those of the window
		// before, for the readers of that window) are kept.
		if n := len(c.ids); n > 2*int(readerWindow/step) {
			t.Errorf("cache holds %d events for readers at the head, want at most %d", n, 2*int(readerWindow/step))
		}
		calls := src.callCount()
		if got := cacheLoad(t, c, src, slow, 1000); !eqIDs(got, slow+1, head) {
			t.Fatalf("slow reader after its pause got %d events, want %d..%d", len(got), slow+1, head)
		}
		if src.callCount() != calls+1 {
			t.Errorf("slow reader after its pause: %d loads, want 1 (its events were dropped)", src.callCount()-calls)
		}
	})
}

func TestCacheHitIgnoresLimit(t *testing.T) {
	src := &fakeSource{n: 50}
	c := newTestCache(100)
	cacheLoad(t, c, src, 0, 50)
	if got := cacheLoad(t, c, src, 0, 10); len(got) != 50 {
		t.Fatalf("hit returned %d events, want all 50 cached", len(got))
	}
}

func TestCacheLag(t *testing.T) {
	now := time.Now()
	src := &fakeSource{n: 4, ts: func(id int64) time.Time {
		if id <= 2 {
			return now.Add(-time.Hour)
		}
		return now
	}}
	c := newTestCache(100)
	cacheLoad(t, c, src, 0, 100)
	b, err := c.load(t.Context(), nil, 0, time.Minute, 100, src.load)
	if err != nil {
		t.Fatal(err)
	}
	if !eqIDs(b.ids, 1, 2) || src.callCount() != 1 {
		t.Fatalf("lagged hit = %v with %d calls, want [1 2] from the cache", b.ids, src.callCount())
	}
	b, _ = c.load(t.Context(), nil, 2, time.Minute, 100, src.load)
	if len(b.ids) != 0 || b.next != 2 || src.callCount() != 1 {
		t.Fatalf("lagged hit after 2 = %v (next %d) with %d calls, want an empty hit", b.ids, b.next, src.callCount())
	}
}

func TestCacheRejectsNonConsecutive(t *testing.T) {
	c := newTestCache(100)
	bad := func(context.Context, *sql.DB, int64, time.Duration, int) (batch, error) {
		return batch{events: []*reflex.Event{{ID: "1"}, {ID: "3"}}, ids: []int64{1, 3}}, nil
	}
	if _, err := c.load(t.Context(), nil, 0, 0, 100, bad); !errors.Is(err, ErrConsecEvent) {
		t.Fatalf("load error = %v, want ErrConsecEvent", err)
	}
	if len(c.ids) != 0 {
		t.Errorf("cache holds %v after a bad load", c.ids)
	}
}

// TestCacheSingleFlight: concurrent misses at the same position share one
// load.
func TestCacheSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(100)
		release := make(chan struct{})
		var calls int
		inner := func(ctx context.Context, db *sql.DB, prev int64, lag time.Duration, limit int) (batch, error) {
			calls++
			<-release
			return (&fakeSource{n: 3}).load(ctx, db, prev, lag, limit)
		}
		var wg sync.WaitGroup
		results := make([][]int64, 8)
		for i := range results {
			wg.Go(func() {
				b, err := c.load(t.Context(), nil, 0, 0, 100, inner)
				if err != nil {
					t.Error(err)
				}
				results[i] = b.ids
			})
		}
		synctest.Wait()
		if calls != 1 {
			t.Fatalf("%d loads in flight, want 1", calls)
		}
		close(release)
		wg.Wait()
		for i, r := range results {
			if !eqIDs(r, 1, 3) {
				t.Errorf("reader %d got %v", i, r)
			}
		}
	})
}

// TestCacheSingleFlightCancelled: a reader sharing the load of a reader
// whose context ends retries with its own.
func TestCacheSingleFlightCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(100)
		var calls int
		inner := func(ctx context.Context, db *sql.DB, prev int64, lag time.Duration, limit int) (batch, error) {
			calls++
			if calls == 1 {
				<-ctx.Done()
				return batch{}, ctx.Err()
			}
			return (&fakeSource{n: 3}).load(ctx, db, prev, lag, limit)
		}
		ctx, cancel := context.WithCancel(t.Context())
		go func() { _, _ = c.load(ctx, nil, 0, 0, 100, inner) }()
		synctest.Wait()
		var got []int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			b, err := c.load(t.Context(), nil, 0, 0, 100, inner)
			if err != nil {
				t.Error(err)
			}
			got = b.ids
		}()
		synctest.Wait()
		cancel()
		<-done
		if !eqIDs(got, 1, 3) || calls != 2 {
			t.Fatalf("got %v after %d loads, want 1..3 after a retry", got, calls)
		}
	})
}

// TestDisableCache runs in a child process, since DisableCache cannot be
// undone.
func TestDisableCache(t *testing.T) {
	if os.Getenv("RSQL_DISABLE_CACHE_CHILD") == "1" {
		src := &fakeSource{n: 3}
		c := newTestCache(100)
		DisableCache()
		cacheLoad(t, c, src, 0, 100)
		cacheLoad(t, c, src, 0, 100)
		if src.callCount() != 2 {
			t.Fatalf("%d loads, want 2: every load reads through", src.callCount())
		}
		if !eqIDs(c.ids, 1, 3) {
			t.Fatalf("cache = %v, want it still filled", c.ids)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDisableCache$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RSQL_DISABLE_CACHE_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestCacheStreamQueries: two lagged readers of the same events cost one
// query with the cache and one each without it.
func TestCacheStreamQueries(t *testing.T) {
	// In a bubble: the cache keeps what the readers need for a second
	// of its clock, which must not pass between the loads.
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			opts []EventsOption
			want int
		}{{nil, 1}, {[]EventsOption{WithoutEventsCache()}, 2}} {
			src := &fakeSource{n: 3}
			loader := func(ctx context.Context, db *sql.DB, prev int64, lag time.Duration) ([]*reflex.Event, error) {
				b, err := src.load(ctx, db, prev, lag, 100)
				for _, e := range b.events {
					e.Type = eventtype.Type(1)
				}
				return b.events, err
			}
			table := NewEventsTable("cached", append(tc.opts, WithEventsLoader(loader))...)
			for range 2 {
				cl := table.Stream(t.Context(), nil, "", reflex.WithStreamLag(time.Minute), reflex.WithStreamToHead())
				for range 3 {
					if _, err := cl.Recv(); err != nil {
						t.Fatal(err)
					}
				}
				_ = cl.(interface{ Close() error }).Close()
			}
			if got := src.callCount(); got != tc.want {
				t.Errorf("opts %d: %d loader calls for two readers, want %d", len(tc.opts), got, tc.want)
			}
		}
	})
}

func BenchmarkCacheHit(b *testing.B) {
	src := &fakeSource{n: 10_000}
	c := newTestCache(defaultCacheSize)
	ctx := context.Background()
	if _, err := c.load(ctx, nil, 0, 0, 10_000, src.load); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if bt, _ := c.load(ctx, nil, 5000, 0, 1000, src.load); len(bt.ids) != 5000 {
			b.Fatal("miss")
		}
	}
}

// BenchmarkGapDetect measures the gap detector and noop filter over a
// 1000-event batch from an in-memory loader.
func BenchmarkGapDetect(b *testing.B) {
	evs := make([]*reflex.Event, 1000)
	for i := range evs {
		evs[i] = &reflex.Event{ID: strconv.Itoa(i + 1), ForeignID: "f", Type: eventtype.Type(1)}
	}
	loader := func(context.Context, *sql.DB, int64, time.Duration) ([]*reflex.Event, error) { return evs, nil }
	tab := NewEventsTable("bench_gaps", WithEventsLoader(loader), WithoutEventsCache())
	ctx := context.Background()
	for b.Loop() {
		if bt, err := tab.load(ctx, nil, 0, 0, 1000, false, nil); err != nil || len(bt.ids) != 1000 {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecoder measures turning 1000 scanned rows into events.
func BenchmarkDecoder(b *testing.B) {
	now := time.Now()
	fid := []byte("123456")
	meta := []byte("some metadata")
	for b.Loop() {
		var d decoder
		d.grow(1000)
		for i := range 1000 {
			m := meta
			if i%4 != 0 {
				m = nil
			}
			d.add(int64(i+1), fid, now, 1, m, nil)
		}
		if bt := d.finish(); len(bt.ids) != 1000 {
			b.Fatal("short")
		}
	}
}
