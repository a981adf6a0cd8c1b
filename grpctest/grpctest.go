// Package grpctest runs reflex streams over real gRPC on a loopback port,
// for tests.
package grpctest

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// Server is a gRPC server on 127.0.0.1 serving one reflex stream as the
// reflexpb.Reflex service (Stream and StreamBatch).
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

// ServerOption configures a Server.
type ServerOption func(*Server)

// WithoutBatch makes the server answer StreamBatch with Unimplemented, as
// servers built before batches were added do.
func WithoutBatch() ServerOption {
	return func(s *Server) { s.noBatch = true }
}

// NewServer starts a server for stream on a free loopback port and returns
// it with its address. The store argument is unused (kept for API
// compatibility). The server stops when the test ends.
func NewServer(tb testing.TB, stream reflex.StreamFunc, store reflex.CursorStore, opts ...ServerOption) (*Server, string) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("grpctest: listen: %v", err)
	}
	s := &Server{
		stream: stream,
		rs:     reflex.NewServer(),
		gs:     grpc.NewServer(),
		done:   make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	reflexpb.RegisterReflexServer(s.gs, s)
	go func() {
		defer close(s.done)
		_ = s.gs.Serve(l)
	}()
	tb.Cleanup(s.Stop)
	return s, l.Addr().String()
}

// Stream implements reflexpb.ReflexServer.
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

// StreamBatch implements reflexpb.ReflexServer.
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
	err := c.Reflex_StreamBatchServer.Send(b)
	if err == nil {
		c.n.Add(int64(len(b.GetEvents())))
	}
	return err
}

// SentCount returns the number of events sent to clients so far.
func (s *Server) SentCount() int64 { return s.sent.Load() }

// Stop ends open streams with reflex.ErrStopped and stops the gRPC server,
// gracefully for up to 5 seconds. It is idempotent.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.rs.Stop()
		stopped := make(chan struct{})
		go func() {
			s.gs.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			s.gs.Stop()
			<-stopped
		}
		<-s.done
	})
}

// Client is a gRPC client of a reflexpb.Reflex server.
type Client struct {
	conn      *grpc.ClientConn
	closeOnce sync.Once
	closeErr  error
	// StreamEvents streams the server's events in batches (falling back
	// to one event per message for servers without StreamBatch).
	StreamEvents reflex.StreamFunc
	// StreamEventsSingle streams the server's events one per message, as
	// clients built before batches were added do.
	StreamEventsSingle reflex.StreamFunc
}

// NewClient connects to addr without TLS. The connection is closed when
// the test ends.
func NewClient(tb testing.TB, addr string) *Client {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpctest: dial %s: %v", addr, err)
	}
	rc := reflexpb.NewReflexClient(conn)
	c := &Client{
		conn:         conn,
		StreamEvents: reflex.GRPCStreamFunc(conn),
		StreamEventsSingle: reflex.WrapStreamPB(func(ctx context.Context, req *reflexpb.StreamRequest) (reflex.StreamClientPB, error) {
			return rc.Stream(ctx, req)
		}),
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Close closes the connection. It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}
