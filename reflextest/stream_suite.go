package reflextest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// Appender appends events to the stream under test. It assigns IDs itself
// (the events' ID fields are empty) and returns only once the events are
// visible to streams. It fails t on error.
type Appender func(t *testing.T, events ...reflex.Event)

// StreamHarness describes a stream implementation to TestStreamFunc.
type StreamHarness struct {
	// New returns a fresh, empty stream and a function that appends to it.
	New func(t *testing.T) (reflex.StreamFunc, Appender)

	// IgnoreType, IgnoreForeignID and IgnoreMetaData name the event fields
	// the stream does not carry; the suite does not compare them.
	IgnoreType, IgnoreForeignID, IgnoreMetaData bool

	// SkipFromHead and SkipLag skip the cases of options the stream does
	// not support.
	SkipFromHead, SkipLag bool

	// InvalidCursors are cursors the stream must reject, either from the
	// StreamFunc or from the first Recv, with an error wrapping
	// reflex.ErrInvalidCursor whose message is at most 1 KiB.
	InvalidCursors []string
}

// InvalidIntCursors returns cursors that every stream whose cursors are
// non-negative base-10 int64 event IDs must reject, for
// StreamHarness.InvalidCursors: letters, a fraction, a sign, a negative
// number, an int64 overflow, a NUL byte, invalid UTF-8 and 1 MB of digits.
func InvalidIntCursors() []string {
	return []string{"abc", "1.5", "+1", "-1", "99999999999999999999", "1\x00", "1\xff", strings.Repeat("1", 1<<20)}
}

// guard bounds every blocking step of the suite: it is a hang guard, not a
// speed requirement.
const guard = 30 * time.Second

type suiteType int

func (t suiteType) ReflexType() int { return int(t) }

// suiteEvent returns the i-th event the suite appends: foreign IDs are
// decimal, types are 1..9 and every third event has no metadata.
func suiteEvent(i int) reflex.Event {
	e := reflex.Event{
		ForeignID: strconv.Itoa(1000 + i),
		Type:      suiteType(1 + i%9),
	}
	if i%3 != 0 {
		e.MetaData = []byte("meta-" + strconv.Itoa(i))
	}
	return e
}

func suiteEvents(from, n int) []reflex.Event {
	out := make([]reflex.Event, n)
	for i := range out {
		out[i] = suiteEvent(from + i)
	}
	return out
}

// TestStreamFunc checks that the stream described by h behaves as a
// reflex.StreamFunc must, one subtest per rule: order, resumption from any
// cursor, tailing, to-head, from-head, lag, cancellation, concurrent
// readers, metadata fidelity, rejection of invalid cursors (with an error
// wrapping reflex.ErrInvalidCursor and a bounded message) and, for clients
// that implement io.Closer, the rule every stream client of this module
// obeys: after Close, Recv returns at once an error for which
// errors.Is(err, context.Canceled) is true, and Close is idempotent, safe
// for concurrent use and returns nil.
func TestStreamFunc(t *testing.T, h StreamHarness) {
	t.Helper()
	s := suite{h: h}
	for _, c := range []struct {
		name string
		test func(t *testing.T)
	}{
		{"EmptyToHead", s.testEmptyToHead},
		{"ToHead", s.testToHead},
		{"AppendsInBatches", s.testAppendsInBatches},
		{"ResumeFromCursor", s.testResumeFromCursor},
		{"Tail", s.testTail},
		{"FromHead", s.testFromHead},
		{"Lag", s.testLag},
		{"Cancel", s.testCancel},
		{"ConcurrentStreams", s.testConcurrentStreams},
		{"MetaData", s.testMetaData},
		{"InvalidCursor", s.testInvalidCursor},
		{"CloseThenRecv", s.testCloseThenRecv},
		{"CloseEndsBlockedRecv", s.testCloseEndsBlockedRecv},
		{"CloseConcurrently", s.testCloseConcurrently},
	} {
		t.Run(c.name, c.test)
	}
}

func (s suite) testEmptyToHead(t *testing.T) {
	stream, _ := s.h.New(t)
	cl := s.open(t, stream, "", reflex.WithStreamToHead())
	s.wantHead(t, cl)
}

func (s suite) testToHead(t *testing.T) {
	stream, add := s.h.New(t)
	want := suiteEvents(0, 25)
	add(t, want...)
	got := s.drain(t, stream, "", reflex.WithStreamToHead())
	s.compare(t, got, want)
	s.uniqueIDs(t, got)
}

