package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/life"
)

// FanInSource is one stream of a fan-in (see NewFanInSpec).
type FanInSource struct {
	// Name names the source among those of the fan-in; it keys the
	// source's cursor (see FanInCursorName). It must not be empty.
	Name string
	// Stream is the source's events.
	Stream reflex.StreamFunc
}

// FanInCursorName returns the name under which a fan-in keeps the cursor
// of source for the consumer named consumer: consumer + "/" + source.
func FanInCursorName(consumer, source string) string {
	return consumer + "/" + source
}

// fanInBuffer is how many events each source's reader holds ahead of the
// consumer: enough to keep the consumer fed while the reader waits for
// its source, few enough that a restart rereads little.
const fanInBuffer = 64

// NewFanInSpec returns a spec that feeds one consumer from several
// streams (the events of several services, say), to run with reflex.Run
// or RunForever like any other. Options are passed to every source on
// every run, except lag options, which Run enforces itself.
//
// Cursors: the fan-in keeps one cursor per source in store, under the
// consumer's name and the source's (see FanInCursorName:
// "name/source"); a run resumes each source after its own cursor. The
// spec's own cursor store (the one Run sees) is an adapter over store
// that knows which source each event came from, so the spec's consumer
// must let Run set its cursors: do not give it a cursor store of its own
// (as NewAckConsumer or NewConcurrentConsumer take).
//
// Order: each source's events reach the consumer in that source's
// order. Across sources, the rule is: among the sources that have an
// event ready (read and not yet delivered), the one whose next event has
// the oldest Timestamp goes first, ties going to the source listed first;
// Recv never waits for an idle source. So a fan-in catching up merges its
// sources by timestamp, and a fan-in at the heads delivers events as they
// come. Timestamps of different services are compared as they are:
// clock skew between services skews the merge, never the order within a
// source.
//
// Errors: a source's error ends the run at once (wrapped with the
// source's name; errors.Is still matches it), after the events already
// delivered. With WithStreamToHead the run ends with
// reflex.ErrHeadReached once every source has reached its head and every
// event has been delivered.
//
// Each run's stream client reads each source on a goroutine of its own
// (see the package doc); Run closes the client, which stops them and
// waits for them. NewFanInSpec panics, with an "rpatterns:"-prefixed
// message, if there are no sources, or a source has an empty or repeated
// name or a nil stream.
func NewFanInSpec(sources []FanInSource, store reflex.CursorStore, consumer reflex.Consumer, opts ...reflex.StreamOption) reflex.Spec {
	if len(sources) == 0 {
		panic("rpatterns: NewFanInSpec: no sources")
	}
	seen := make(map[string]bool, len(sources))
	for i, s := range sources {
		switch {
		case s.Name == "":
			panic(fmt.Sprintf("rpatterns: NewFanInSpec: source %d has no name", i))
		case seen[s.Name]:
			panic(fmt.Sprintf("rpatterns: NewFanInSpec: two sources named %q", s.Name))
		case s.Stream == nil:
			panic(fmt.Sprintf("rpatterns: NewFanInSpec: source %q has a nil stream", s.Name))
		}
		seen[s.Name] = true
	}
	f := &fanIn{name: consumer.Name(), sources: sources, store: store}
	return reflex.NewSpec(f.stream, &fanInStore{f: f}, consumer, opts...)
}

// fanIn is the state a fan-in spec shares between its stream and its
// cursor store adapter.
type fanIn struct {
	name    string
	sources []FanInSource
	store   reflex.CursorStore

	mu  sync.Mutex // protects cur
	cur *mergeClient
}

// stream opens every source after its own cursor and merges them. The
// cursor Run passes is the adapter's ("") and is ignored.
func (f *fanIn) stream(ctx context.Context, _ string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	m := &mergeClient{life: life.New(ctx), wake: make(chan struct{}, 1), last: -1}
	m.srcs = make([]mergeSource, len(f.sources))
	for i, s := range f.sources {
		cursor, err := f.store.GetCursor(ctx, FanInCursorName(f.name, s.Name))
		if err == nil {
			m.srcs[i].cl, err = s.Stream(m.life.Context(), cursor, opts...)
		}
		if err == nil && m.srcs[i].cl == nil {
			err = errors.New("nil stream client")
		}
		if err != nil {
			_ = m.Close()
			return nil, fmt.Errorf("rpatterns: fan-in source %q: %w", s.Name, err)
		}
		m.srcs[i].name = s.Name
		m.srcs[i].ch = make(chan recvItem, fanInBuffer)
	}
	for i := range m.srcs {
		s := &m.srcs[i]
		m.wg.Go(func() { m.read(s.cl, s.ch) })
	}
	f.mu.Lock()
	f.cur = m
	f.mu.Unlock()
	return m, nil
}

