package reflex_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/grpctest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// grpcLog serves a fresh in-memory log over real loopback gRPC.
func grpcLog(t *testing.T) (*reflextest.Log, *grpctest.Server, *grpctest.Client) {
	t.Helper()
	l := reflextest.NewLog()
	srv, addr := grpctest.NewServer(t, l.Stream, nil)
	return l, srv, grpctest.NewClient(t, addr)
}

func TestGRPCConformance(t *testing.T) {
	reflextest.TestStreamFunc(t, reflextest.StreamHarness{
		New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
			l, _, cl := grpcLog(t)
			return cl.StreamEvents, func(t *testing.T, events ...reflex.Event) { l.Append(events...) }
		},
		InvalidCursors: reflextest.InvalidIntCursors(),
	})
}

type countConsumer struct {
	n    atomic.Int64
	last string
}

func (c *countConsumer) Name() string { return "counter" }
func (c *countConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	if n := c.n.Add(1); e.ID != strconv.FormatInt(n, 10) {
		return fmt.Errorf("event %d has ID %q", n, e.ID)
	}
	c.last = e.ID
	return nil
}

func TestGRPCStream10000(t *testing.T) {
	l, srv, cl := grpcLog(t)
	const n = 10000
	events := make([]reflex.Event, n)
	for i := range events {
		events[i] = reflex.Event{ForeignID: strconv.Itoa(i), Type: grpcType(i%5 + 1), MetaData: []byte("m")}
	}
	l.Append(events...)

	store := reflextest.NewCursorStore()
	c := &countConsumer{}
	err := reflex.Run(t.Context(), reflex.NewSpec(cl.StreamEvents, store, c, reflex.WithStreamToHead()))
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Run = %v, want an error for which IsHeadReachedErr is true", err)
	}
	if got := c.n.Load(); got != n {
		t.Errorf("consumed %d events, want %d", got, n)
	}
	if got := store.Cursor("counter"); got != strconv.Itoa(n) {
		t.Errorf("cursor = %q, want %q", got, strconv.Itoa(n))
	}
	if got := srv.SentCount(); got != n {
		t.Errorf("server sent %v events, want %d", got, n)
	}
}

func TestGRPCHeadReachedCrossesTheWire(t *testing.T) {
	_, _, cl := grpcLog(t)
	sc, err := cl.StreamEvents(t.Context(), "", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	_, err = sc.Recv()
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Recv = %v, want an error for which IsHeadReachedErr is true", err)
	}
	if reflex.IsStoppedErr(err) || reflex.IsExpected(err) {
		t.Errorf("head reached error %v also matches stopped/expected", err)
	}
	if got := status.Code(err); got != codes.OutOfRange {
		t.Errorf("status code = %v, want OutOfRange", got)
	}
}

func TestGRPCStopEndsStreamsWithErrStopped(t *testing.T) {
	l, srv, cl := grpcLog(t)
	l.Append(reflex.Event{ForeignID: "1", Type: grpcType(1)})

	const streams = 3
	errs := make(chan error, streams)
	var ready sync.WaitGroup
	for range streams {
		sc, err := cl.StreamEvents(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		ready.Add(1)
		go func() {
			// The first event proves the stream is being served.
			if _, err := sc.Recv(); err != nil {
				errs <- fmt.Errorf("first Recv: %w", err)
				ready.Done()
				return
			}
			ready.Done()
			_, err := sc.Recv()
			errs <- err
		}()
	}
	ready.Wait()
	srv.Stop()
	srv.Stop() // idempotent
	for range streams {
		if err := <-errs; !reflex.IsStoppedErr(err) {
			t.Errorf("Recv after Stop = %v, want an error for which IsStoppedErr is true", err)
		} else if !reflex.IsExpected(err) {
			t.Errorf("IsExpected(%v) = false, want true", err)
		}
	}
}

func TestServerStreamAfterStop(t *testing.T) {
	s := reflex.NewServer()
	s.Stop()
	s.Stop()
	err := s.Stream(reflextest.NewLog().Stream, &reflexpb.StreamRequest{}, nopServerStream{t.Context()})
	if !reflex.IsStoppedErr(err) {
		t.Fatalf("Stream after Stop = %v, want ErrStopped", err)
	}
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("status code = %v, want Unavailable", got)
	}
}

type nopServerStream struct{ ctx context.Context }

func (s nopServerStream) Context() context.Context   { return s.ctx }
func (s nopServerStream) Send(*reflexpb.Event) error { return nil }

// activeStreams wraps a StreamFunc and counts clients that are open
// (Server.Stream closes its client when the handler returns).
type activeStreams struct {
	inner reflex.StreamFunc
	n     atomic.Int64
}

func (a *activeStreams) stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	cl, err := a.inner(ctx, after, opts...)
	if err != nil {
		return nil, err
	}
	a.n.Add(1)
	return &closeCounter{StreamClient: cl, n: &a.n}, nil
}

type closeCounter struct {
	reflex.StreamClient
	n    *atomic.Int64
	once sync.Once
}

func (c *closeCounter) Close() error {
	c.once.Do(func() { c.n.Add(-1) })
	return nil
}

func TestGRPCClientCancelFreesServerStream(t *testing.T) {
	l := reflextest.NewLog()
	l.Append(reflex.Event{ForeignID: "1", Type: grpcType(1)})
	a := &activeStreams{inner: l.Stream}
	_, addr := grpctest.NewServer(t, a.stream, nil)
	cl := grpctest.NewClient(t, addr)

	const streams = 20
	for i := range streams {
		ctx, cancel := context.WithCancel(t.Context())
		sc, err := cl.StreamEvents(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Recv(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		cancel()
		_, err = sc.Recv()
		if err == nil || !reflex.IsExpected(err) {
			t.Errorf("Recv after cancel = %v, want a context canceled error", err)
		}
	}
	err := testguard.Poll(time.Minute, 5*time.Millisecond, "server streams ending after their clients cancelled", func() (int64, bool, error) {
		n := a.n.Load()
		return n, n == 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGRPCInvalidRequest(t *testing.T) {
	_, addr := grpctest.NewServer(t, reflextest.NewLog().Stream, nil)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sc, err := reflexpb.NewReflexClient(conn).Stream(t.Context(), &reflexpb.StreamRequest{
		Options: &reflexpb.StreamOptions{Lag: durationpb.New(-time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sc.Recv()
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Fatalf("Recv = %v (code %v), want InvalidArgument", err, got)
	}
}

func TestWrapStreamPBRejectsNegativeLag(t *testing.T) {
	stream := reflex.WrapStreamPB(func(context.Context, *reflexpb.StreamRequest) (reflex.StreamClientPB, error) {
		return nil, errors.New("must not be called")
	})
	if _, err := stream(t.Context(), "", reflex.WithStreamLag(-time.Second)); err == nil {
		t.Fatal("WrapStreamPB stream with negative lag: nil error")
	}
}

func TestGRPCTrace(t *testing.T) {
	l, _, cl := grpcLog(t)
	trace := []byte{1, 2, 3}
	l.Append(reflex.Event{ForeignID: "9", Type: grpcType(2), Trace: trace, MetaData: []byte("x")})
	sc, err := cl.StreamEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := sc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Trace) != string(trace) || e.ForeignID != "9" || e.Type.ReflexType() != 2 || e.Timestamp.IsZero() {
		t.Errorf("received %+v", e)
	}
}

type grpcType int

func (t grpcType) ReflexType() int { return int(t) }
