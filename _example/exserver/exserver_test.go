package exserver_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/_example/exserver"
	"github.com/seed-e488ba2e/reflex/_example/internal/auth"
	"github.com/seed-e488ba2e/reflex/_example/internal/exdb"
)

func newService(t *testing.T) *exserver.Service {
	t.Helper()
	db, err := exdb.Open(t.Context(), "", t.TempDir(), "users")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := exserver.New(db)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCreateAndRenameInsertEvents(t *testing.T) {
	s := newService(t)
	ctx := t.Context()
	id, err := s.CreateUser(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RenameUser(ctx, id, "anne"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameUser(ctx, id+100, "nobody"); err == nil {
		t.Error("RenameUser of a missing user: no error")
	}
	cl, err := s.Stream()(ctx, "", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	var got []reflex.Event
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, *e)
	}
	if len(got) != 2 || !reflex.IsType(got[0].Type, exserver.UserCreated) || !reflex.IsType(got[1].Type, exserver.UserRenamed) || got[0].ForeignIDInt() != id {
		t.Errorf("events = %+v, want UserCreated then UserRenamed of user %d (and nothing for the failed rename)", got, id)
	}
}

// serve starts the service's gRPC server and returns its address and the
// client credentials.
func serve(t *testing.T, s *exserver.Service, token string) (string, *grpc.ClientConn, credentials.TransportCredentials) {
	t.Helper()
	serverCreds, clientCreds, err := auth.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis, serverCreds, token) }()
	t.Cleanup(func() {
		s.Stop()
		s.Stop() // idempotent
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(clientCreds), grpc.WithPerRPCCredentials(auth.Token(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return lis.Addr().String(), conn, clientCreds
}

func recvOne(ctx context.Context, conn *grpc.ClientConn) (*reflex.Event, error) {
	cl, err := reflex.GRPCStreamFunc(conn)(ctx, "")
	if err != nil {
		return nil, err
	}
	return cl.Recv()
}

func TestServeWithToken(t *testing.T) {
	s := newService(t)
	if _, err := s.CreateUser(t.Context(), "bob"); err != nil {
		t.Fatal(err)
	}
	addr, conn, trusted := serve(t, s, "secret")
	e, err := recvOne(t.Context(), conn)
	if err != nil {
		t.Fatalf("authorised client: %v", err)
	}
	if !reflex.IsType(e.Type, exserver.UserCreated) {
		t.Errorf("event %+v, want UserCreated", e)
	}

	_, clientCreds, err := auth.SelfSigned() // trusts another certificate
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]grpc.DialOption{
		"no token":    {grpc.WithTransportCredentials(trusted)},
		"wrong token": {grpc.WithTransportCredentials(trusted), grpc.WithPerRPCCredentials(auth.Token("guess"))},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := grpc.NewClient(addr, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = recvOne(t.Context(), c)
			if status.Code(errors.Unwrap(err)) != codes.Unauthenticated && status.Code(err) != codes.Unauthenticated {
				t.Errorf("Recv error = %v, want Unauthenticated", err)
			}
		})
	}
	t.Run("untrusted certificate", func(t *testing.T) {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(clientCreds), grpc.WithPerRPCCredentials(auth.Token("secret")))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := recvOne(t.Context(), c); err == nil {
			t.Error("client that does not trust the server certificate: no error")
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := recvOne(t.Context(), c); err == nil {
			t.Error("plaintext client: no error")
		}
	})
}

// TestStopBeforeServe checks that a Stop that runs before Serve (as when
// a caller shuts down right after starting Serve in a goroutine) makes
// Serve return instead of serving forever.
func TestStopBeforeServe(t *testing.T) {
	s := newService(t)
	serverCreds, _, err := auth.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis, serverCreds, "secret") }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Stop = %v, want nil", err)
		}
	case <-time.After(30 * time.Second): // a hang guard
		lis.Close()
		t.Fatal("Serve after Stop is still serving")
	}
}
