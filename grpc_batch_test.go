package reflex_test

import (
	"context"
	"strconv"
	"testing"

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
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reflextest.TestStreamFunc(t, reflextest.StreamHarness{
				New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
					l := reflextest.NewLog()
					_, addr := grpctest.NewServer(t, l.Stream, nil, tc.opts...)
					cl := grpctest.NewClient(t, addr)
					stream := cl.StreamEvents
					if tc.single {
						stream = cl.StreamEventsSingle
					}
					return stream, func(t *testing.T, events ...reflex.Event) { l.Append(events...) }
				},
				InvalidCursors: []string{"abc"},
			})
		})
	}
}

// batchRecorder is a StreamBatchServerPB that records what is sent.
type batchRecorder struct {
	ctx     context.Context
	batches []int
	ids     []string
}

func (r *batchRecorder) Context() context.Context { return r.ctx }
func (r *batchRecorder) Send(b *reflexpb.EventBatch) error {
	r.batches = append(r.batches, len(b.GetEvents()))
	for _, e := range b.GetEvents() {
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
	err := reflex.NewServer().StreamBatch(l.Stream, &reflexpb.StreamRequest{Options: &reflexpb.StreamOptions{ToHead: true}}, rec)
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("StreamBatch = %v, want ErrHeadReached", err)
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

func BenchmarkGRPCStream(b *testing.B) {
	const n = 100000
	l := reflextest.NewLog()
	appendN(l, n)
	_, addr := grpctest.NewServer(b, l.Stream, nil)
	cl := grpctest.NewClient(b, addr)
	for _, bc := range []struct {
		name   string
		stream reflex.StreamFunc
	}{{"Batch", cl.StreamEvents}, {"Single", cl.StreamEventsSingle}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
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
		})
	}
}
