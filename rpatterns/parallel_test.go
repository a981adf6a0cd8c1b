package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// shardOf returns the 1-based shard of e among shards.
func shardOf(t *testing.T, shards []ConsumerShard, e *reflex.Event) int {
	t.Helper()
	found := 0
	for m, s := range shards {
		ok, err := s.GetFilter()(e)
		if err != nil {
			t.Fatalf("filter of shard %d: %v", m+1, err)
		}
		if ok {
			if found != 0 {
				t.Fatalf("event %+v in shards %d and %d", e, found, m+1)
			}
			found = m + 1
		}
	}
	if found == 0 {
		t.Fatalf("event %+v in no shard", e)
	}
	return found
}

// TestShardVectors are luno/reflex's shard assignments.
func TestShardVectors(t *testing.T) {
	hello := func(*reflex.Event) ([]byte, error) { return []byte("Hello, World"), nil }
	tests := []struct {
		name   string
		n      int
		opts   []ParallelOption
		events []reflex.Event
		want   []int
	}{
		{"ids", 3, nil, []reflex.Event{{ID: "1"}, {ID: "2"}, {ID: "3"}, {ID: "4"}, {ID: "5"}}, []int{1, 3, 2, 1, 3}},
		{"types", 3, []ParallelOption{WithHashOption(HashOptionEventType)},
			[]reflex.Event{{ID: "1", Type: testType(1)}, {ID: "2", Type: testType(2)}, {ID: "3", Type: testType(3)}, {ID: "4", Type: testType(1)}, {ID: "5", Type: testType(1)}},
			[]int{1, 3, 2, 1, 1}},
		{"foreign ids", 3, []ParallelOption{WithHashOption(HashOptionEventForeignID)},
			[]reflex.Event{{ID: "1", ForeignID: "100"}, {ID: "2", ForeignID: "200"}, {ID: "3", ForeignID: "300"}, {ID: "4", ForeignID: "100"}, {ID: "5", ForeignID: "100"}},
			[]int{1, 2, 2, 1, 1}},
		{"custom constant", 3, []ParallelOption{WithHashFn(hello)},
			[]reflex.Event{{ID: "1"}, {ID: "2"}, {ID: "3"}}, []int{2, 2, 2}},
		{"four shards", 4, nil, []reflex.Event{{ID: "0"}, {ID: "1"}, {ID: "2"}, {ID: "3"}}, []int{4, 3, 2, 1}},
		// Option precedence: later options win; the custom option alone and a
		// nil function change nothing.
		{"custom option is a no-op", 3, []ParallelOption{WithHashOption(HashOptionEventType), WithHashOption(HashOptionCustomHashFn)},
			[]reflex.Event{{ID: "1", Type: testType(2)}}, []int{3}},
		{"nil hash fn ignored", 3, []ParallelOption{WithHashFn(hello), WithHashFn(nil)},
			[]reflex.Event{{ID: "1"}}, []int{2}},
		{"option after fn wins", 3, []ParallelOption{WithHashFn(hello), WithHashOption(HashOptionEventID)},
			[]reflex.Event{{ID: "2"}}, []int{3}},
		{"fn after option wins", 3, []ParallelOption{WithHashOption(HashOptionEventType), WithHashFn(hello)},
			[]reflex.Event{{ID: "1", Type: testType(1)}}, []int{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			shards := ConsumerShards("c", tc.n, tc.opts...)
			var got []int
			for _, e := range tc.events {
				got = append(got, shardOf(t, shards, &e))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("shards = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFNV1 checks the allocation-free hash against hash/fnv.New32 (FNV-1,
// not FNV-1a).
func TestFNV1(t *testing.T) {
	for i := range 2000 {
		b := make([]byte, rand.IntN(40))
		for j := range b {
			b[j] = byte(rand.IntN(256))
		}
		h := fnv.New32()
		h.Write(b)
		if got, want := fnv1(string(b)), h.Sum32(); got != want {
			t.Fatalf("case %d: fnv1(%q) = %#x, want %#x", i, b, got, want)
		}
	}
	h := fnv.New32a()
	h.Write([]byte("1"))
	if fnv1("1") == h.Sum32() {
		t.Fatal("fnv1 equals FNV-1a")
	}
}

func TestShardDistribution(t *testing.T) {
	const n, events = 10, 1000
	shards := ConsumerShards("c", n)
	counts := make([]int, n)
	for i := range events {
		counts[shardOf(t, shards, &reflex.Event{ID: strconv.Itoa(i)})-1]++
	}
	for m, c := range counts {
		if c < events/n*9/10 || c > events/n*11/10 {
			t.Errorf("shard %d has %d events, want %d ± 10%%", m+1, c, events/n)
		}
	}
}

func TestShardNames(t *testing.T) {
	var got []string
	for _, s := range ConsumerShards("base", 3) {
		got = append(got, s.Name)
	}
	if want := []string{"base_1_of_3", "base_2_of_3", "base_3_of_3"}; !slices.Equal(got, want) {
		t.Errorf("names = %q, want %q", got, want)
	}
	got = nil
	for _, s := range ConsumerShards("base", 2, WithNameFormatter(func(base string, m, n int) string {
		return fmt.Sprintf("%s-%d/%d", base, m, n)
	})) {
		got = append(got, s.Name)
	}
	if want := []string{"base-0/2", "base-1/2"}; !slices.Equal(got, want) {
		t.Errorf("formatted names = %q, want %q", got, want)
	}
}

func TestShardErrors(t *testing.T) {
	errHash := errors.New("hash")
	s := ConsumerShards("c", 2, WithHashFn(func(*reflex.Event) ([]byte, error) { return nil, errHash }))[0]
	var seen recorder
	if err := ParallelConsumer(s, seen.fn).Consume(t.Context(), &reflex.Event{ID: "1"}); !errors.Is(err, errHash) {
		t.Errorf("Consume with a failing hash = %v, want %v", err, errHash)
	}
	s = ConsumerShards("c", 2, WithHashOption(HashOptionEventType))[0]
	if err := ParallelConsumer(s, seen.fn).Consume(t.Context(), &reflex.Event{ID: "1"}); !errors.Is(err, ErrNoEventType) {
		t.Errorf("Consume of an event without type = %v, want ErrNoEventType", err)
	}
	if len(seen.got()) != 0 {
		t.Errorf("fn called for %q", seen.got())
	}
	defer func() {
		if recover() == nil {
			t.Error("ConsumerShards(n 0) did not panic")
		}
	}()
	ConsumerShards("c", 0)
}

// TestParallelSpecs: the shards together consume every event exactly once,
// and each shard's cursor passes the events of the other shards.
func TestParallelSpecs(t *testing.T) {
	for _, opt := range []HashOption{HashOptionEventID, HashOptionEventType, HashOptionEventForeignID} {
		t.Run(fmt.Sprint(opt), func(t *testing.T) {
			const n, shards = 200, 4
			log := reflextest.NewLog()
			for i := range n {
				log.Append(reflex.Event{ForeignID: strconv.Itoa(i % 17), Type: testType(i % 5)})
			}
			store := reflextest.NewCursorStore()
			var mu sync.Mutex
			consumed := make(map[string][]string)
			fn := func(ctx context.Context, e *reflex.Event) error {
				mu.Lock()
				defer mu.Unlock()
				consumed[e.ID] = append(consumed[e.ID], "x")
				return nil
			}
			var optsFor []string
			specs := ParallelSpecs("par", shards, log.Stream, store, fn,
				WithHashOption(opt),
				WithStreamOpts(reflex.WithStreamToHead()),
				WithConsumerSpecificOpts(func(name string) []reflex.ConsumerOption {
					optsFor = append(optsFor, name)
					return nil
				}))
			if len(specs) != shards {
				t.Fatalf("%d specs, want %d", len(specs), shards)
			}
			for _, s := range specs {
				runToHead(t, s)
				if c := store.Cursor(s.Name()); c != strconv.Itoa(n) {
					t.Errorf("cursor of %s = %q, want %d", s.Name(), c, n)
				}
			}
			for i := 1; i <= n; i++ {
				if got := len(consumed[strconv.Itoa(i)]); got != 1 {
					t.Errorf("event %d consumed %d times, want 1", i, got)
				}
			}
			if want := []string{"par_1_of_4", "par_2_of_4", "par_3_of_4", "par_4_of_4"}; !slices.Equal(optsFor, want) {
				t.Errorf("consumer options requested for %q, want %q", optsFor, want)
			}
		})
	}
}

// TestParallelAckConsumer: the ack function sees only the shard's events.
func TestParallelAckConsumer(t *testing.T) {
	store := reflextest.NewCursorStore()
	shards := ConsumerShards("ack", 3)
	var all []string
	for _, s := range shards {
		var seen recorder
		ac := ParallelAckConsumer(s, store, func(ctx context.Context, e *AckEvent) error {
			seen.add(e.ID)
			return e.Ack(ctx)
		})
		runToHead(t, NewAckSpec(newLog(30).Stream, ac.(*AckConsumer), reflex.WithStreamToHead()))
		for _, id := range seen.got() {
			if ok, _ := s.GetFilter()(&reflex.Event{ID: id}); !ok {
				t.Errorf("shard %s saw event %s of another shard", s.Name, id)
			}
		}
		if got := store.Sets(s.Name); !slices.Equal(got, seen.got()) {
			t.Errorf("shard %s acked %q, want its events %q", s.Name, got, seen.got())
		}
		all = append(all, seen.got()...)
	}
	if got := sortedInts(all); !slices.Equal(got, ids(1, 30)) {
		t.Errorf("shards together saw %q, want 1..30 once", got)
	}
}

// TestParallel: Parallel runs every shard until its context ends; the
// goroutines then exit (synctest fails the test if they leak).
func TestParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 3
		log := newLog(60)
		store := reflextest.NewCursorStore()
		shards := ConsumerShards("par", n)
		var seen recorder
		ctx, cancel := context.WithCancel(t.Context())
		Parallel(func(int) context.Context { return ctx }, func(m int) reflex.Consumer {
			return ParallelConsumer(shards[m], seen.fn)
		}, n, log.Stream, store)
		synctest.Wait()
		for _, s := range shards {
			if c := store.Cursor(s.Name); c != "60" {
				t.Errorf("cursor of %s = %q, want 60", s.Name, c)
			}
		}
		if got := sortedInts(seen.got()); !slices.Equal(got, ids(1, 60)) {
			t.Errorf("consumed %d events, want 1..60 once", len(got))
		}
		cancel()
		synctest.Wait()
	})
}

func TestParallelAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 2
		store := reflextest.NewCursorStore()
		shards := ConsumerShards("pack", n)
		var seen recorder
		ctx, cancel := context.WithCancel(t.Context())
		ParallelAck(func(int) context.Context { return ctx }, func(m int) AckConsumer {
			return *ParallelAckConsumer(shards[m], store, func(ctx context.Context, e *AckEvent) error {
				seen.add(e.ID)
				return e.Ack(ctx)
			}).(*AckConsumer)
		}, n, newLog(20).Stream)
		synctest.Wait()
		if got := sortedInts(seen.got()); !slices.Equal(got, ids(1, 20)) {
			t.Errorf("consumed %q, want 1..20 once", got)
		}
		cancel()
		synctest.Wait()
	})
}

func TestRunParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := reflextest.NewCursorStore()
		var seen recorder
		specs := ParallelSpecs("rp", 4, newLog(40).Stream, store, seen.fn)
		ctx, cancel := context.WithCancel(t.Context())
		res := make(chan error, 1)
		go func() { res <- RunParallel(ctx, specs) }()
		synctest.Wait()
		if got := sortedInts(seen.got()); !slices.Equal(got, ids(1, 40)) {
			t.Errorf("consumed %q, want 1..40 once", got)
		}
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Errorf("RunParallel = %v, want context.Canceled", err)
		}
	})
}

func BenchmarkShardFilter(b *testing.B) {
	f := ConsumerShards("b", 8)[3].GetFilter()
	e := &reflex.Event{ID: "1234567"}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = f(e)
	}
}

// shardCase is a shard assignment of luno/reflex's Parallel tests: with 4
// consumers, the key each consumer sees (event ID, foreign ID or type).
type shardCase struct {
	name   string
	events []reflex.Event
	opt    ParallelOption
	key    func(*reflex.Event) string
	want   map[string][]string // consumer name -> keys, in stream order
}

func shardCases() []shardCase {
	byID := func(e *reflex.Event) string { return e.ID }
	byFID := func(e *reflex.Event) string { return e.ForeignID }
	byType := func(e *reflex.Event) string { return strconv.Itoa(e.Type.ReflexType()) }
	var withIDs, withFIDs, withTypes []reflex.Event
	for i := range 4 {
		withIDs = append(withIDs, reflex.Event{ID: strconv.Itoa(i), Type: testType(0)})
	}
	for _, fid := range []string{"124566", "123412455", "123", "2342", "2304", "140054"} {
		withFIDs = append(withFIDs, reflex.Event{ForeignID: fid, Type: testType(0)})
	}
	for _, typ := range []int{1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3} {
		withTypes = append(withTypes, reflex.Event{Type: testType(typ)})
	}
	ids := map[string][]string{"p_1_of_4": {"3"}, "p_2_of_4": {"2"}, "p_3_of_4": {"1"}, "p_4_of_4": {"0"}}
	fids := map[string][]string{"p_1_of_4": {"2304"}, "p_2_of_4": {"124566", "140054"}, "p_3_of_4": {"123412455", "2342"}, "p_4_of_4": {"123"}}
	types := map[string][]string{"p_1_of_4": {"3", "3", "3", "3", "3"}, "p_2_of_4": {"2", "2", "2", "2"}, "p_3_of_4": {"1", "1", "1"}}
	hashOf := func(key func(*reflex.Event) string) ParallelOption {
		return WithHashFn(func(e *reflex.Event) ([]byte, error) { return []byte(key(e)), nil })
	}
	return []shardCase{
		{"event ID", withIDs, WithHashOption(HashOptionEventID), byID, ids},
		{"foreign ID", withFIDs, WithHashOption(HashOptionEventForeignID), byFID, fids},
		{"type", withTypes, WithHashOption(HashOptionEventType), byType, types},
		{"hash fn of ID", withIDs, hashOf(byID), byID, ids},
		{"hash fn of foreign ID", withFIDs, hashOf(byFID), byFID, fids},
		{"hash fn of type", withTypes, hashOf(byType), byType, types},
	}
}

