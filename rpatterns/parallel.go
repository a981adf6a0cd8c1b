package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/seed-e488ba2e/reflex"
)

// HashOption selects the part of an event that ConsumerShards hashes to
// pick an event's shard.
type HashOption int

const (
	// HashOptionEventID hashes the event ID (the default): events spread
	// evenly, with no ordering between shards.
	HashOptionEventID HashOption = iota
	// HashOptionEventType hashes the decimal event type: all events of a
	// type go to one shard.
	HashOptionEventType
	// HashOptionEventForeignID hashes the foreign ID: all events of an
	// entity go to one shard, in order.
	HashOptionEventForeignID
	// HashOptionCustomHashFn stands for a function set with WithHashFn;
	// passing it to WithHashOption has no effect.
	HashOptionCustomHashFn
)

// ErrNoEventType is returned by shard filters using HashOptionEventType
// for an event without a type.
var ErrNoEventType = errors.New("rpatterns: event has no type")

// EventFilter reports whether an event should be processed, or why that
// could not be decided; it is reflex.EventFilter (ConsumerShard.GetFilter
// returns one, and reflex.WithEventFilter takes one).
type EventFilter = reflex.EventFilter

// ShardConsumerOpts returns the consumer options of the shard named
// shardName; see WithConsumerSpecificOpts.
type ShardConsumerOpts func(shardName string) []reflex.ConsumerOption

// ParallelOption configures ConsumerShards, ParallelSpecs, Parallel and
// ParallelAck. A nil ParallelOption makes them panic.
type ParallelOption func(*parallelConfig)

type parallelConfig struct {
	hash          func(*reflex.Event) ([]byte, error) // nil: use hashOpt
	hashOpt       HashOption
	nameFormatter func(base string, m, n int) string
	consumerOpts  ShardConsumerOpts
	streamOpts    []reflex.StreamOption
}

// WithHashOption selects what is hashed (default HashOptionEventID),
// replacing an earlier WithHashFn. HashOptionCustomHashFn is ignored.
func WithHashOption(o HashOption) ParallelOption {
	return func(c *parallelConfig) {
		if o == HashOptionCustomHashFn {
			return
		}
		c.hashOpt, c.hash = o, nil
	}
}

// WithHashFn hashes the bytes fn returns for an event instead, replacing an
// earlier WithHashOption. An error from fn is returned by the shard filter
// (and so by the shard's Consume). A nil fn is ignored.
func WithHashFn(fn func(e *reflex.Event) ([]byte, error)) ParallelOption {
	return func(c *parallelConfig) {
		if fn != nil {
			c.hash = fn
		}
	}
}

// WithNameFormatter sets the shard names: fn(base, m, n) for shard m
// (0-based) of n. The default gives "<base>_<m+1>_of_<n>". A nil fn is
// ignored. Parallel and ParallelAck do not use it: their consumers are
// named by getConsumer.
func WithNameFormatter(fn func(base string, m, n int) string) ParallelOption {
	return func(c *parallelConfig) {
		if fn != nil {
			c.nameFormatter = fn
		}
	}
}

// WithConsumerSpecificOpts makes ParallelSpecs build each shard's consumer
// with the options f returns for the shard's name. By default (and with a
// nil f) there are none.
func WithConsumerSpecificOpts(f ShardConsumerOpts) ParallelOption {
	return func(c *parallelConfig) { c.consumerOpts = f }
}

// WithStreamOpts sets the stream options of the specs built by
// ParallelSpecs, Parallel and ParallelAck. By default there are none; a
// nil stream option makes them panic.
func WithStreamOpts(opts ...reflex.StreamOption) ParallelOption {
	return func(c *parallelConfig) { c.streamOpts = opts }
}

// resolveParallel applies opts for the function named fn, which panics if
// an option or a stream option is nil.
func resolveParallel(fn string, opts []ParallelOption) parallelConfig {
	mustOptions(fn, "ParallelOption", opts)
	c := parallelConfig{
		hashOpt: HashOptionEventID,
		nameFormatter: func(base string, m, n int) string {
			return fmt.Sprintf("%s_%d_of_%d", base, m+1, n)
		},
	}
	for _, o := range opts {
		o(&c)
	}
	mustOptions(fn, "stream option", c.streamOpts)
	return c
}

// ConsumerShard is shard m of n of a stream: the events whose hash modulo
// n is m. Build shards with ConsumerShards.
type ConsumerShard struct {
	// Name is the shard's consumer name.
	Name string

	m, n int
	hash func(*reflex.Event) ([]byte, error) // nil: opt
	opt  HashOption
}