func (s suite) testAppendsInBatches(t *testing.T) {
	stream, add := s.h.New(t)
	var want []reflex.Event
	for b := range 4 {
		batch := suiteEvents(b*5, 5)
		add(t, batch...)
		want = append(want, batch...)
	}
	s.compare(t, s.drain(t, stream, "", reflex.WithStreamToHead()), want)
}

func (s suite) testResumeFromCursor(t *testing.T) {
	stream, add := s.h.New(t)
	want := suiteEvents(0, 25)
	add(t, want...)
	all := s.drain(t, stream, "", reflex.WithStreamToHead())
	if len(all) != len(want) {
		t.Fatalf("got %d events, want %d", len(all), len(want))
	}
	for _, k := range []int{0, 1, 9, 23, 24} {
		got := s.drain(t, stream, all[k].ID, reflex.WithStreamToHead())
		s.compare(t, got, want[k+1:])
		for i := range got {
			if got[i].ID != all[k+1+i].ID {
				t.Errorf("after %q: event %d has ID %q, want %q", all[k].ID, i, got[i].ID, all[k+1+i].ID)
			}
		}
	}
}

// testTail checks that Recv blocks at the head until events are appended.
func (s suite) testTail(t *testing.T) {
	stream, add := s.h.New(t)
	first := suiteEvents(0, 3)
	add(t, first...)
	cl := s.open(t, stream, "")
	s.compare(t, s.recvN(t, cl, 3), first)

	// Only the test goroutine may call t.Fatal (the Appender does), so
	// Recv runs on its own goroutine and reports back.
	more := suiteEvents(3, 2)
	rc := make(chan recvResult, 1)
	go func() { rc <- recvEvents(cl, len(more)) }()
	add(t, more...)
	select {
	case r := <-rc:
		if r.err != nil {
			t.Fatalf("Recv after %d appended events: %v", len(r.events), r.err)
		}
		s.compare(t, r.events, more)
	case <-time.After(guard):
		t.Fatalf("Recv did not return the appended events within %v", guard)
	}
}

// recvResult is what recvEvents got.
type recvResult struct {
	events []reflex.Event
	err    error
}

// recvEvents receives n events, or stops at the first error.
func recvEvents(cl reflex.StreamClient, n int) recvResult {
	var r recvResult
	for len(r.events) < n && r.err == nil {
		e, err := cl.Recv()
		switch {
		case err != nil:
			r.err = err
		case e == nil:
			r.err = errors.New("Recv returned a nil event and a nil error")
		default:
			r.events = append(r.events, *e)
		}
	}
	return r
}

// testFromHead checks that the head is resolved when the stream is opened:
// events appended after opening and before the first Recv are delivered,
// earlier ones are not, and the cursor is ignored.
func (s suite) testFromHead(t *testing.T) {
	if s.h.SkipFromHead {
		t.Skip("stream does not support WithStreamFromHead")
	}
	stream, add := s.h.New(t)
	add(t, suiteEvents(0, 5)...)

	cl := s.open(t, stream, "", reflex.WithStreamFromHead())
	want := suiteEvents(5, 3)
	add(t, want...)
	got := s.recvN(t, cl, 3)
	s.compare(t, got, want)

	// At the head, to-head ends at once.
	cl = s.open(t, stream, "", reflex.WithStreamFromHead(), reflex.WithStreamToHead())
	s.wantHead(t, cl)

	// The cursor is ignored.
	cl = s.open(t, stream, got[0].ID, reflex.WithStreamFromHead(), reflex.WithStreamToHead())
	s.wantHead(t, cl)
}

func (s suite) testLag(t *testing.T) {
	if s.h.SkipLag {
		t.Skip("stream does not support WithStreamLag")
	}
	stream, add := s.h.New(t)
	add(t, suiteEvents(0, 3)...)
	cl := s.open(t, stream, "", reflex.WithStreamLag(time.Hour), reflex.WithStreamToHead())
	s.wantHead(t, cl)
}

// testCancel checks that Recv returns once its context is cancelled, and
// keeps failing.
func (s suite) testCancel(t *testing.T) {
	stream, add := s.h.New(t)
	add(t, suiteEvents(0, 1)...)
	ctx, cancel := context.WithCancel(t.Context())
	cl, err := stream(ctx, "")
	if err != nil {
		t.Fatalf("StreamFunc: %v", err)
	}
	closeClient(t, cl)
	s.recvN(t, cl, 1)

	errc := make(chan error, 1)
	go func() {
		_, err := cl.Recv()
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Recv after cancel returned nil error")
		}
	case <-time.After(guard):
		t.Fatalf("Recv did not return within %v of its context being cancelled", guard)
	}
	if _, err := cl.Recv(); err == nil {
		t.Error("Recv on a cancelled stream returned nil error")
	}
}

