package reflex_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/grpctest"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// TestGRPCCompatibility runs the stream conformance suite over every
// pairing of old (one event per message) and new (batched) clients and
// servers.
func TestGRPCCompatibility(t *testing.T) {
	cases := []struct {
		name   string
		opts   []grpctest.ServerOption
		single bool
	}{
		{"BatchClientBatchServer", nil, false},
		{"SingleClientBatchServer", nil, true},
		{"BatchClientOldServer", []grpctest.ServerOption{grpctest.WithoutBatch()}, false},
		{"SingleClientOldServer", []grpctest.ServerOption{grpctest.WithoutBatch()}, true},
	}
	// Server.ReflexServer without a wrapper: packed batches for clients
	// that ask for them, Events for batch clients that do not.
	for _, tc := range []struct {
		name   string
		client func(grpc.ClientConnInterface) reflex.StreamFunc
	}{
		{"PackedClientReflexServer", func(c grpc.ClientConnInterface) reflex.StreamFunc { return reflex.GRPCStreamFunc(c) }},
		{"UnpackedBatchClientReflexServer", unpackedClient},
		{"SingleClientReflexServer", singleClient},
		{"ResilientClientReflexServer", func(c grpc.ClientConnInterface) reflex.StreamFunc {
			return reflex.GRPCStreamFunc(c, reflex.WithGRPCReconnect(reflex.ReconnectPolicy{Peer: "conformance"}))
		}},
		{"NamedClientReflexServer", func(c grpc.ClientConnInterface) reflex.StreamFunc {
			return reflex.GRPCStreamFunc(c, reflex.WithGRPCConsumerName("conformance"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reflextest.TestStreamFunc(t, reflextest.StreamHarness{
				New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
					l := reflextest.NewLog()
					conn := serveReflex(t, l.Stream)
					return tc.client(conn), func(t *testing.T, events ...reflex.Event) { l.Append(events...) }
				},
				InvalidCursors: reflextest.InvalidIntCursors(),
			})
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reflextest.TestStreamFunc(t, reflextest.StreamHarness{
				New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
					l := reflextest.NewLog()
					_, addr := grpctest.NewServerWithOptions(t, l.Stream, tc.opts...)
					cl := grpctest.NewClient(t, addr)
					stream := cl.StreamEvents
					if tc.single {
						stream = cl.StreamEventsSingle
					}
					return stream, func(t *testing.T, events ...reflex.Event) { l.Append(events...) }
				},
				InvalidCursors: reflextest.InvalidIntCursors(),
			})
		})
	}
}

// unpackedClient is a batch client that does not ask for packed batches,
// as batch clients built before them.
func unpackedClient(conn grpc.ClientConnInterface) reflex.StreamFunc {
	c := reflexpb.NewReflexClient(conn)
	return reflex.WrapStreamBatchPB(func(ctx context.Context, req *reflexpb.StreamRequest) (reflex.StreamBatchClientPB, error) {
		req.Packed = false
		return c.StreamBatch(ctx, req)
	}, nil)
}

// singleClient is a client of the Stream RPC (one event per message).
func singleClient(conn grpc.ClientConnInterface) reflex.StreamFunc {
	c := reflexpb.NewReflexClient(conn)
	return reflex.WrapStreamPB(func(ctx context.Context, req *reflexpb.StreamRequest) (reflex.StreamClientPB, error) {
		return c.Stream(ctx, req)
	})
}

// batchRecorder is a StreamBatchServerPB that records what is sent,
// decoding packed batches with the generated code.
type batchRecorder struct {
	ctx     context.Context
	batches []int
	packed  int // batches sent packed
	ids     []string
}

func (r *batchRecorder) Context() context.Context { return r.ctx }
func (r *batchRecorder) Send(b *reflexpb.EventBatch) error {
	events := b.GetEvents()
	if len(b.GetPacked()) > 0 {
		if len(events) > 0 {
			return errors.New("batchRecorder: a batch with both Events and Packed")
		}
		var inner reflexpb.EventBatch
		if err := proto.Unmarshal(b.GetPacked(), &inner); err != nil {
			return err
		}
		events = inner.GetEvents()
		r.packed++
	}
	r.batches = append(r.batches, len(events))
	for _, e := range events {
		r.ids = append(r.ids, e.GetId())
	}
	return nil
}

