// Package grpctest runs reflex streams over real gRPC on a loopback port,
// for tests.
//
// [NewServer] serves a reflex.StreamFunc as the reflexpb.Reflex service
// (Stream and StreamBatch, with packed batches for clients that ask for
// them) and counts the events it sends; [NewClient] connects to it, and
// its StreamEvents method is a reflex.StreamFunc over the connection.
//
// Goroutines: each Server runs the gRPC server's Serve loop on a goroutine
// it owns; Server.Stop stops it and waits for it (and is registered with
// t.Cleanup).
package grpctest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/wire"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// gracefulStop bounds how long Server.Stop waits for calls to end before
// it closes their connections.
const gracefulStop = 5 * time.Second

// Server is a gRPC server on 127.0.0.1 serving one reflex stream as the
// reflexpb.Reflex service (Stream and StreamBatch) through a reflex.Server.
// Its methods are safe for concurrent use.
type Server struct {
	reflexpb.UnimplementedReflexServer

	stream  reflex.StreamFunc
	rs      *reflex.Server
	gs      *grpc.Server
	noBatch bool
	sent    atomic.Int64
	done    chan struct{} // closed when Serve returns
	once    sync.Once
}

var _ reflexpb.ReflexServer = (*Server)(nil)

// ServerOption configures a Server made by NewServerWithOptions.
type ServerOption func(*serverConfig)

type serverConfig struct {
	noBatch    bool
	grpcOpts   []grpc.ServerOption
	reflexOpts []reflex.ServerOption
}

// WithoutBatch makes the server answer StreamBatch with Unimplemented, as
// servers built before batches were added do.
func WithoutBatch() ServerOption {
	return func(c *serverConfig) { c.noBatch = true }
}

// WithGRPCServerOptions passes opts to grpc.NewServer, for example
// interceptors. Options of several calls add up.
func WithGRPCServerOptions(opts ...grpc.ServerOption) ServerOption {
	return func(c *serverConfig) { c.grpcOpts = append(c.grpcOpts, opts...) }
}

// WithReflexServerOptions passes opts to reflex.NewServerWithOptions, for
// example its limits. Options of several calls add up.
func WithReflexServerOptions(opts ...reflex.ServerOption) ServerOption {
	return func(c *serverConfig) { c.reflexOpts = append(c.reflexOpts, opts...) }
}

// NewServer starts a server for stream on a free loopback port and returns
// it with its address. The store argument is unused (kept for
// compatibility with luno/reflex). If tb is not nil the server stops when
// the test ends, and a failure to listen fails the test; with a nil tb,
// call Stop yourself, and a failure to listen panics.
func NewServer(tb testing.TB, stream reflex.StreamFunc, store reflex.CursorStore) (*Server, string) {
	if tb != nil {
		tb.Helper()
	}
	return NewServerWithOptions(tb, stream)
}

// NewServerWithOptions is NewServer configured by opts. It panics, with a
// "grpctest:"-prefixed message, if an option is nil.
func NewServerWithOptions(tb testing.TB, stream reflex.StreamFunc, opts ...ServerOption) (*Server, string) {
	if tb != nil {
		tb.Helper()
	}
	var cfg serverConfig
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("grpctest: NewServerWithOptions: option %d is nil", i))
		}
		o(&cfg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(tb, "grpctest: listen: %v", err)
	}
	s := &Server{
		stream:  stream,
		rs:      reflex.NewServerWithOptions(cfg.reflexOpts...),
		gs:      grpc.NewServer(cfg.grpcOpts...),
		noBatch: cfg.noBatch,
		done:    make(chan struct{}),
	}
	reflexpb.RegisterReflexServer(s.gs, s)
	go func() {
		defer close(s.done)
		_ = s.gs.Serve(l)
	}()
	if tb != nil {
		tb.Cleanup(s.Stop)
	}
	return s, l.Addr().String()
}

// fail fails the test, or panics without one.
func fail(tb testing.TB, format string, args ...any) {
	if tb == nil {
		panic(fmt.Sprintf(format, args...))
	}
	tb.Helper()
	tb.Fatalf(format, args...)
}

// Stream implements reflexpb.ReflexServer with reflex.Server.Stream.
func (s *Server) Stream(req *reflexpb.StreamRequest, ss reflexpb.Reflex_StreamServer) error {
	return s.rs.Stream(s.stream, req, countingServer{ss, &s.sent})
}