func (s suite) testConcurrentStreams(t *testing.T) {
	stream, add := s.h.New(t)
	want := suiteEvents(0, 40)
	add(t, want...)
	var wg sync.WaitGroup
	results := make([][]reflex.Event, 4)
	errs := make([]error, len(results))
	for i := range results {
		wg.Go(func() { results[i], errs[i] = drainErr(stream, "", reflex.WithStreamToHead()) })
	}
	wg.Wait()
	for i, got := range results {
		if errs[i] != nil {
			t.Errorf("stream %d: %v", i, errs[i])
			continue
		}
		s.compare(t, got, want)
	}
}

func (s suite) testMetaData(t *testing.T) {
	if s.h.IgnoreMetaData {
		t.Skip("stream does not carry metadata")
	}
	stream, add := s.h.New(t)
	var want []reflex.Event
	for n := range 10 {
		e := suiteEvent(1)
		e.MetaData = make([]byte, n)
		for i := range e.MetaData {
			e.MetaData[i] = byte(250 - 31*i) // binary, includes 0x00-free and high bytes
		}
		want = append(want, e)
	}
	want = append(want, reflex.Event{ForeignID: "77", Type: suiteType(3), MetaData: []byte{0, '\n', '"', '\\', 0xff}})
	add(t, want...)
	s.compare(t, s.drain(t, stream, "", reflex.WithStreamToHead()), want)
}

// maxErrorMessage bounds the message of an invalid cursor's error.
const maxErrorMessage = 1024

// testInvalidCursor checks that each of h.InvalidCursors is refused, by
// the StreamFunc or the first Recv, with an error wrapping
// reflex.ErrInvalidCursor whose message is at most 1 KiB.
func (s suite) testInvalidCursor(t *testing.T) {
	if len(s.h.InvalidCursors) == 0 {
		t.Skip("no invalid cursors given")
	}
	stream, add := s.h.New(t)
	add(t, suiteEvents(0, 3)...)
	for _, c := range s.h.InvalidCursors {
		cl, err := stream(t.Context(), c, reflex.WithStreamToHead())
		if err == nil {
			var e *reflex.Event
			e, err = cl.Recv()
			closeClient(t, cl)
			if err == nil {
				t.Errorf("cursor %.64q: Recv returned event %q, want an error", c, e.ID)
				continue
			}
		}
		if !errors.Is(err, reflex.ErrInvalidCursor) {
			t.Errorf("cursor %.64q: error %.200v, want one wrapping reflex.ErrInvalidCursor", c, err)
		}
		if n := len(err.Error()); n > maxErrorMessage {
			t.Errorf("cursor %.64q: error message is %d bytes, want at most %d", c, n, maxErrorMessage)
		}
	}
}

// closer returns the client as an io.Closer, or skips the test.
func closer(t *testing.T, cl reflex.StreamClient) io.Closer {
	c, ok := cl.(io.Closer)
	if !ok {
		t.Skip("client is not an io.Closer")
	}
	return c
}

// wantClosedRecv checks that Recv on a closed client returns at once an
// error for which errors.Is(err, context.Canceled) is true.
func wantClosedRecv(t *testing.T, cl reflex.StreamClient) {
	t.Helper()
	errc := make(chan recvResult, 1)
	go func() { errc <- recvEvents(cl, 1) }()
	select {
	case r := <-errc:
		if r.err == nil {
			t.Fatalf("Recv after Close returned event %q, want context.Canceled", r.events[0].ID)
		}
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Recv after Close = %v, want an error for which errors.Is(err, context.Canceled) is true", r.err)
		}
	case <-time.After(guard):
		t.Fatalf("Recv after Close did not return within %v", guard)
	}
}

// testCloseThenRecv checks that Recv after Close fails with
// context.Canceled even with events left, and that Close is idempotent.
func (s suite) testCloseThenRecv(t *testing.T) {
	stream, add := s.h.New(t)
	add(t, suiteEvents(0, 3)...)
	cl := s.open(t, stream, "")
	c := closer(t, cl)
	s.recvN(t, cl, 1)
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v, want nil", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	wantClosedRecv(t, cl)
	wantClosedRecv(t, cl)
}

// testCloseEndsBlockedRecv checks that Close from another goroutine ends
// a Recv blocked at the head with context.Canceled.
func (s suite) testCloseEndsBlockedRecv(t *testing.T) {
	stream, add := s.h.New(t)
	add(t, suiteEvents(0, 1)...)
	cl := s.open(t, stream, "")
	c := closer(t, cl)
	s.recvN(t, cl, 1)
	errc := make(chan recvResult, 1)
	go func() { errc <- recvEvents(cl, 1) }()
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v, want nil", err)
	}
	select {
	case r := <-errc:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("blocked Recv after Close = %v, want an error for which errors.Is(err, context.Canceled) is true", r.err)
		}
	case <-time.After(guard):
		t.Fatalf("blocked Recv did not return within %v of Close", guard)
	}
}

