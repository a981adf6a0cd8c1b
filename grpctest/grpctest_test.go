package grpctest_test

import (
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/grpctest"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

type typ int

func (t typ) ReflexType() int { return int(t) }

func TestConformance(t *testing.T) {
	reflextest.TestStreamFunc(t, reflextest.StreamHarness{
		New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
			l := reflextest.NewLog()
			_, addr := grpctest.NewServer(t, l.Stream, nil)
			return grpctest.NewClient(t, addr).StreamEvents, func(t *testing.T, events ...reflex.Event) { l.Append(events...) }
		},
		InvalidCursors: reflextest.InvalidIntCursors(),
	})
}

// packedCounter is a server stream that counts the packed batches sent.
type packedCounter struct {
	grpc.ServerStream
	n *atomic.Int64
}

func (p packedCounter) SendMsg(m any) error {
	if b, ok := m.(*reflexpb.EventBatch); ok && len(b.GetPacked()) > 0 {
		p.n.Add(1)
	}
	return p.ServerStream.SendMsg(m)
}

// TestSentCountPacked checks that the server sends packed batches to its
// client (its counting wrapper does not turn them off) and counts their
// events.
func TestSentCountPacked(t *testing.T) {
	var packed atomic.Int64
	count := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, packedCounter{ss, &packed})
	}
	l := reflextest.NewLog()
	for range 2500 {
		l.Append(reflex.Event{Type: typ(1)})
	}
	srv, addr := grpctest.NewServerWithOptions(t, l.Stream, grpctest.WithGRPCServerOptions(grpc.StreamInterceptor(count)))
	sc, err := grpctest.NewClient(t, addr).StreamEvents(t.Context(), "", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if _, err := sc.Recv(); err != nil {
			if !reflex.IsHeadReachedErr(err) {
				t.Fatal(err)
			}
			break
		}
	}
	if n != 2500 || srv.SentCount() != 2500 {
		t.Errorf("received %d events, SentCount = %v; want 2500 and 2500", n, srv.SentCount())
	}
	if packed.Load() == 0 {
		t.Error("no packed batch was sent")
	}
}

// TestNilTB checks that a nil testing.TB works, as luno/reflex accepts
// it: nothing is registered for clean-up, the caller stops and closes.
func TestNilTB(t *testing.T) {
	l := reflextest.NewLog()
	l.Append(reflex.Event{Type: typ(1)})
	srv, addr := grpctest.NewServer(nil, l.Stream, nil)
	defer srv.Stop()
	cl := grpctest.NewClient(nil, addr)
	defer cl.Close()
	sc, err := cl.StreamEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := sc.Recv(); err != nil || e.ID != "1" {
		t.Fatalf("Recv = %v, %v; want event 1", e, err)
	}
	srv.Stop()
	srv.Stop() // idempotent
	if _, err := sc.Recv(); !reflex.IsStoppedErr(err) {
		t.Errorf("Recv after Stop = %v, want ErrStopped", err)
	}
	if err := cl.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := cl.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestPeers checks that the server reports its open streams.
func TestPeers(t *testing.T) {
	l := reflextest.NewLog()
	l.Append(reflex.Event{Type: typ(1)})
	srv, addr := grpctest.NewServer(t, l.Stream, nil)
	sc, err := grpctest.NewClient(t, addr).StreamEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Recv(); err != nil {
		t.Fatal(err)
	}
	if p := srv.Peers(); len(p) != 1 || p[0].Method != "StreamBatch" {
		t.Errorf("Peers = %+v, want one StreamBatch stream", p)
	}
}
