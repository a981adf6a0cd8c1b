package auth_test

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/_example/internal/auth"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

type typ int

func (t typ) ReflexType() int { return int(t) }

// serve starts a TLS server with token auth streaming a one-event log.
func serve(t *testing.T, token string) (addr string, clientTLS grpc.DialOption) {
	t.Helper()
	serverCreds, clientCreds, err := auth.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	l := reflextest.NewLog()
	l.Append(reflex.Event{ForeignID: "1", Type: typ(1)})
	rs := reflex.NewServer()
	gs := grpc.NewServer(append(auth.ServerOptions(token), grpc.Creds(serverCreds))...)
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(l.Stream))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(func() { rs.Stop(); gs.Stop() })
	return lis.Addr().String(), grpc.WithTransportCredentials(clientCreds)
}

func recvOne(t *testing.T, addr string, opts ...grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := reflex.GRPCStreamFunc(conn)(t.Context(), "")
	if err != nil {
		return err
	}
	_, err = cl.Recv()
	return err
}

func TestTokenAccepted(t *testing.T) {
	addr, tlsOpt := serve(t, "s3cret")
	if err := recvOne(t, addr, tlsOpt, grpc.WithPerRPCCredentials(auth.Token("s3cret"))); err != nil {
		t.Fatalf("authenticated client: %v", err)
	}
}

func TestMissingTokenRefused(t *testing.T) {
	addr, tlsOpt := serve(t, "s3cret")
	err := recvOne(t, addr, tlsOpt)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("client without token: %v, want Unauthenticated", err)
	}
}

func TestWrongTokenRefused(t *testing.T) {
	addr, tlsOpt := serve(t, "s3cret")
	err := recvOne(t, addr, tlsOpt, grpc.WithPerRPCCredentials(auth.Token("guess")))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("client with wrong token: %v, want Unauthenticated", err)
	}
}

// TestServerOptionsEmptyToken checks that an empty token is refused at
// setup: with it, a client sending "Bearer " would be let in.
func TestServerOptionsEmptyToken(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error(`ServerOptions("") did not panic`)
		}
	}()
	auth.ServerOptions("")
}