func appendN(l *reflextest.Log, n int) {
	events := make([]reflex.Event, n)
	for i := range events {
		events[i] = reflex.Event{ForeignID: strconv.Itoa(i), Type: grpcType(1)}
	}
	l.Append(events...)
}

func TestStreamBatchFillsBatchesFromBufferedSource(t *testing.T) {
	l := reflextest.NewLog()
	appendN(l, 5000)
	rec := &batchRecorder{ctx: t.Context()}
	// A stream that is not the generated handler's gets packed batches
	// too when the client asks for them: the request decides.
	req := &reflexpb.StreamRequest{Options: &reflexpb.StreamOptions{ToHead: true}, Packed: true}
	err := reflex.NewServer().StreamBatch(l.Stream, req, rec)
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("StreamBatch = %v, want ErrHeadReached", err)
	}
	if rec.packed != len(rec.batches) {
		t.Errorf("%d of %d batches sent packed, want all: the request asks for packed batches", rec.packed, len(rec.batches))
	}
	want := []int{1024, 1024, 1024, 1024, 904}
	if len(rec.batches) != len(want) {
		t.Fatalf("batch sizes = %v, want %v", rec.batches, want)
	}
	for i := range want {
		if rec.batches[i] != want[i] {
			t.Fatalf("batch sizes = %v, want %v", rec.batches, want)
		}
	}
	for i, id := range rec.ids {
		if id != strconv.Itoa(i+1) {
			t.Fatalf("event %d has ID %q", i, id)
		}
	}
}

// unbuffered hides the Buffered method of a stream's clients.
func unbuffered(s reflex.StreamFunc) reflex.StreamFunc {
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		cl, err := s(ctx, after, opts...)
		if err != nil {
			return nil, err
		}
		return struct{ reflex.StreamClient }{cl}, nil
	}
}

func TestStreamBatchReadsAheadUnbufferedSource(t *testing.T) {
	l := reflextest.NewLog()
	appendN(l, 3000)
	rec := &batchRecorder{ctx: t.Context()}
	err := reflex.NewServer().StreamBatch(unbuffered(l.Stream), &reflexpb.StreamRequest{Options: &reflexpb.StreamOptions{ToHead: true}}, rec)
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("StreamBatch = %v, want ErrHeadReached", err)
	}
	if len(rec.ids) != 3000 {
		t.Fatalf("sent %d events, want 3000", len(rec.ids))
	}
	for i, id := range rec.ids {
		if id != strconv.Itoa(i+1) {
			t.Fatalf("event %d has ID %q", i, id)
		}
	}
}

func TestGRPCBatchUnbufferedSourceEndToEnd(t *testing.T) {
	l := reflextest.NewLog()
	appendN(l, 10000)
	_, addr := grpctest.NewServer(t, unbuffered(l.Stream), nil)
	cl := grpctest.NewClient(t, addr)
	c := &countConsumer{}
	err := reflex.Run(t.Context(), reflex.NewSpec(cl.StreamEvents, reflextest.NewCursorStore(), c, reflex.WithStreamToHead()))
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Run = %v, want ErrHeadReached", err)
	}
	if c.n.Load() != 10000 {
		t.Fatalf("consumed %d, want 10000", c.n.Load())
	}
}

func TestGRPCBatchStop(t *testing.T) {
	l := reflextest.NewLog()
	appendN(l, 1)
	srv, addr := grpctest.NewServer(t, l.Stream, nil)
	sc, err := grpctest.NewClient(t, addr).StreamEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Recv(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := sc.Recv()
		errc <- err
	}()
	srv.Stop()
	if err := <-errc; !reflex.IsStoppedErr(err) {
		t.Fatalf("Recv after Stop = %v, want ErrStopped", err)
	}
}

