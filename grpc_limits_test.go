package reflex_test

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/grpctest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// maxMessage is the longest error message the tests accept for bad input:
// status messages are at most 1 KiB.
const maxMessage = 1024

// TestGRPCInvalidCursors checks, over real loopback gRPC against a source
// that parses integer cursors, that every bad cursor gives a clear,
// bounded error with code InvalidArgument for which errors.Is(err,
// reflex.ErrInvalidCursor) is true on the client, with both clients.
func TestGRPCInvalidCursors(t *testing.T) {
	l := reflextest.NewLog()
	appendN(l, 3)
	_, addr := grpctest.NewServer(t, l.Stream, nil)
	cl := grpctest.NewClient(t, addr)
	for _, tc := range []struct {
		name, cursor, says string
	}{
		{"letters", "abc", "not a non-negative base-10 integer"},
		{"negative", "-1", "negative"},
		{"int64 overflow", "9223372036854775808", "beyond the range of int64"},
		{"1 MB", strings.Repeat("1", 1<<20), "1048576 bytes, more than 4096"},
		{"NUL", "1\x00", "NUL"},
		{"invalid UTF-8", "1\xff", "not valid UTF-8"},
	} {
		for _, c := range []struct {
			name   string
			stream reflex.StreamFunc
		}{
			{"Batch", cl.StreamEvents},
			{"Single", cl.StreamEventsSingle},
		} {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				sc, err := c.stream(t.Context(), tc.cursor, reflex.WithStreamToHead())
				if err == nil {
					e, rerr := sc.Recv()
					_ = sc.(io.Closer).Close()
					if rerr == nil {
						t.Fatalf("Recv returned event %q, want an error", e.ID)
					}
					err = rerr
				}
				if !errors.Is(err, reflex.ErrInvalidCursor) {
					t.Errorf("error %v: errors.Is(err, ErrInvalidCursor) = false", err)
				}
				if got := status.Code(err); got != codes.InvalidArgument {
					t.Errorf("error %v: code %v, want InvalidArgument", err, got)
				}
				if len(err.Error()) > maxMessage {
					t.Errorf("error message is %d bytes, want at most %d", len(err.Error()), maxMessage)
				}
				if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "cursor") {
					t.Errorf("error %q does not say what is wrong with the cursor (%q)", err, tc.says)
				}
				if reflex.IsExpected(err) || reflex.IsHeadReachedErr(err) {
					t.Errorf("error %v counts as expected or head reached", err)
				}
			})
		}
	}
}

// TestGRPCServerRejectsInvalidRequests sends requests that a reflex client
// refuses to send (raw, through the generated client) and checks that the
// server refuses them before calling its StreamFunc, with InvalidArgument,
// a bounded message and the reflex ErrorInfo.
func TestGRPCServerRejectsInvalidRequests(t *testing.T) {
	var calls atomic.Int64
	sFn := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		calls.Add(1)
		return reflextest.NewLog().Stream(ctx, after, opts...)
	}
	rc := reflexpb.NewReflexClient(serveReflex(t, sFn))
	for _, tc := range []struct {
		name string
		req  *reflexpb.StreamRequest
	}{
		{"1 MB cursor", &reflexpb.StreamRequest{After: strings.Repeat("7", 1<<20)}},
		{"cursor over the limit", &reflexpb.StreamRequest{After: strings.Repeat("7", reflex.MaxCursorBytes+1)}},
		{"NUL", &reflexpb.StreamRequest{After: "\x00"}},
		{"negative lag", &reflexpb.StreamRequest{Options: &reflexpb.StreamOptions{Lag: durationpb.New(-time.Second)}}},
		{"malformed lag", &reflexpb.StreamRequest{Options: &reflexpb.StreamOptions{Lag: &durationpb.Duration{Seconds: 1, Nanos: -1}}}},
	} {
		for _, rpc := range []string{"Stream", "StreamBatch"} {
			t.Run(tc.name+"/"+rpc, func(t *testing.T) {
				var recv func() error
				if rpc == "Stream" {
					sc, err := rc.Stream(t.Context(), tc.req)
					if err != nil {
						t.Fatal(err)
					}
					recv = func() error { _, err := sc.Recv(); return err }
				} else {
					sc, err := rc.StreamBatch(t.Context(), tc.req)
					if err != nil {
						t.Fatal(err)
					}
					recv = func() error { _, err := sc.Recv(); return err }
				}
				err := recv()
				st := status.Convert(err)
				if st.Code() != codes.InvalidArgument {
					t.Errorf("Recv = %v, want code InvalidArgument", err)
				}
				if len(st.Message()) > maxMessage {
					t.Errorf("status message is %d bytes, want at most %d", len(st.Message()), maxMessage)
				}
				var reason string
				for _, d := range st.Details() {
					if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "reflex" {
						reason = info.GetReason()
					}
				}
				if reason != "INVALID_CURSOR" {
					t.Errorf("status details %v, want the reflex ErrorInfo INVALID_CURSOR", st.Details())
				}
			})
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the StreamFunc was called %d times, want 0: invalid requests are refused before", n)
	}
}

