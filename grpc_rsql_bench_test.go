package reflex_test

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// benchRSQLEvents is the number of events BenchmarkGRPCRSQLCatchUp
// preloads.
var benchRSQLEvents = flag.Int("reflex.rsqlevents", 200_000, "events preloaded by BenchmarkGRPCRSQLCatchUp")

// BenchmarkGRPCRSQLCatchUp measures W3 of cmd/reflexbench in-process: an
// rsql events table on MariaDB served with Server.ReflexServer on a
// loopback port, consumed from the start to the head by Run through
// GRPCStreamFunc ("GRPC"), next to the same Run reading the table
// directly ("Direct").
func BenchmarkGRPCRSQLCatchUp(b *testing.B) {
	db := dbtest.Open(b)
	const table = "events"
	if _, err := db.ExecContext(b.Context(), rsql.EventsSchema(rsql.MySQL, table)); err != nil {
		b.Fatal(err)
	}
	events := rsql.NewEventsTable(table)
	n := *benchRSQLEvents
	const per = 5000
	batch := make([]rsql.EventToInsert, 0, per)
	for i := range n {
		batch = append(batch, rsql.EventToInsert{ForeignID: strconv.Itoa(i + 1), Type: grpcType(1 + i%5)})
		if len(batch) == per || i == n-1 {
			if _, err := events.InsertMany(b.Context(), db, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}

	conn := serveReflex(b, events.ToStream(db))

	for _, bc := range []struct {
		name   string
		stream reflex.StreamFunc
	}{
		{"GRPC", reflex.GRPCStreamFunc(conn)},
		{"Direct", events.ToStream(db)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				var got atomic.Int64
				c := reflex.NewConsumer("bench", func(context.Context, *reflex.Event) error {
					got.Add(1)
					return nil
				})
				spec := reflex.NewSpec(bc.stream, &lastCursor{}, c, reflex.WithStreamToHead())
				if err := reflex.Run(b.Context(), spec); !reflex.IsHeadReachedErr(err) {
					b.Fatalf("Run = %v, want ErrHeadReached", err)
				}
				if got.Load() != int64(n) {
					b.Fatalf("consumed %d events, want %d", got.Load(), n)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(processCPU()-cpu)/float64(n)/float64(b.N), "cpu-ns/event")
		})
	}
}

// lastCursor is a cursor store that keeps only the last cursor, as
// cmd/reflexbench does (reflextest.CursorStore records every call).
type lastCursor struct {
	mu     sync.Mutex
	cursor string
}

func (s *lastCursor) GetCursor(context.Context, string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor, nil
}

func (s *lastCursor) SetCursor(_ context.Context, _, cursor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursor = cursor
	return nil
}

func (s *lastCursor) Flush(context.Context) error { return nil }

// BenchmarkGRPCRSQLAccounting measures what the per-peer accounting
// (Peer counters, position and head, per-consumer metrics) costs W3:
// BenchmarkGRPCRSQLCatchUp's GRPC case with a named client and a source
// that reports its head, with the accounting on and off, alternated
// round by round in one run (round1/on, round1/off, round2/on, ...).
// Compare the events/s of the on and off cases.
func BenchmarkGRPCRSQLAccounting(b *testing.B) {
	db := dbtest.Open(b)
	const table = "events"
	if _, err := db.ExecContext(b.Context(), rsql.EventsSchema(rsql.MySQL, table)); err != nil {
		b.Fatal(err)
	}
	events := rsql.NewEventsTable(table)
	n := *benchRSQLEvents
	const per = 5000
	batch := make([]rsql.EventToInsert, 0, per)
	for i := range n {
		batch = append(batch, rsql.EventToInsert{ForeignID: strconv.Itoa(i + 1), Type: grpcType(1 + i%5)})
		if len(batch) == per || i == n-1 {
			if _, err := events.InsertMany(b.Context(), db, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	head := strconv.Itoa(n)
	conn := serveReflex(b, withHead(events.ToStream(db), head))
	stream := reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName("bench"))
	defer reflex.SetPeerAccounting(true)
	for round := 1; round <= 8; round++ {
		for _, on := range []bool{true, false} {
			name := fmt.Sprintf("round%d/off", round)
			if on {
				name = fmt.Sprintf("round%d/on", round)
			}
			b.Run(name, func(b *testing.B) {
				reflex.SetPeerAccounting(on)
				cpu := processCPU()
				for b.Loop() {
					var got atomic.Int64
					c := reflex.NewConsumer("bench", func(context.Context, *reflex.Event) error {
						got.Add(1)
						return nil
					})
					spec := reflex.NewSpec(stream, &lastCursor{}, c, reflex.WithStreamToHead())
					if err := reflex.Run(b.Context(), spec); !reflex.IsHeadReachedErr(err) {
						b.Fatalf("Run = %v, want ErrHeadReached", err)
					}
					if got.Load() != int64(n) {
						b.Fatalf("consumed %d events, want %d", got.Load(), n)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(processCPU()-cpu)/float64(n)/float64(b.N), "cpu-ns/event")
			})
		}
	}
}

// withHead makes the clients of stream report head as their head (see
// reflex.HeadReporter), keeping their Buffered method.
func withHead(stream reflex.StreamFunc, head string) reflex.StreamFunc {
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		cl, err := stream(ctx, after, opts...)
		if err != nil {
			return nil, err
		}
		if b, ok := cl.(reflex.Buffered); ok {
			return headedBuffered{headed{cl, head}, b}, nil
		}
		return headed{cl, head}, nil
	}
}

type headed struct {
	reflex.StreamClient
	head string
}

func (h headed) Head() (string, bool) { return h.head, true }

func (h headed) Close() error {
	if c, ok := h.StreamClient.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

type headedBuffered struct {
	headed
	b reflex.Buffered
}

func (h headedBuffered) Buffered() int { return h.b.Buffered() }