// directStream is a grpc.ServerStream that records the messages sent on
// it, to stand behind a grpc.GenericServerStream as the generated handler
// passes it to Server.StreamBatch.
type directStream struct {
	grpc.ServerStream // nil: only the methods below are used
	ctx               context.Context
	sent              []*reflexpb.EventBatch
	headers           int
}

func (d *directStream) Context() context.Context     { return d.ctx }
func (d *directStream) SendHeader(metadata.MD) error { d.headers++; return nil }
func (d *directStream) SendMsg(m any) error {
	d.sent = append(d.sent, m.(*reflexpb.EventBatch))
	return nil
}

// streamDirect runs Server.StreamBatch on a stream of the generated
// handler's type.
func streamDirect(t *testing.T, sFn reflex.StreamFunc, req *reflexpb.StreamRequest) (*directStream, error) {
	t.Helper()
	d := &directStream{ctx: t.Context()}
	err := reflex.NewServer().StreamBatch(sFn, req, &grpc.GenericServerStream[reflexpb.StreamRequest, reflexpb.EventBatch]{ServerStream: d})
	return d, err
}

// unpack decodes a packed batch with the generated code.
func unpack(t *testing.T, b *reflexpb.EventBatch) []*reflexpb.Event {
	t.Helper()
	var inner reflexpb.EventBatch
	if err := proto.Unmarshal(b.GetPacked(), &inner); err != nil {
		t.Fatalf("packed batch: %v", err)
	}
	if len(inner.GetPacked()) > 0 {
		t.Fatalf("packed batch holds a packed field")
	}
	return inner.GetEvents()
}

func TestStreamBatchPacksForDirectStreams(t *testing.T) {
	l := reflextest.NewLog()
	appendN(l, 3000)
	d, err := streamDirect(t, l.Stream, &reflexpb.StreamRequest{Options: &reflexpb.StreamOptions{ToHead: true}, Packed: true})
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("StreamBatch = %v, want ErrHeadReached", err)
	}
	if d.headers != 1 {
		t.Errorf("sent headers %d times, want once", d.headers)
	}
	var sizes []int
	id := 0
	for _, b := range d.sent {
		if len(b.GetEvents()) > 0 {
			t.Fatalf("packed request got a batch with %d Events", len(b.GetEvents()))
		}
		events := unpack(t, b)
		sizes = append(sizes, len(events))
		for _, e := range events {
			id++
			if e.GetId() != strconv.Itoa(id) || e.GetForeignId() != strconv.Itoa(id-1) || e.GetType() != 1 || e.GetTimestamp() == nil {
				t.Fatalf("event %d = %v", id, e)
			}
		}
	}
	if want := []int{1024, 1024, 952}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes = %v, want %v", sizes, want)
	}
}

func TestStreamBatchUnpackedRequestGetsEvents(t *testing.T) {
	l := reflextest.NewLog()
	appendN(l, 10)
	d, err := streamDirect(t, l.Stream, &reflexpb.StreamRequest{Options: &reflexpb.StreamOptions{ToHead: true}})
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("StreamBatch = %v, want ErrHeadReached", err)
	}
	if len(d.sent) != 1 || len(d.sent[0].GetEvents()) != 10 || len(d.sent[0].GetPacked()) != 0 {
		t.Fatalf("sent %v, want one batch of 10 Events", d.sent)
	}
}

// bufferedSlice is a Buffered StreamClient over a slice, then endErr.
type bufferedSlice struct {
	events []reflex.Event
	endErr error
}

func (c *bufferedSlice) Recv() (*reflex.Event, error) {
	if len(c.events) == 0 {
		return nil, c.endErr
	}
	e := &c.events[0]
	c.events = c.events[1:]
	return e, nil
}

func (c *bufferedSlice) Buffered() int { return len(c.events) }

