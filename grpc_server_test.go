package reflex_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// stalledCall is a server stream whose Send blocks until the call ends,
// as gRPC's Send does while a client that does not read has a full
// flow-control window. gRPC ends the call only after the handler returns.
type stalledCall struct {
	ctx   context.Context
	sends atomic.Int64
}

func (s *stalledCall) Context() context.Context { return s.ctx }

func (s *stalledCall) block() error {
	s.sends.Add(1)
	<-s.ctx.Done()
	return s.ctx.Err()
}

type stalledStream struct{ *stalledCall }

func (s stalledStream) Send(*reflexpb.Event) error { return s.block() }

type stalledBatchStream struct{ *stalledCall }

func (s stalledBatchStream) Send(*reflexpb.EventBatch) error { return s.block() }

// TestServerStopEndsStreamBlockedInSend checks that Stop ends a stream
// call whose Send is blocked by a client that does not read (without it,
// GracefulStop would wait for that client forever), and that Stop returns
// only once the goroutine serving the call has exited and closed the
// stream client.
func TestServerStopEndsStreamBlockedInSend(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(s *reflex.Server, sFn reflex.StreamFunc, c *stalledCall) error
		sFn   func(l *reflextest.Log) reflex.StreamFunc
	}{
		{"Stream", func(s *reflex.Server, sFn reflex.StreamFunc, c *stalledCall) error {
			return s.Stream(sFn, &reflexpb.StreamRequest{}, stalledStream{c})
		}, func(l *reflextest.Log) reflex.StreamFunc { return l.Stream }},
		{"StreamBatch", func(s *reflex.Server, sFn reflex.StreamFunc, c *stalledCall) error {
			return s.StreamBatch(sFn, &reflexpb.StreamRequest{}, stalledBatchStream{c})
		}, func(l *reflextest.Log) reflex.StreamFunc { return l.Stream }},
		{"StreamBatchUnbuffered", func(s *reflex.Server, sFn reflex.StreamFunc, c *stalledCall) error {
			return s.StreamBatch(sFn, &reflexpb.StreamRequest{}, stalledBatchStream{c})
		}, func(l *reflextest.Log) reflex.StreamFunc { return unbuffered(l.Stream) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := reflextest.NewLog()
				appendN(l, 10)
				src := &activeStreams{inner: tc.sFn(l)}
				s := reflex.NewServer()
				callCtx, endCall := context.WithCancel(t.Context())
				defer endCall()
				call := &stalledCall{ctx: callCtx}
				errc := make(chan error, 1)
				go func() { errc <- tc.serve(s, src.stream, call) }()
				synctest.Wait()
				if got := call.sends.Load(); got != 1 {
					t.Fatalf("Sends started = %d, want 1 (blocked)", got)
				}

				stopped := make(chan struct{})
				go func() {
					s.Stop()
					close(stopped)
				}()
				err := <-errc // without the fix: deadlock, reported by synctest
				if !reflex.IsStoppedErr(err) || status.Code(err) != codes.Unavailable {
					t.Errorf("handler returned %v, want ErrStopped with code Unavailable", err)
				}
				synctest.Wait()
				select {
				case <-stopped:
					t.Fatal("Stop returned while the call's Send was still blocked")
				default:
				}

				endCall() // gRPC ends the call once the handler has returned
				<-stopped
				if n := src.n.Load(); n != 0 {
					t.Errorf("%d stream clients still open after Stop, want 0", n)
				}
				s.Stop() // idempotent, returns at once
			})
		})
	}
}

// TestServerStreamStopWhileOpening checks that a Stream call racing Stop
// ends with ErrStopped and that Stop waits for it.
func TestServerStreamStopWhileOpening(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := reflex.NewServer()
		opening := make(chan struct{})
		sFn := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
			close(opening)
			<-ctx.Done() // a slow open that honours its context
			return nil, ctx.Err()
		}
		errc := make(chan error, 1)
		go func() { errc <- s.Stream(sFn, &reflexpb.StreamRequest{}, nopServerStream{t.Context()}) }()
		<-opening
		s.Stop()
		if err := <-errc; !reflex.IsStoppedErr(err) {
			t.Fatalf("Stream = %v, want ErrStopped", err)
		}
	})
}

