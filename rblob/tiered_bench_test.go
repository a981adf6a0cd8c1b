package rblob_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"gocloud.dev/blob/fileblob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// BenchmarkTieredCatchUp reports reflex.Run catching up over the history
// of a MariaDB events table (100,000 events; 1,000,000 with -long): first
// from the table alone, untrimmed, then, once the table is archived into a
// fileblob bucket (10,000 events per object) and trimmed to its last 1%,
// through the tiered stream (99% from the bucket, 1% from the table), in
// the same run. Events are full (type, foreign ID, timestamp, metadata)
// and the consumer reads every field. It reports events/s, CPU time per
// event (all threads: the database server is another process) and
// allocations per event.
func BenchmarkTieredCatchUp(b *testing.B) {
	n := int64(100_000)
	if *long {
		n = 1_000_000
	}
	keep := n / 100
	ctx := context.Background()
	db := dbtest.Open(b)
	rsqltest.CreateEventsTable(b, db, "events")
	table := rsql.NewEventsTable("events", rsql.WithEventMetadataField("metadata"))
	b.Cleanup(func() { _ = table.Close() })
	batch := make([]rsql.EventToInsert, 0, 5000)
	for i := int64(1); i <= n; i++ {
		e := tieredEvent(int(i))
		batch = append(batch, rsql.EventToInsert{ForeignID: e.ForeignID, Type: e.Type, MetaData: e.MetaData})
		if len(batch) == cap(batch) || i == n {
			if _, err := table.InsertMany(ctx, db, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	stream := table.ToStream(db)

	run := func(b *testing.B, stream reflex.StreamFunc) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cpu := processCPU()
		for b.Loop() {
			c := &benchConsumer{}
			err := reflex.Run(ctx, reflex.NewSpec(stream, rpatterns.MemCursorStore(), c, reflex.WithStreamToHead()))
			if !reflex.IsHeadReachedErr(err) {
				b.Fatal(err)
			}
			if int64(c.n) != n {
				b.Fatalf("consumed %d events, want %d", c.n, n)
			}
		}
		cpu = processCPU() - cpu
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n)/float64(b.N), "cpu-ns/event")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n)/float64(b.N), "allocs/event")
	}
	b.Run(fmt.Sprintf("events=%d/table", n), func(b *testing.B) { run(b, stream) })

	// Archive everything, trim to the last 1%.
	dir := b.TempDir()
	raw, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = raw.Close() })
	store := rpatterns.MemCursorStore()
	a := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxAge(0))
	b.Cleanup(func() { _ = a.Close() })
	if err := reflex.Run(ctx, a.Spec(stream, store, reflex.WithStreamToHead())); !reflex.IsHeadReachedErr(err) {
		b.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	tr, err := rsql.NewTrimmer(db, table, time.Hour, rsql.WithTrimArchive(store, "archiver"), rsql.WithTrimChunk(5000))
	if err != nil {
		b.Fatal(err)
	}
	if r, err := tr.TrimBelow(ctx, n-keep+1); err != nil || r.Through != n-keep {
		b.Fatalf("TrimBelow = %+v, %v", r, err)
	}
	tiered := rblob.NewBucket("bench", raw).StreamTiered(stream, func(ctx context.Context) (int64, error) { return table.TrimmedThrough(ctx, db) })
	b.Run(fmt.Sprintf("events=%d/tiered-%d+%d", n, n-keep, keep), func(b *testing.B) { run(b, tiered) })
}