func TestStreamBatchSendsEventsBeforeABadOne(t *testing.T) {
	bad := []struct {
		name string
		e    reflex.Event
	}{
		{"nil type", reflex.Event{ID: "3"}},
		{"type beyond int32", reflex.Event{ID: "3", Type: grpcType(1 << 40)}},
	}
	for _, tc := range bad {
		for _, packed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/packed=%v", tc.name, packed), func(t *testing.T) {
				sFn := func(context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) {
					return &bufferedSlice{events: []reflex.Event{
						{ID: "1", Type: grpcType(1)}, {ID: "2", Type: grpcType(1)}, tc.e, {ID: "4", Type: grpcType(1)},
					}, endErr: reflex.ErrHeadReached}, nil
				}
				req := &reflexpb.StreamRequest{Packed: packed}
				d, err := streamDirect(t, sFn, req)
				if got := status.Code(err); got != codes.Internal {
					t.Fatalf("StreamBatch = %v (code %v), want Internal", err, got)
				}
				if len(d.sent) != 1 {
					t.Fatalf("sent %d batches, want 1", len(d.sent))
				}
				events := d.sent[0].GetEvents()
				if packed {
					events = unpack(t, d.sent[0])
				}
				if len(events) != 2 || events[0].GetId() != "1" || events[1].GetId() != "2" {
					t.Errorf("sent %v, want events 1 and 2", events)
				}
			})
		}
	}
}

// fakeBatchStream is a StreamBatchClientPB returning batches, then endErr.
type fakeBatchStream struct {
	batches []*reflexpb.EventBatch
	endErr  error
}

func (f *fakeBatchStream) Recv() (*reflexpb.EventBatch, error) {
	if len(f.batches) == 0 {
		return nil, f.endErr
	}
	b := f.batches[0]
	f.batches = f.batches[1:]
	return b, nil
}

func packedOf(t *testing.T, events ...*reflexpb.Event) []byte {
	t.Helper()
	b, err := proto.Marshal(&reflexpb.EventBatch{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWrapStreamBatchPBDecodesEventsThenPacked(t *testing.T) {
	ts := timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC))
	var got *reflexpb.StreamRequest
	fake := &fakeBatchStream{endErr: io.EOF, batches: []*reflexpb.EventBatch{
		{Events: []*reflexpb.Event{{Id: "1", Type: 1}}, Packed: packedOf(t, &reflexpb.Event{Id: "2", Type: 2, Timestamp: ts, ForeignId: "f", Metadata: []byte("m"), Trace: []byte("t")})},
		{Packed: packedOf(t, &reflexpb.Event{Id: "3", Type: 3}, &reflexpb.Event{Id: "4", Type: 4})},
		{}, // an empty batch is skipped
		{Events: []*reflexpb.Event{{Id: "5", Type: 5}}},
	}}
	stream := reflex.WrapStreamBatchPB(func(_ context.Context, req *reflexpb.StreamRequest) (reflex.StreamBatchClientPB, error) {
		got = req
		return fake, nil
	}, nil)
	sc, err := stream(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !got.GetPacked() {
		t.Errorf("request does not ask for packed batches")
	}
	for i := 1; i <= 5; i++ {
		e, err := sc.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if e.ID != strconv.Itoa(i) || e.Type.ReflexType() != i {
			t.Fatalf("Recv %d = %+v", i, e)
		}
		if i == 2 && (e.ForeignID != "f" || string(e.MetaData) != "m" || string(e.Trace) != "t" || !e.Timestamp.Equal(ts.AsTime())) {
			t.Errorf("packed event = %+v", e)
		}
	}
	if _, err := sc.Recv(); err != io.EOF {
		t.Errorf("Recv at the end = %v, want io.EOF", err)
	}
}

func TestWrapStreamBatchPBMalformedPacked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		packed []byte
	}{
		{"truncated", packedOf(t, &reflexpb.Event{Id: "1", Type: 1})[:3]},
		{"invalid UTF-8", []byte{0x0a, 0x03, 0x32, 0x01, 0xff}},
		{"invalid timestamp", packedOf(t, &reflexpb.Event{Id: "1", Timestamp: &timestamppb.Timestamp{Nanos: -1}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := reflex.WrapStreamBatchPB(func(context.Context, *reflexpb.StreamRequest) (reflex.StreamBatchClientPB, error) {
				return &fakeBatchStream{batches: []*reflexpb.EventBatch{{Packed: tc.packed}}, endErr: io.EOF}, nil
			}, nil)
			sc, err := stream(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = sc.Recv()
			if err == nil || err == io.EOF || !strings.HasPrefix(err.Error(), "reflex: ") {
				t.Fatalf("Recv = %v, want a reflex error about the batch", err)
			}
		})
	}
}

// TestGRPCPackedOnTheWire checks, with an interceptor that sees every
// message gRPC sends, that ReflexServer sends packed batches to
// GRPCStreamFunc and that events arrive intact.
func TestGRPCPackedOnTheWire(t *testing.T) {
	var packed, unpacked atomic.Int64
	observe := grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, &observedStream{ServerStream: ss, packed: &packed, unpacked: &unpacked})
	})
	l := reflextest.NewLog()
	ts := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	want := make([]reflex.Event, 3000)
	for i := range want {
		want[i] = reflex.Event{ForeignID: "é" + strconv.Itoa(i), Type: grpcType(i % 7), Timestamp: ts.Add(time.Duration(i) * time.Second), MetaData: []byte(strconv.Itoa(i))}
	}
	l.Append(want...)
	sc, err := reflex.GRPCStreamFunc(serveReflex(t, l.Stream, observe))(t.Context(), "", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		e, err := sc.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if e.ID != strconv.Itoa(i+1) || e.ForeignID != want[i].ForeignID || e.Type.ReflexType() != i%7 ||
			!e.Timestamp.Equal(want[i].Timestamp) || string(e.MetaData) != string(want[i].MetaData) || e.Trace != nil {
			t.Fatalf("Recv %d = %+v, want %+v", i, e, want[i])
		}
	}
	if _, err := sc.Recv(); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Recv at the head = %v, want ErrHeadReached", err)
	}
	if packed.Load() == 0 || unpacked.Load() != 0 {
		t.Errorf("server sent %d packed and %d unpacked batches, want only packed", packed.Load(), unpacked.Load())
	}
}

