package reflex_test

import (
	"context"
	"errors"
	"fmt"
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
