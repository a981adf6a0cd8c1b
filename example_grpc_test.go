package reflex_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// ExampleNewServerWithOptions serves a stream over gRPC with limits, and
// reads it with GRPCStreamFunc. A cursor the source cannot use comes back
// as InvalidArgument, and errors.Is matches reflex.ErrInvalidCursor on
// the client.
func ExampleNewServerWithOptions() {
	events := reflextest.NewLog() // stands in for an rsql.EventsTable's stream
	events.Append(reflex.Event{ForeignID: "42", Type: UserCreated}, reflex.Event{ForeignID: "42", Type: UserUpdated})

	// The service: a reflex.Server with limits, registered on a gRPC server.
	rs := reflex.NewServerWithOptions(reflex.WithStreamBuffer(256<<10), reflex.WithMaxStreams(100))
	gs := grpc.NewServer()
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(events.Stream))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.GracefulStop()
	defer rs.Stop() // before GracefulStop: ends the open streams

	// The consumer's side.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	stream := reflex.GRPCStreamFunc(conn)

	cl, err := stream(context.Background(), "", reflex.WithStreamToHead())
	if err != nil {
		panic(err)
	}
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			break
		} else if err != nil {
			panic(err)
		}
		fmt.Printf("event %s: user %s type %d\n", e.ID, e.ForeignID, e.Type.ReflexType())
	}

	cl, err = stream(context.Background(), "not-a-number")
	if err == nil {
		_, err = cl.Recv()
	}
	fmt.Println(status.Code(err) == codes.InvalidArgument, errors.Is(err, reflex.ErrInvalidCursor))
	// Output:
	// event 1: user 42 type 1
	// event 2: user 42 type 2
	// true true
}

// ExampleServer_Peers serves a stream to a client that names itself and
// asks for one event type: the server filters before sending, lists the
// stream in Peers, and signals its start and end to the hook.
func ExampleServer_Peers() {
	events := reflextest.NewLog()
	events.Append(reflex.Event{ForeignID: "42", Type: UserCreated}, reflex.Event{ForeignID: "42", Type: UserUpdated},
		reflex.Event{ForeignID: "43", Type: UserCreated})

	signals := make(chan reflex.PeerSignal, 2)
	rs := reflex.NewServerWithOptions(reflex.WithPeerHook(func(s reflex.PeerSignal) { signals <- s }))
	gs := grpc.NewServer()
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(events.Stream))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.GracefulStop()
	defer rs.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	stream := reflex.GRPCStreamFunc(conn,
		reflex.WithGRPCConsumerName("welcome_emails"),
		reflex.WithGRPCEventTypes(UserCreated))
	cl, err := stream(context.Background(), "")
	if err != nil {
		panic(err)
	}
	for range 2 {
		e, err := cl.Recv()
		if err != nil {
			panic(err)
		}
		fmt.Printf("event %s: user %s type %d\n", e.ID, e.ForeignID, e.Type.ReflexType())
	}
	for _, p := range rs.Peers() {
		fmt.Printf("peer %d: %s on %s, types %v\n", p.ID, p.ConsumerName, p.Method, p.Types)
	}
	_ = cl.(io.Closer).Close()
	for range 2 {
		s := <-signals
		fmt.Printf("%s: %s, %d events sent\n", s.Kind, s.Peer.ConsumerName, s.Peer.EventsSent)
	}
	// Output:
	// event 1: user 42 type 1
	// event 3: user 43 type 1
	// peer 1: welcome_emails on StreamBatch, types [1]
	// started: welcome_emails, 0 events sent
	// ended: welcome_emails, 2 events sent
}