type observedStream struct {
	grpc.ServerStream
	packed, unpacked *atomic.Int64
}

func (o *observedStream) SendMsg(m any) error {
	if b, ok := m.(*reflexpb.EventBatch); ok {
		if len(b.GetPacked()) > 0 && len(b.GetEvents()) == 0 {
			o.packed.Add(1)
		} else {
			o.unpacked.Add(1)
		}
	}
	return o.ServerStream.SendMsg(m)
}

// authKey is the context key of authStream.
type authKey struct{}

// authStream is a server stream as an authentication interceptor wraps
// it: with a context of its own.
type authStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a authStream) Context() context.Context { return a.ctx }

// observedClientStream counts the packed batches a client receives.
type observedClientStream struct {
	grpc.ClientStream
	packed, unpacked *atomic.Int64
}

func (o *observedClientStream) RecvMsg(m any) error {
	err := o.ClientStream.RecvMsg(m)
	if b, ok := m.(*reflexpb.EventBatch); ok && err == nil {
		if len(b.GetPacked()) > 0 && len(b.GetEvents()) == 0 {
			o.packed.Add(1)
		} else {
			o.unpacked.Add(1)
		}
	}
	return err
}

// TestGRPCPackedThroughInterceptorChain checks that the packed encoding
// does not depend on how the streams are wrapped: through a chain of
// server interceptors (as authentication, OpenTelemetry or Prometheus
// install them), grpctest's wrapper of the typed server stream (which
// counts the events sent) and a chain of client interceptors, every batch
// travels packed, and the events arrive intact and are counted.
func TestGRPCPackedThroughInterceptorChain(t *testing.T) {
	var packed, unpacked, recvPacked, recvUnpacked atomic.Int64
	auth := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, authStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), authKey{}, "user")})
	}
	observe := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if ss.Context().Value(authKey{}) != "user" {
			return status.Error(codes.Unauthenticated, "no user")
		}
		return h(srv, &observedStream{ServerStream: ss, packed: &packed, unpacked: &unpacked})
	}
	clientPass := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(ctx, desc, cc, method, opts...)
	}
	clientObserve := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &observedClientStream{ClientStream: cs, packed: &recvPacked, unpacked: &recvUnpacked}, nil
	}

	const n = 3000
	l := reflextest.NewLog()
	ts := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	want := make([]reflex.Event, n)
	for i := range want {
		want[i] = reflex.Event{ForeignID: "é" + strconv.Itoa(i), Type: grpcType(i % 7), Timestamp: ts.Add(time.Duration(i) * time.Second), MetaData: []byte(strconv.Itoa(i))}
	}
	l.Append(want...)
	srv, addr := grpctest.NewServerWithOptions(t, l.Stream, grpctest.WithGRPCServerOptions(grpc.ChainStreamInterceptor(auth, observe)))
	cl := grpctest.NewClientWithOptions(t, addr, grpc.WithChainStreamInterceptor(clientPass, clientObserve))

	sc, err := cl.StreamEvents(t.Context(), "", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		e, err := sc.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if e.ID != strconv.Itoa(i+1) || e.ForeignID != want[i].ForeignID || e.Type.ReflexType() != i%7 ||
			!e.Timestamp.Equal(want[i].Timestamp) || string(e.MetaData) != string(want[i].MetaData) || e.Trace != nil {
			t.Fatalf("Recv %d = %+v, want %+v", i, e, want[i])
		}
	}
	if _, err := sc.Recv(); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("Recv at the head = %v, want ErrHeadReached", err)
	}
	if packed.Load() == 0 || unpacked.Load() != 0 {
		t.Errorf("server sent %d packed and %d unpacked batches, want only packed", packed.Load(), unpacked.Load())
	}
	if recvPacked.Load() != packed.Load() || recvUnpacked.Load() != 0 {
		t.Errorf("client received %d packed and %d unpacked batches, want the %d packed ones sent", recvPacked.Load(), recvUnpacked.Load(), packed.Load())
	}
	if got := srv.SentCount(); got != n {
		t.Errorf("SentCount = %v, want %d", got, n)
	}
}

