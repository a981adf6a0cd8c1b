//lint:file-ignore SA1019 users of luno/reflex call its deprecated API, which must keep compiling

package compat_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/filters"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// The functions of the root package and of filters, assigned to variables
// of the types luno/reflex declares them with.
var (
	_ func(source reflex.EventType, targets ...reflex.EventType) bool = reflex.IsAnyType
	_ func(source, target reflex.EventType) bool                      = reflex.IsType
	_ func(err error) bool                                            = reflex.IsExpected
	_ func(err error) bool                                            = reflex.IsFilterErr
	_ func(err error) bool                                            = reflex.IsHeadReachedErr
	_ func(err error) bool                                            = reflex.IsStoppedErr
	_ func(in context.Context, s reflex.Spec) error                   = reflex.Run

	_ func(sFn reflex.StreamFunc, cstore reflex.CursorStore, opts ...reflex.StreamOption) reflex.Consumable = reflex.NewConsumable

	_ func(name string, fn reflex.ConsumerFunc, opts ...reflex.ConsumerOption) reflex.Consumer = reflex.NewConsumer
	_ func(ttl time.Duration) reflex.ConsumerOption                                            = reflex.WithConsumerActivityTTL
	_ func(ttl func() time.Duration) reflex.ConsumerOption                                     = reflex.WithConsumerActivityTTLFunc
	_ func(d time.Duration) reflex.ConsumerOption                                              = reflex.WithConsumerLagAlert
	_ func(g prometheus.Gauge) reflex.ConsumerOption                                           = reflex.WithConsumerLagAlertGauge
	_ func(flt reflex.EventFilter) reflex.ConsumerOption                                       = reflex.WithEventFilter
	_ func(evts ...reflex.EventType) reflex.ConsumerOption                                     = reflex.WithFilterIncludeTypes
	_ func(rfn reflex.RecoveryFunc) reflex.ConsumerOption                                      = reflex.WithRecoverFunction
	_ func() reflex.ConsumerOption                                                             = reflex.WithoutConsumerActivityTTL
	_ func() reflex.ConsumerOption                                                             = reflex.WithoutConsumerLag

	_ func() *reflex.Server        = reflex.NewServer
	_ func(s *reflex.Server)       = (*reflex.Server).Stop
	_ func(req reflex.Spec) string = reflex.Spec.Name
	_ func(req reflex.Spec) error  = reflex.Spec.Stop

	_ func(stream reflex.StreamFunc, cStore reflex.CursorStore, consumer reflex.Consumer, opts ...reflex.StreamOption) reflex.Spec = reflex.NewSpec

	_ func(events []*reflex.Event, endErr error) reflex.StreamFunc                                               = reflex.NewMockStream
	_ func(wrap func(context.Context, *reflexpb.StreamRequest) (reflex.StreamClientPB, error)) reflex.StreamFunc = reflex.WrapStreamPB

	_ func() reflex.StreamOption                                = reflex.WithStreamFromHead
	_ func(d time.Duration) reflex.StreamOption                 = reflex.WithStreamLag
	_ func() reflex.StreamOption                                = reflex.WithStreamToHead
	_ func(options ...reflex.StreamOption) reflex.StreamOptions = reflex.ResolveOptions

	_ func(e *reflex.Event) int64         = (*reflex.Event).IDInt
	_ func(e *reflex.Event) int64         = (*reflex.Event).ForeignIDInt
	_ func(e *reflex.Event) bool          = (*reflex.Event).IsIDInt
	_ func(e *reflex.Event) bool          = (*reflex.Event).IsForeignIDInt
	_ func(e *reflex.ConsumerError) int64 = (*reflex.ConsumerError).IDInt
	_ func(e *reflex.ConsumerError) int64 = (*reflex.ConsumerError).EventIDInt
	_ func(e *reflex.ConsumerError) bool  = (*reflex.ConsumerError).IsIDInt
	_ func(e *reflex.ConsumerError) bool  = (*reflex.ConsumerError).IsEventIDInt
	_ func(e reflex.ErrorStatus) int      = reflex.ErrorStatus.ReflexType
	_ func(e reflex.ErrorStatus) int      = reflex.ErrorStatus.ShiftStatus

	_ error = reflex.ErrStopped
	_ error = reflex.ErrHeadReached

	_ reflex.ErrorStatus = reflex.UnknownEventError
	_ reflex.ErrorStatus = reflex.EventErrorRecorded
	_ reflex.EventType   = reflex.EventErrorRecorded

	_ func(efs ...reflex.EventFilter) reflex.EventFilter                                          = filters.AllEventFilters
	_ func(efs ...reflex.EventFilter) reflex.EventFilter                                          = filters.AnyEventFilters
	_ func(err error) bool                                                                        = filters.IsDeserializationErr
	_ func(err error) bool                                                                        = filters.IsMetadataEventFilterErr
	_ func(ds filters.Deserializer[int], flt filters.DataFilter[int]) (reflex.EventFilter, error) = filters.MetadataEventFilter[int]
	_ filters.Deserializer[string]                                                                = func(b []byte) (string, error) { return string(b), nil }
	_ filters.DataFilter[string]                                                                  = func(d string) (bool, error) { return d != "", nil }
)