// lastSource returns the name of the source of the last event the
// current client returned.
func (f *fanIn) lastSource() (string, bool) {
	f.mu.Lock()
	m := f.cur
	f.mu.Unlock()
	if m == nil || m.last < 0 {
		return "", false
	}
	return m.srcs[m.last].name, true
}

// fanInStore is the cursor store Run sees: it keeps each cursor under the
// name of the source of the event it belongs to.
type fanInStore struct {
	f *fanIn
}

// GetCursor returns "": the fan-in's stream reads the cursor of each
// source itself.
func (s *fanInStore) GetCursor(context.Context, string) (string, error) { return "", nil }

// SetCursor stores cursor as the cursor of the source of the event Run
// consumed last (the one the stream returned last).
func (s *fanInStore) SetCursor(ctx context.Context, name, cursor string) error {
	src, ok := s.f.lastSource()
	if !ok {
		return fmt.Errorf("rpatterns: fan-in %q: cursor %q set before any event was returned", name, cursor)
	}
	return s.f.store.SetCursor(ctx, FanInCursorName(name, src), cursor)
}

// Flush flushes the underlying store.
func (s *fanInStore) Flush(ctx context.Context) error { return s.f.store.Flush(ctx) }

// recvItem is what a reader got from its source.
type recvItem struct {
	e   *reflex.Event
	err error
}

type mergeSource struct {
	name string
	cl   reflex.StreamClient
	ch   chan recvItem // filled by the reader; the reader closes nothing

	// Used by Recv only.
	next    recvItem
	hasNext bool
	done    bool // reached its head
}

// mergeClient is the stream client of a fan-in: it merges its sources
// (see NewFanInSpec). Recv is used by one goroutine at a time; Close may
// be called from any.
type mergeClient struct {
	life *life.Life
	srcs []mergeSource
	wake chan struct{} // a reader queued an item; buffered 1
	wg   sync.WaitGroup

	// Used by Recv (and the fan-in's store adapter, on Run's goroutine).
	last int   // index of the source of the last event returned, -1 before
	err  error // sticky error
}

// read is the reader of one source: it queues what cl returns until an
// error (which it queues too) or the client's end.
func (m *mergeClient) read(cl reflex.StreamClient, ch chan<- recvItem) {
	ctx := m.life.Context()
	for {
		e, err := cl.Recv()
		if err == nil && e == nil {
			err = errors.New("nil event")
		}
		select {
		case ch <- recvItem{e, err}:
		case <-ctx.Done():
			return
		}
		select {
		case m.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
		if err != nil {
			return
		}
	}
}

// Recv returns the next event by the fan-in's rule (see NewFanInSpec).
func (m *mergeClient) Recv() (*reflex.Event, error) {
	for {
		if err := m.life.Err(); err != nil {
			return nil, err
		}
		if m.err != nil {
			return nil, m.err
		}
		best, done := -1, 0
		for i := range m.srcs {
			s := &m.srcs[i]
			if !s.hasNext && !s.done {
				select {
				case s.next = <-s.ch:
					s.hasNext = true
				default:
				}
			}
			if s.hasNext && s.next.err != nil {
				if !errors.Is(s.next.err, reflex.ErrHeadReached) {
					m.err = fmt.Errorf("rpatterns: fan-in source %q: %w", s.name, s.next.err)
					return nil, m.err
				}
				s.hasNext, s.done = false, true
			}
			if s.done {
				done++
				continue
			}
			if s.hasNext && (best < 0 || s.next.e.Timestamp.Before(m.srcs[best].next.e.Timestamp)) {
				best = i
			}
		}
		if best >= 0 {
			s := &m.srcs[best]
			s.hasNext, m.last = false, best
			return s.next.e, nil
		}
		if done == len(m.srcs) {
			return nil, reflex.ErrHeadReached
		}
		select {
		case <-m.wake:
		case <-m.life.Context().Done():
		}
	}
}

// Close closes every source and waits for the readers. It is idempotent,
// safe for concurrent use and returns nil; Recv then returns
// context.Canceled.
func (m *mergeClient) Close() error {
	_ = m.life.Close()
	for i := range m.srcs {
		if c, ok := m.srcs[i].cl.(io.Closer); ok {
			_ = c.Close()
		}
	}
	m.wg.Wait()
	return nil
}