// ConsumerShards returns n shards of a stream for consumers named after
// name (see WithNameFormatter). Shard m gets the events whose key's 32-bit
// FNV-1 hash (hash/fnv.New32, not New32a) modulo n is m; the key is chosen
// with WithHashOption or WithHashFn (default: the event ID). These are the
// shards of luno/reflex, so both can share cursors.
//
// It panics if n < 1 or an option is nil, programming errors. Changing n
// reassigns events to shards: the shards' cursors no longer match their
// events, so only change it with fresh consumer names.
func ConsumerShards(name string, n int, opts ...ParallelOption) []ConsumerShard {
	if n < 1 {
		panic(fmt.Sprintf("rpatterns: ConsumerShards: n is %d, must be at least 1", n))
	}
	c := resolveParallel("ConsumerShards", opts)
	shards := make([]ConsumerShard, n)
	for m := range shards {
		shards[m] = c.shard(c.nameFormatter(name, m, n), m, n)
	}
	return shards
}

// shard returns shard m of n, named name.
func (c parallelConfig) shard(name string, m, n int) ConsumerShard {
	return ConsumerShard{Name: name, m: m, n: n, hash: c.hash, opt: c.hashOpt}
}

// GetFilter returns a filter that reports whether an event belongs to the
// shard, or the hashing error. It is safe for concurrent use (if a custom
// hash function is).
func (s ConsumerShard) GetFilter() EventFilter {
	return s.contains
}

func (s ConsumerShard) contains(e *reflex.Event) (bool, error) {
	var h uint32
	switch {
	case s.hash != nil:
		b, err := s.hash(e)
		if err != nil {
			return false, err
		}
		h = fnv1(string(b))
	case s.opt == HashOptionEventType:
		if e.Type == nil {
			return false, fmt.Errorf("%w: event %s", ErrNoEventType, e.ID)
		}
		h = fnv1(strconv.Itoa(e.Type.ReflexType()))
	case s.opt == HashOptionEventForeignID:
		h = fnv1(e.ForeignID)
	default:
		h = fnv1(e.ID)
	}
	return h%uint32(s.n) == uint32(s.m), nil
}

// fnv1 returns the 32-bit FNV-1 hash of s (multiply, then xor; the same as
// hash/fnv.New32), without allocating.
func fnv1(s string) uint32 {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(s); i++ {
		h *= prime32
		h ^= uint32(s[i])
	}
	return h
}

// shardFunc wraps fn so that it runs only for the shard's events: other
// events return nil (so the cursor moves past them); a hashing error is
// returned.
func shardFunc[E any](shard ConsumerShard, get func(E) *reflex.Event, fn func(context.Context, E) error) func(context.Context, E) error {
	return func(ctx context.Context, e E) error {
		ok, err := shard.contains(get(e))
		if err != nil || !ok {
			return err
		}
		return fn(ctx, e)
	}
}

func eventOf(e *reflex.Event) *reflex.Event { return e }

func ackEventOf(e *AckEvent) *reflex.Event { return &e.Event }

// ParallelConsumer returns an instrumented consumer (see reflex.NewConsumer,
// configured by opts) named shard.Name that runs fn for the events of the
// shard; other events return nil without calling fn, so the cursor moves
// past them. A hashing error is returned. It panics if an option is nil.
func ParallelConsumer(shard ConsumerShard, fn reflex.ConsumerFunc, opts ...reflex.ConsumerOption) reflex.Consumer {
	return newConsumer("ParallelConsumer", shard.Name, shardFunc(shard, eventOf, fn), opts)
}

// ParallelAckConsumer is ParallelConsumer for an ack consumer: it returns an
// *AckConsumer named shard.Name (run it with NewAckSpec, asserting the
// type: NewAckSpec(stream, c.(*AckConsumer))) whose fn sees only the
// shard's events. Events of other shards are not acknowledged: the cursor
// moves when fn acknowledges a later event of the shard. It panics if an
// option is nil.
func ParallelAckConsumer(shard ConsumerShard, store reflex.CursorStore, fn AckConsumerFunc, opts ...reflex.ConsumerOption) reflex.Consumer {
	return newAckConsumer("ParallelAckConsumer", shard.Name, store, shardFunc(shard, ackEventOf, fn), opts)
}

