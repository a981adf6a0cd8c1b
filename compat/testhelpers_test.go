package compat_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/mock"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/grpctest"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/testmock"
)

// grpctest and testmock, with the signatures luno/reflex declares.
var (
	_ func(_ testing.TB, stream reflex.StreamFunc, cstore reflex.CursorStore) (*grpctest.Server, string) = grpctest.NewServer
	_ func(_ testing.TB, url string) *grpctest.Client                                                    = grpctest.NewClient

	_ func(srv *grpctest.Server, req *reflexpb.StreamRequest, ss reflexpb.Reflex_StreamServer) error = (*grpctest.Server).Stream
	_ func(srv *grpctest.Server) float64                                                             = (*grpctest.Server).SentCount
	_ func(srv *grpctest.Server)                                                                     = (*grpctest.Server).Stop
	_ reflexpb.ReflexServer                                                                          = (*grpctest.Server)(nil)

	_ func(cl *grpctest.Client, ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) = (*grpctest.Client).StreamEvents
	_ func(cl *grpctest.Client) error                                                                                        = (*grpctest.Client).Close

	_ func(t *testing.T) testmock.TestStreamer                                      = testmock.NewTestStreamer
	_ func(t *testing.T, cs reflex.CursorStore, consumerName string, eventID int64) = testmock.AwaitConsumer

	_ reflex.CursorStore = new(testmock.CursorStore)
)

// streamer is luno/reflex's testmock.TestStreamer, spelled out.
type streamer interface {
	InsertEvent(r reflex.Event)
	StreamFunc() reflex.StreamFunc
	Stop()
}

var _ streamer = testmock.TestStreamer(nil)

type helperType int

func (t helperType) ReflexType() int { return int(t) }

// TestTestHelpersAsLunoUsersUseThem streams a TestStreamer over grpctest
// into a consumer whose cursor store is the testify mock, and awaits it.
func TestTestHelpersAsLunoUsersUseThem(t *testing.T) {
	ts := testmock.NewTestStreamer(t)
	for _, id := range []string{"1", "2", "3"} {
		ts.InsertEvent(reflex.Event{ID: id, Type: helperType(1), ForeignID: "f"})
	}

	srv, url := grpctest.NewServer(t, ts.StreamFunc(), nil)
	defer srv.Stop()
	cl := grpctest.NewClient(t, url)
	defer cl.Close()

	cs := new(testmock.CursorStore)
	cs.On("GetCursor", mock.Anything, "c").Return("", nil)
	var last string
	cs.On("SetCursor", mock.Anything, "c", mock.Anything).Run(func(args mock.Arguments) {
		last = args.String(2)
	}).Return(nil)
	cs.On("Flush", mock.Anything).Return(nil)

	consumer := reflex.NewConsumer("c", func(context.Context, *reflex.Event) error { return nil })
	err := reflex.Run(context.Background(), reflex.NewSpec(cl.StreamEvents, cs, consumer, reflex.WithStreamToHead()))
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Run = %v, want ErrHeadReached", err)
	}
	if last != "3" || srv.SentCount() != 3 {
		t.Errorf("last cursor %q, SentCount %v; want 3 and 3", last, srv.SentCount())
	}
	cs.AssertExpectations(t)

	store := new(testmock.CursorStore)
	store.On("GetCursor", mock.Anything, "c").Return("3", nil)
	testmock.AwaitConsumer(t, store, "c", 3)
	ts.Stop()
}