// TestGRPCStatusMessagesBounded checks that a StreamFunc error with a huge
// message reaches the client cut to 1 KiB.
func TestGRPCStatusMessagesBounded(t *testing.T) {
	huge := errors.New(strings.Repeat("x", 1<<20))
	sFn := func(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) { return nil, huge }
	sc, err := reflex.GRPCStreamFunc(serveReflex(t, sFn))(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = sc.Recv()
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.Unknown || len(msg) > maxMessage || !strings.HasSuffix(msg, "(1048576 bytes)") {
		t.Errorf("Recv = %.100q... (code %v, message of %d bytes), want Unknown cut to %d bytes naming the length",
			err, status.Code(err), len(msg), maxMessage)
	}
}

// countingSource wraps a StreamFunc and counts the events its clients
// return: what a Server read from it.
type countingSource struct {
	inner reflex.StreamFunc
	n     atomic.Int64
}

func (s *countingSource) stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	cl, err := s.inner(ctx, after, opts...)
	if err != nil {
		return nil, err
	}
	c := &countingClient{StreamClient: cl, n: &s.n}
	if b, ok := cl.(reflex.Buffered); ok {
		return bufferedCounting{c, b}, nil
	}
	return c, nil
}

type countingClient struct {
	reflex.StreamClient
	n *atomic.Int64
}

func (c *countingClient) Recv() (*reflex.Event, error) {
	e, err := c.StreamClient.Recv()
	if err == nil {
		c.n.Add(1)
	}
	return e, err
}

type bufferedCounting struct {
	*countingClient
	reflex.Buffered
}

