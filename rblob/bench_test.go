package rblob_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

var long = flag.Bool("long", false, "benchmark catch-up over 1,000,000 events instead of 100,000")

// benchBucket writes n archived events, 10,000 per object, into a fileblob
// bucket.
func benchBucket(b *testing.B, n int) *blob.Bucket {
	b.Helper()
	raw, err := fileblob.OpenBucket(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = raw.Close() })
	const per = rblob.DefaultArchiveMaxEvents
	var sb strings.Builder
	for first := 1; first <= n; first += per {
		sb.Reset()
		for i := first; i < first+per && i <= n; i++ {
			e := testEvent(i)
			e.ID = fmt.Sprint(i)
			sb.WriteString(rblob.EncodeRecord(&e))
		}
		if err := raw.WriteAll(b.Context(), key(first), []byte(sb.String()), nil); err != nil {
			b.Fatal(err)
		}
	}
	return raw
}

// BenchmarkCatchUp reports the events/s of a stream catching up over a
// fileblob bucket (100,000 events; 1,000,000 with -long), next to a raw
// read of the same objects (open each and count lines), a stream that also
// decodes each archived event, and StreamArchived.
func BenchmarkCatchUp(b *testing.B) {
	n := 100_000
	if *long {
		n = 1_000_000
	}
	raw := benchBucket(b, n)
	report := func(b *testing.B) {
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}

	b.Run(fmt.Sprintf("events=%d/stream", n), func(b *testing.B) {
		bucket := rblob.NewBucket("bench", raw)
		for b.Loop() {
			if got := countStream(b, bucket, false); got != n {
				b.Fatalf("streamed %d events, want %d", got, n)
			}
		}
		report(b)
	})
	b.Run(fmt.Sprintf("events=%d/stream+decode", n), func(b *testing.B) {
		bucket := rblob.NewBucket("bench", raw)
		for b.Loop() {
			if got := countStream(b, bucket, true); got != n {
				b.Fatalf("streamed %d events, want %d", got, n)
			}
		}
		report(b)
	})
	b.Run(fmt.Sprintf("events=%d/StreamArchived", n), func(b *testing.B) {
		bucket := rblob.NewBucket("bench", raw)
		for b.Loop() {
			if got := countArchived(b, bucket); got != n {
				b.Fatalf("streamed %d events, want %d", got, n)
			}
		}
		report(b)
	})
	b.Run(fmt.Sprintf("events=%d/raw", n), func(b *testing.B) {
		buf := make([]byte, 64<<10)
		for b.Loop() {
			if got := countLines(b, raw, buf); got != n {
				b.Fatalf("counted %d lines, want %d", got, n)
			}
		}
		report(b)
	})
}

func countStream(b *testing.B, bucket *rblob.Bucket, decode bool) int {
	cl, err := bucket.Stream(b.Context(), "", reflex.WithStreamToHead())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	n := 0
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			return n
		} else if err != nil {
			b.Fatal(err)
		}
		if decode {
			orig, err := rblob.DecodeArchived(e)
			if err != nil {
				b.Fatal(err)
			}
			sinkTime = orig.Timestamp
		}
		n++
	}
}

var sinkTime time.Time

func countArchived(b *testing.B, bucket *rblob.Bucket) int {
	cl, err := bucket.StreamArchived(b.Context(), "", reflex.WithStreamToHead())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	n := 0
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			return n
		} else if err != nil {
			b.Fatal(err)
		}
		sinkTime = e.Timestamp
		n++
	}
}

func countLines(b *testing.B, raw *blob.Bucket, buf []byte) int {
	n := 0
	it := raw.List(nil)
	for {
		obj, err := it.Next(b.Context())
		if errors.Is(err, io.EOF) {
			return n
		} else if err != nil {
			b.Fatal(err)
		}
		r, err := raw.NewReader(b.Context(), obj.Key, nil)
		if err != nil {
			b.Fatal(err)
		}
		for {
			m, err := r.Read(buf)
			n += bytes.Count(buf[:m], []byte{'\n'})
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		_ = r.Close()
	}
}

// benchConsumer reads every field of the events it is given, as a
// consumer of full events does.
type benchConsumer struct {
	decode bool // the events are raw records: decode them with DecodeArchived
	n      int
	bytes  int
}

func (c *benchConsumer) Name() string { return "bench" }

func (c *benchConsumer) Consume(_ context.Context, e *reflex.Event) error {
	if c.decode {
		orig, err := rblob.DecodeArchived(e)
		if err != nil {
			return err
		}
		e = orig
	}
	c.n++
	c.bytes += len(e.ID) + len(e.ForeignID) + len(e.MetaData) + len(e.Trace) + e.Type.ReflexType()
	sinkTime = e.Timestamp
	return nil
}

// BenchmarkRunCatchUp reports the events/s, CPU time (all threads, GC
// included) and allocations per event of
// reflex.Run catching up over an archive bucket (fileblob; 100,000 events,
// 1,000,000 with -long) with every event decoded to the full archived
// event: Bucket.Stream with DecodeArchived in the consumer, and
// Bucket.StreamArchived.
func BenchmarkRunCatchUp(b *testing.B) {
	n := 100_000
	if *long {
		n = 1_000_000
	}
	raw := benchBucket(b, n)
	run := func(b *testing.B, stream reflex.StreamFunc, decode bool) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cpu := processCPU()
		for b.Loop() {
			c := &benchConsumer{decode: decode}
			err := reflex.Run(b.Context(), reflex.NewSpec(stream, rpatterns.MemCursorStore(), c, reflex.WithStreamToHead()))
			if !reflex.IsHeadReachedErr(err) {
				b.Fatal(err)
			}
			if c.n != n {
				b.Fatalf("consumed %d events, want %d", c.n, n)
			}
		}
		cpu = processCPU() - cpu
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n)/float64(b.N), "cpu-ns/event")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n)/float64(b.N), "allocs/event")
	}
	b.Run(fmt.Sprintf("events=%d/Stream+DecodeArchived", n), func(b *testing.B) {
		run(b, rblob.NewBucket("bench", raw).Stream, true)
	})
	b.Run(fmt.Sprintf("events=%d/StreamArchived", n), func(b *testing.B) {
		run(b, rblob.NewBucket("bench", raw).StreamArchived, false)
	})
}

// BenchmarkDecodeArchived reports the cost of decoding one archived record
// (the benchmark's events: varied types, foreign IDs, metadata and traces)
// with DecodeArchived, and with encoding/json alone.
func BenchmarkDecodeArchived(b *testing.B) {
	const n = 1024
	recs := make([]*reflex.Event, n)
	for i := range recs {
		e := testEvent(i + 1)
		e.ID = fmt.Sprint(i + 1)
		recs[i] = &reflex.Event{ID: "c", MetaData: []byte(strings.TrimSpace(rblob.EncodeRecord(&e)))}
	}
	b.Run("DecodeArchived", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e, err := rblob.DecodeArchived(recs[i%n])
			if err != nil {
				b.Fatal(err)
			}
			sinkTime = e.Timestamp
			i++
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e, err := rblob.DecodeRecordJSON(recs[i%n].MetaData)
			if err != nil {
				b.Fatal(err)
			}
			sinkTime = e.Timestamp
			i++
		}
	})
}