// ParallelSpecs returns n specs, one per shard of ConsumerShards(name, n,
// opts...), sharing stream and store; shard m's consumer is
// ParallelConsumer(shard, fn, consumerOpts(shard.Name)...) (see
// WithConsumerSpecificOpts) and its stream options those of
// WithStreamOpts. Run each spec, for example with RunParallel. It panics
// if n < 1 or an option is nil.
func ParallelSpecs(name string, n int, stream reflex.StreamFunc, store reflex.CursorStore, fn reflex.ConsumerFunc, opts ...ParallelOption) []reflex.Spec {
	c := resolveParallel("ParallelSpecs", opts)
	specs := make([]reflex.Spec, 0, n)
	for _, s := range ConsumerShards(name, n, opts...) {
		var copts []reflex.ConsumerOption
		if c.consumerOpts != nil {
			copts = c.consumerOpts(s.Name)
		}
		specs = append(specs, reflex.NewSpec(stream, store, ParallelConsumer(s, fn, copts...), c.streamOpts...))
	}
	return specs
}

// Parallel starts n goroutines that consume stream in parallel, each event
// in exactly one of them: goroutine m runs
// RunForever(func() context.Context { return getCtx(m) }, spec) for the
// spec of getConsumer(m) over stream and store, restricted to shard m of n
// (the events whose hash, chosen with WithHashOption or WithHashFn, modulo
// n is m; events of other shards return nil without reaching the consumer,
// so its cursor moves past them), with the stream options of
// WithStreamOpts. The consumers keep their names (WithNameFormatter is not
// used) and their Reset and Stop methods.
//
// Parallel returns at once. Goroutine m ends only when getCtx(m) returns a
// context that is done (see RunForever): nothing else stops it, and
// nothing waits for it. It panics if an option is nil. Changing n
// reassigns events to shards, so only change it with fresh consumer names.
//
// Deprecated: Parallel's goroutines have no owner that stops them and waits
// for them. Build the specs with ParallelSpecs (or ConsumerShards and
// ParallelConsumer) and run them with RunParallel, which blocks until its
// context is done and its goroutines have ended.
func Parallel(getCtx func(m int) context.Context, getConsumer func(m int) reflex.Consumer, n int, stream reflex.StreamFunc, store reflex.CursorStore, opts ...ParallelOption) {
	c := resolveParallel("Parallel", opts)
	for m := range n {
		inner := getConsumer(m)
		shard := c.shard(inner.Name(), m, n)
		consumer := &shardConsumer{Consumer: inner, consume: shardFunc(shard, eventOf, inner.Consume)}
		spec := reflex.NewSpec(stream, store, consumer, c.streamOpts...)
		go RunForever(func() context.Context { return getCtx(m) }, spec)
	}
}

// ParallelAck is Parallel for ack consumers: goroutine m runs
// NewAckSpec(stream, ac, ...) forever, where ac is getConsumer(m)
// restricted to shard m of n (its function sees only the shard's events;
// its name, cursor store and consumer options are kept). Goroutine m ends
// only when getCtx(m) returns a context that is done. It panics if an
// option is nil.
//
// Deprecated: ParallelAck's goroutines have no owner that stops them and
// waits for them. Build one ack consumer per shard with ConsumerShards and
// ParallelAckConsumer, and run their NewAckSpec specs with RunParallel.
func ParallelAck(getCtx func(m int) context.Context, getConsumer func(m int) AckConsumer, n int, stream reflex.StreamFunc, opts ...ParallelOption) {
	c := resolveParallel("ParallelAck", opts)
	for m := range n {
		ac := getConsumer(m)
		ac.fn = shardFunc(c.shard(ac.name, m, n), ackEventOf, ac.fn)
		spec := NewAckSpec(stream, &ac, c.streamOpts...)
		go RunForever(func() context.Context { return getCtx(m) }, spec)
	}
}

// shardConsumer is a consumer restricted to one shard: Consume runs consume
// (the shard filter around the inner consumer); Name, and Reset and Stop
// if the inner consumer has them, are the inner consumer's.
type shardConsumer struct {
	reflex.Consumer
	consume reflex.ConsumerFunc
}

var (
	_ reflex.ResetterCtx = (*shardConsumer)(nil)
	_ reflex.Stopper     = (*shardConsumer)(nil)
)

func (c *shardConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	return c.consume(ctx, e)
}

func (c *shardConsumer) Reset(ctx context.Context) error { return resetConsumer(ctx, c.Consumer) }

func (c *shardConsumer) Stop() error { return stopConsumer(c.Consumer) }

// RunParallel runs every spec with RunForeverCtx(ctx, nil, spec) in a
// goroutine of its own and blocks until all have returned, that is until
// ctx is done; it then returns ctx.Err(). RunParallel owns these
// goroutines: it returns only after they have ended.
func RunParallel(ctx context.Context, specs []reflex.Spec) error {
	var wg sync.WaitGroup
	for _, s := range specs {
		wg.Go(func() { _ = RunForeverCtx(ctx, nil, s) })
	}
	wg.Wait()
	return ctx.Err()
}