// TestGRPCStalledClientBoundedBuffer checks that a client that stops
// reading costs the server a bounded number of bytes: the server's buffer
// (events read from the source and not yet handed to gRPC) never holds
// more than WithStreamBuffer and one event, whether the source implements
// Buffered or is read ahead, and back-pressure reaches the source.
func TestGRPCStalledClientBoundedBuffer(t *testing.T) {
	const (
		limit = 64 << 10
		n     = 2000
		meta  = 1 << 10
		// eventBytes is what one event counts for in the buffer: its ID,
		// foreign ID and metadata plus 128 bytes.
		eventBytes = 4 + 4 + meta + 128
	)
	l := reflextest.NewLog()
	events := make([]reflex.Event, n)
	for i := range events {
		events[i] = reflex.Event{ForeignID: strconv.Itoa(1000 + i%9000), Type: grpcType(1), MetaData: make([]byte, meta)}
	}
	l.Append(events...)

	for _, tc := range []struct {
		name string
		src  reflex.StreamFunc
	}{
		{"Buffered", l.Stream},
		{"ReadAhead", unbuffered(l.Stream)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingSource{inner: tc.src}
			rs := reflex.NewServerWithOptions(reflex.WithStreamBuffer(limit))
			// Fixed windows: no BDP growth, so the client takes at most 64 KiB
			// it does not read.
			conn := dial(t, serveWith(t, rs, src.stream), grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
			sc, err := reflex.GRPCStreamFunc(conn)(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sc.Recv(); err != nil {
				t.Fatal(err)
			}

			// The client does not read: the server fills its buffer and
			// waits.
			err = testguard.Poll(time.Minute, time.Millisecond, "the server filling its stream buffer", func() (int64, bool, error) {
				now, _ := reflex.ServerBuffered(rs)
				return src.n.Load(), now >= limit-eventBytes, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// Then nothing moves any more (a hang guard: a server that keeps
			// reading for a client that does not is what this test catches).
			var (
				last   = src.n.Load()
				stable = 0
				tick   = time.NewTicker(2 * time.Millisecond)
			)
			defer tick.Stop()
			err = testguard.Poll(time.Minute, time.Millisecond, "the server reading for a stalled client", func() (int64, bool, error) {
				<-tick.C
				if cur := src.n.Load(); cur != last {
					last, stable = cur, 0
				} else {
					stable++
				}
				return 0, stable == 50, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, peak := reflex.ServerBuffered(rs); peak > limit+eventBytes {
				t.Errorf("the server held %d bytes of events for one stream, want at most %d (the buffer and one event)", peak, limit+eventBytes)
			}
			if got := src.n.Load(); got >= n {
				t.Errorf("the server read all %d events for a client that does not read; want back-pressure", got)
			}
			t.Logf("read %d of %d events of %d bytes for the stalled client", src.n.Load(), n, meta)

			// The client reads again and gets every event.
			for i := 2; i <= n; i++ {
				e, err := sc.Recv()
				if err != nil {
					t.Fatalf("Recv %d: %v", i, err)
				}
				if e.ID != strconv.Itoa(i) {
					t.Fatalf("Recv %d = event %q", i, e.ID)
				}
			}
			_ = sc.(io.Closer).Close()
		})
	}
}

// TestGRPCMaxStreams checks the server-wide limit of concurrent streams:
// the call beyond it gets ResourceExhausted and ErrTooManyStreams at once,
// Stream and StreamBatch count together, and a closed stream frees its
// place.
func TestGRPCMaxStreams(t *testing.T) {
	l := reflextest.NewLog()
	appendN(l, 1)
	rs := reflex.NewServerWithOptions(reflex.WithMaxStreams(2))
	conn := dial(t, serveWith(t, rs, l.Stream))
	batch, single := reflex.GRPCStreamFunc(conn), singleClient(conn)

	open := func(sFn reflex.StreamFunc) (reflex.StreamClient, error) {
		sc, err := sFn(t.Context(), "")
		if err != nil {
			return nil, err
		}
		if _, err := sc.Recv(); err != nil {
			_ = sc.(io.Closer).Close()
			return nil, err
		}
		return sc, nil
	}
	first, err := open(batch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(single); err != nil {
		t.Fatal(err)
	}
	for name, sFn := range map[string]reflex.StreamFunc{"StreamBatch": batch, "Stream": single} {
		_, err := open(sFn)
		if status.Code(err) != codes.ResourceExhausted || !errors.Is(err, reflex.ErrTooManyStreams) {
			t.Errorf("%s beyond the limit = %v (code %v), want ResourceExhausted and ErrTooManyStreams", name, err, status.Code(err))
		}
		if reflex.IsExpected(err) {
			t.Errorf("%s beyond the limit: IsExpected(%v) = true", name, err)
		}
	}

	_ = first.(io.Closer).Close()
	// The place is free once the server's goroutine for the stream has
	// ended, soon after the client closed.
	err = testguard.Poll(time.Minute, time.Millisecond, "a place freed by a closed stream", func() (int64, bool, error) {
		sc, err := open(batch)
		if errors.Is(err, reflex.ErrTooManyStreams) {
			return 0, false, nil
		}
		if err == nil {
			_ = sc.(io.Closer).Close()
		}
		return 0, true, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewServerWithOptionsPanics(t *testing.T) {
	for name, opts := range map[string][]reflex.ServerOption{
		"nil option":         {nil},
		"zero buffer":        {reflex.WithStreamBuffer(0)},
		"negative max":       {reflex.WithMaxStreams(-1)},
		"zero max after one": {reflex.WithMaxStreams(3), reflex.WithMaxStreams(0)},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, _ := r.(string); !strings.HasPrefix(msg, "reflex: ") {
					t.Errorf("recovered %v, want a panic with a reflex: message", r)
				}
			}()
			reflex.NewServerWithOptions(opts...)
		})
	}
}