// nilClientStream is a StreamFunc that breaks the StreamFunc contract by
// returning a nil client and a nil error.
func nilClientStream(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) {
	return nil, nil
}

// nilEventClient breaks the StreamClient contract: Recv returns a nil
// event and a nil error.
type nilEventClient struct{}

func (nilEventClient) Recv() (*reflex.Event, error) { return nil, nil }

func nilEventStream(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) {
	return nilEventClient{}, nil
}

type nopBatchServerStream struct{ ctx context.Context }

func (s nopBatchServerStream) Context() context.Context        { return s.ctx }
func (s nopBatchServerStream) Send(*reflexpb.EventBatch) error { return nil }

// TestServerBadStreamFunc checks that a StreamFunc returning a nil client
// or a nil event ends the call with an error rather than a panic, which
// would crash the whole gRPC server process.
func TestServerBadStreamFunc(t *testing.T) {
	for _, tc := range []struct {
		name string
		sFn  reflex.StreamFunc
		want string
	}{
		{"nil client", nilClientStream, "nil client"},
		{"nil event", nilEventStream, "nil event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := reflex.NewServer()
			defer s.Stop()
			errs := map[string]error{
				"Stream":      s.Stream(tc.sFn, &reflexpb.StreamRequest{}, nopServerStream{t.Context()}),
				"StreamBatch": s.StreamBatch(tc.sFn, &reflexpb.StreamRequest{}, nopBatchServerStream{t.Context()}),
			}
			if tc.name == "nil event" { // read ahead by a goroutine
				errs["StreamBatchUnbuffered"] = s.StreamBatch(unbuffered(tc.sFn), &reflexpb.StreamRequest{},
					nopBatchServerStream{t.Context()})
			}
			for name, err := range errs {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s = %v, want an error containing %q", name, err, tc.want)
				}
				if errors.Is(err, reflex.ErrStopped) {
					t.Errorf("%s = %v, want no ErrStopped", name, err)
				}
			}
		})
	}
}

// blockedBatchStream is a StreamBatchClientPB whose Recv waits for release,
// then fails with Unimplemented, as a server without StreamBatch does.
type blockedBatchStream struct{ entered, release chan struct{} }

func (b blockedBatchStream) Recv() (*reflexpb.EventBatch, error) {
	close(b.entered)
	<-b.release
	return nil, status.Error(codes.Unimplemented, "unknown method StreamBatch")
}

// TestWrapStreamBatchPBCloseEndsFallback checks that Close of a batch
// client ends the fallback stream it opens, even when Close races the Recv
// that would open it: the fallback, if opened at all, must not outlive the
// client until the caller's context ends.
func TestWrapStreamBatchPBCloseEndsFallback(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	fallbackCtx := make(chan context.Context, 1)
	stream := reflex.WrapStreamBatchPB(
		func(context.Context, *reflexpb.StreamRequest) (reflex.StreamBatchClientPB, error) {
			return blockedBatchStream{entered, release}, nil
		},
		func(ctx context.Context, _ *reflexpb.StreamRequest) (reflex.StreamClientPB, error) {
			fallbackCtx <- ctx
			return nilPBClient{}, nil
		})
	sc, err := stream(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		_, _ = sc.Recv()
	}()
	<-entered // Recv is waiting for the first batch
	if err := sc.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	close(release) // the batch RPC fails with Unimplemented after Close
	<-recvDone
	select {
	case ctx := <-fallbackCtx:
		if ctx.Err() == nil {
			t.Error("the fallback stream's context is live after Close, want it cancelled")
		}
	default: // not opened at all after Close: fine
	}
}

type nilPBClient struct{}

func (nilPBClient) Recv() (*reflexpb.Event, error) { return nil, io.EOF }