// testCloseConcurrently checks that Close is safe for concurrent use.
func (s suite) testCloseConcurrently(t *testing.T) {
	stream, add := s.h.New(t)
	add(t, suiteEvents(0, 2)...)
	cl := s.open(t, stream, "")
	c := closer(t, cl)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = c.Close() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Close %d = %v, want nil", i, err)
		}
	}
	wantClosedRecv(t, cl)
}

type suite struct{ h StreamHarness }

func (s suite) open(t *testing.T, stream reflex.StreamFunc, after string, opts ...reflex.StreamOption) reflex.StreamClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	t.Cleanup(cancel)
	cl, err := stream(ctx, after, opts...)
	if err != nil {
		t.Fatalf("StreamFunc(after=%q): %v", after, err)
	}
	closeClient(t, cl)
	return cl
}

func closeClient(t *testing.T, cl reflex.StreamClient) {
	if c, ok := cl.(io.Closer); ok {
		t.Cleanup(func() { _ = c.Close() })
	}
}

// recvN receives n events or fails.
func (s suite) recvN(t *testing.T, cl reflex.StreamClient, n int) []reflex.Event {
	t.Helper()
	out := make([]reflex.Event, 0, n)
	for range n {
		e, err := cl.Recv()
		if err != nil {
			t.Fatalf("Recv after %d of %d events: %v", len(out), n, err)
		}
		if e == nil {
			t.Fatalf("Recv after %d events returned nil event and nil error", len(out))
		}
		out = append(out, *e)
	}
	return out
}

func (s suite) wantHead(t *testing.T, cl reflex.StreamClient) {
	t.Helper()
	e, err := cl.Recv()
	if err == nil {
		t.Fatalf("Recv returned event %q (foreign id %q), want ErrHeadReached", e.ID, e.ForeignID)
	}
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Recv error = %v, want one for which IsHeadReachedErr is true", err)
	}
}

// drain reads a to-head stream until ErrHeadReached.
func (s suite) drain(t *testing.T, stream reflex.StreamFunc, after string, opts ...reflex.StreamOption) []reflex.Event {
	t.Helper()
	out, err := drainErr(stream, after, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// drainErr is drain for goroutines other than the test's: it reports
// instead of failing the test.
func drainErr(stream reflex.StreamFunc, after string, opts ...reflex.StreamOption) ([]reflex.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cl, err := stream(ctx, after, opts...)
	if err != nil {
		return nil, fmt.Errorf("StreamFunc(after=%q): %w", after, err)
	}
	if c, ok := cl.(io.Closer); ok {
		defer c.Close()
	}
	var out []reflex.Event
	for {
		e, err := cl.Recv()
		switch {
		case reflex.IsHeadReachedErr(err):
			return out, nil
		case err != nil:
			return out, fmt.Errorf("Recv after %d events: %w", len(out), err)
		case e == nil:
			return out, fmt.Errorf("Recv after %d events returned a nil event and a nil error", len(out))
		}
		out = append(out, *e)
	}
}

func (s suite) compare(t *testing.T, got, want []reflex.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d events, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if err := s.diff(got[i], want[i]); err != nil {
			t.Errorf("event %d (ID %q): %v", i, got[i].ID, err)
		}
	}
}

func (s suite) diff(got, want reflex.Event) error {
	switch {
	case got.ID == "":
		return errors.New("empty ID")
	case got.Timestamp.IsZero():
		return errors.New("timestamp is zero")
	case !s.h.IgnoreForeignID && got.ForeignID != want.ForeignID:
		return fmt.Errorf("event field ForeignID = %q, want %q", got.ForeignID, want.ForeignID)
	case !s.h.IgnoreType && (got.Type == nil || got.Type.ReflexType() != want.Type.ReflexType()):
		return fmt.Errorf("event field Type = %v, want %d", got.Type, want.Type.ReflexType())
	case !s.h.IgnoreMetaData && !bytes.Equal(got.MetaData, want.MetaData):
		return fmt.Errorf("event field MetaData = %q, want %q", got.MetaData, want.MetaData)
	}
	return nil
}

func (s suite) uniqueIDs(t *testing.T, events []reflex.Event) {
	t.Helper()
	seen := make(map[string]bool, len(events))
	for _, e := range events {
		if seen[e.ID] {
			t.Errorf("ID %q delivered twice", e.ID)
		}
		seen[e.ID] = true
	}
}