// TestParallelShards: Parallel's goroutine m sees only shard m, so with
// n = 4 each event is processed exactly once, by the consumer of its shard
// (the assignments of luno/reflex's Parallel tests).
func TestParallelShards(t *testing.T) {
	for _, tc := range shardCases() {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := reflextest.NewLog()
				log.Append(tc.events...)
				var mu sync.Mutex
				got := make(map[string][]string)
				ctx, cancel := context.WithCancel(t.Context())
				Parallel(func(int) context.Context { return ctx }, func(m int) reflex.Consumer {
					name := fmt.Sprintf("p_%d_of_4", m+1)
					return reflex.NewConsumer(name, func(ctx context.Context, e *reflex.Event) error {
						mu.Lock()
						defer mu.Unlock()
						got[name] = append(got[name], tc.key(e))
						return nil
					})
				}, 4, log.Stream, reflextest.NewCursorStore(), tc.opt)
				synctest.Wait()
				cancel()
				synctest.Wait()
				if !maps.EqualFunc(got, tc.want, slices.Equal) {
					t.Errorf("keys per consumer = %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// TestParallelAckShards: ParallelAck's goroutine m sees only shard m; the
// consumers keep their names and cursor store.
func TestParallelAckShards(t *testing.T) {
	for _, tc := range shardCases() {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := reflextest.NewLog()
				log.Append(tc.events...)
				store := reflextest.NewCursorStore()
				var mu sync.Mutex
				got := make(map[string][]string)
				ctx, cancel := context.WithCancel(t.Context())
				ParallelAck(func(int) context.Context { return ctx }, func(m int) AckConsumer {
					name := fmt.Sprintf("p_%d_of_4", m+1)
					return *NewAckConsumer(name, store, func(ctx context.Context, e *AckEvent) error {
						mu.Lock()
						got[name] = append(got[name], tc.key(&e.Event))
						mu.Unlock()
						return e.Ack(ctx)
					})
				}, 4, log.Stream, tc.opt)
				synctest.Wait()
				cancel()
				synctest.Wait()
				if !maps.EqualFunc(got, tc.want, slices.Equal) {
					t.Errorf("keys per consumer = %v, want %v", got, tc.want)
				}
				for name, keys := range tc.want {
					if sets := store.Sets(name); len(sets) != len(keys) {
						t.Errorf("consumer %s acked %q, want %d events", name, sets, len(keys))
					}
				}
			})
		})
	}
}