// The function types, written as luno/reflex users write them.
var (
	_ reflex.ConsumeFunc     = func(context.Context, reflex.Consumer, ...reflex.StreamOption) error { return nil }
	_ reflex.ConsumerFunc    = func(context.Context, *reflex.Event) error { return nil }
	_ reflex.EventFilter     = func(event *reflex.Event) (bool, error) { return true, nil }
	_ reflex.RecoveryFunc    = func(ctx context.Context, ev *reflex.Event, consumer reflex.Consumer, err error) error { return err }
	_ reflex.ErrorInsertFunc = func(ctx context.Context, consumerName string, eventID string, errMsg string) error { return nil }
	_ reflex.StreamOption    = func(o *reflex.StreamOptions) { o.Lag, o.StreamFromHead, o.StreamToHead = time.Second, true, true }
	_ reflex.StreamFunc      = func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		return nil, nil
	}
)

// userType is an event type enum as users declare them.
type userType int

func (t userType) ReflexType() int { return int(t) }

// userConsumer implements every consumer interface of luno/reflex.
type userConsumer struct{ consumed []string }

func (c *userConsumer) Name() string { return "user" }
func (c *userConsumer) Consume(_ context.Context, e *reflex.Event) error {
	c.consumed = append(c.consumed, e.ID)
	return nil
}
func (c *userConsumer) Reset(context.Context) error { return nil }
func (c *userConsumer) Stop() error                 { return nil }

// userStore is a CursorStore as users write them.
type userStore struct{ cursors map[string]string }

func (s *userStore) GetCursor(_ context.Context, consumerName string) (string, error) {
	return s.cursors[consumerName], nil
}
func (s *userStore) SetCursor(_ context.Context, consumerName string, cursor string) error {
	s.cursors[consumerName] = cursor
	return nil
}
func (s *userStore) Flush(context.Context) error { return nil }

// userPBClient is a generated-client stand-in for WrapStreamPB.
type userPBClient struct{ events []*reflexpb.Event }

func (c *userPBClient) Recv() (*reflexpb.Event, error) {
	if len(c.events) == 0 {
		return nil, io.EOF
	}
	e := c.events[0]
	c.events = c.events[1:]
	return e, nil
}

// userService serves a stream the way luno/reflex's example services do:
// its own RPC method, reusing reflexpb messages, delegating to Server.Stream.
type userService struct {
	reflexpb.UnimplementedReflexServer
	srv    *reflex.Server
	stream reflex.StreamFunc
}

func (s *userService) Stream(req *reflexpb.StreamRequest, ss reflexpb.Reflex_StreamServer) error {
	return s.srv.Stream(s.stream, req, ss)
}

var (
	_ reflex.Consumer       = (*userConsumer)(nil)
	_ reflex.ResetterCtx    = (*userConsumer)(nil)
	_ reflex.Stopper        = (*userConsumer)(nil)
	_ reflex.CursorStore    = (*userStore)(nil)
	_ reflex.StreamClientPB = (*userPBClient)(nil)
	_ reflex.EventType      = userType(0)
	_ reflexpb.ReflexServer = (*userService)(nil)
)

// TestReflexAsLunoUsersUseIt runs a consumer the way luno/reflex's README
// and users do, with the deprecated Consumable too.
func TestReflexAsLunoUsersUseIt(t *testing.T) {
	events := []*reflex.Event{
		{ID: "1", Type: userType(1), ForeignID: "9", Timestamp: time.Now(), MetaData: []byte("m")},
		{ID: "2", Type: userType(2), ForeignID: "9", Timestamp: time.Now()},
	}
	store := &userStore{cursors: map[string]string{}}
	c := &userConsumer{}
	spec := reflex.NewSpec(reflex.NewMockStream(events, reflex.ErrHeadReached), store, c)
	if err := reflex.Run(context.Background(), spec); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Run = %v, want ErrHeadReached", err)
	}
	if spec.Name() != "user" || spec.Stop() != nil || store.cursors["user"] != "2" {
		t.Errorf("Name %q, cursor %q", spec.Name(), store.cursors["user"])
	}

	var consumable reflex.Consumable = reflex.NewConsumable(reflex.NewMockStream(events, reflex.ErrHeadReached), store)
	if err := consumable.Consume(context.Background(), c); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Consume = %v, want ErrHeadReached", err)
	}

	filter, err := filters.MetadataEventFilter(func(b []byte) (string, error) { return string(b), nil },
		func(d string) (bool, error) { return d == "m", nil })
	if err != nil {
		t.Fatal(err)
	}
	consumer := reflex.NewConsumer(t.Name(), func(context.Context, *reflex.Event) error { return nil },
		reflex.WithEventFilter(filters.AllEventFilters(filter)), reflex.WithoutConsumerLag())
	if err := consumer.Consume(context.Background(), events[0]); err != nil {
		t.Errorf("Consume = %v", err)
	}

	wrapped := reflex.WrapStreamPB(func(context.Context, *reflexpb.StreamRequest) (reflex.StreamClientPB, error) {
		return &userPBClient{events: []*reflexpb.Event{{Id: "7", Type: 3}}}, nil
	})
	cl, err := wrapped(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := cl.Recv(); err != nil || e.ID != "7" || !reflex.IsType(e.Type, userType(3)) {
		t.Errorf("Recv = %+v, %v", e, err)
	}
	if _, err := cl.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv at the end = %v, want io.EOF", err)
	}
}