type countingServer struct {
	reflexpb.Reflex_StreamServer
	n *atomic.Int64
}

func (c countingServer) Send(e *reflexpb.Event) error {
	err := c.Reflex_StreamServer.Send(e)
	if err == nil {
		c.n.Add(1)
	}
	return err
}

// StreamBatch implements reflexpb.ReflexServer with
// reflex.Server.StreamBatch (packed batches for clients that ask for
// them), or answers Unimplemented with WithoutBatch.
func (s *Server) StreamBatch(req *reflexpb.StreamRequest, ss reflexpb.Reflex_StreamBatchServer) error {
	if s.noBatch {
		return s.UnimplementedReflexServer.StreamBatch(req, ss)
	}
	return s.rs.StreamBatch(s.stream, req, countingBatchServer{ss, &s.sent})
}

type countingBatchServer struct {
	reflexpb.Reflex_StreamBatchServer
	n *atomic.Int64
}

func (c countingBatchServer) Send(b *reflexpb.EventBatch) error {
	n := len(b.GetEvents())
	if p := b.GetPacked(); len(p) > 0 {
		m, err := wire.Count(p)
		if err != nil {
			return err
		}
		n += m
	}
	err := c.Reflex_StreamBatchServer.Send(b)
	if err == nil {
		c.n.Add(int64(n))
	}
	return err
}

// SentCount returns the number of events sent to clients so far, packed
// or not.
func (s *Server) SentCount() float64 { return float64(s.sent.Load()) }

// Peers returns the streams the server is serving (see
// reflex.Server.Peers).
func (s *Server) Peers() []reflex.Peer { return s.rs.Peers() }

// Stop ends open streams with reflex.ErrStopped and stops the gRPC server,
// gracefully for up to 5 seconds. It is idempotent, safe for concurrent
// use, and returns once the server's goroutine has exited.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.rs.Stop()
		stopped := make(chan struct{})
		go func() {
			s.gs.GracefulStop()
			close(stopped)
		}()
		t := time.NewTimer(gracefulStop)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			s.gs.Stop()
			<-stopped
		}
		<-s.done
	})
}

// Client is a gRPC client of a reflexpb.Reflex server. Its methods are
// safe for concurrent use.
type Client struct {
	conn      *grpc.ClientConn
	batch     reflex.StreamFunc
	single    reflex.StreamFunc
	closeOnce sync.Once
	closeErr  error
}

// NewClient connects to url without TLS. If tb is not nil the connection
// is closed when the test ends, and a failure fails the test; with a nil
// tb, call Close yourself, and a failure panics.
func NewClient(tb testing.TB, url string) *Client {
	if tb != nil {
		tb.Helper()
	}
	return NewClientWithOptions(tb, url)
}

// NewClientWithOptions is NewClient with opts added to the options of
// grpc.NewClient, for example interceptors or window sizes.
func NewClientWithOptions(tb testing.TB, url string, opts ...grpc.DialOption) *Client {
	if tb != nil {
		tb.Helper()
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(url, opts...)
	if err != nil {
		fail(tb, "grpctest: dial %s: %v", url, err)
	}
	rc := reflexpb.NewReflexClient(conn)
	c := &Client{
		conn:  conn,
		batch: reflex.GRPCStreamFunc(conn),
		single: reflex.WrapStreamPB(func(ctx context.Context, req *reflexpb.StreamRequest) (reflex.StreamClientPB, error) {
			return rc.Stream(ctx, req)
		}),
	}
	if tb != nil {
		tb.Cleanup(func() { _ = c.Close() })
	}
	return c
}

// StreamEvents is a reflex.StreamFunc over the server's events: packed
// batches (see reflex.GRPCStreamFunc), falling back to one event per
// message for servers without StreamBatch.
func (c *Client) StreamEvents(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	return c.batch(ctx, after, opts...)
}

// StreamEventsSingle is a reflex.StreamFunc over the server's events one
// per message (the Stream RPC, see reflex.WrapStreamPB), as luno/reflex
// clients stream.
func (c *Client) StreamEventsSingle(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	return c.single(ctx, after, opts...)
}

// Close closes the connection. It is idempotent and safe for concurrent
// use.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}