// serveReflex serves sFn with Server.ReflexServer on a loopback port, as
// a service would (no wrapper around the gRPC streams), and returns a
// connection to it. Both end with the test.
func serveReflex(tb testing.TB, sFn reflex.StreamFunc, opts ...grpc.ServerOption) *grpc.ClientConn {
	tb.Helper()
	return dial(tb, serveWith(tb, reflex.NewServer(), sFn, opts...))
}

// serveWith serves sFn with rs.ReflexServer on a loopback port and
// returns its address. The gRPC server and rs stop when the test ends.
func serveWith(tb testing.TB, rs *reflex.Server, sFn reflex.StreamFunc, opts ...grpc.ServerOption) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(sFn))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	tb.Cleanup(func() {
		rs.Stop()
		gs.Stop()
		<-served
	})
	return lis.Addr().String()
}

// dial connects to addr without TLS; the connection is closed when the
// test ends.
func dial(tb testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// BenchmarkGRPCStream reads 100000 in-memory events over loopback gRPC:
// batches from Server.ReflexServer ("Batch", encoded by hand), batches
// through a wrapped server stream ("BatchWrapped", reflexpb messages), and
// one event per message ("Single").
func BenchmarkGRPCStream(b *testing.B) {
	const n = 100000
	l := reflextest.NewLog()
	appendN(l, n)
	conn := serveReflex(b, l.Stream)
	_, addr := grpctest.NewServer(b, l.Stream, nil)
	cl := grpctest.NewClient(b, addr)
	for _, bc := range []struct {
		name   string
		stream reflex.StreamFunc
	}{
		{"Batch", reflex.GRPCStreamFunc(conn)},
		{"BatchWrapped", cl.StreamEvents},
		{"Single", cl.StreamEventsSingle},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				sc, err := bc.stream(b.Context(), "", reflex.WithStreamToHead())
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, err := sc.Recv()
					if reflex.IsHeadReachedErr(err) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(processCPU()-cpu)/float64(n*b.N), "cpu-ns/event")
		})
	}
}
