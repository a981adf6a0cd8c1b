package rsql_test

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

var trimN = flag.Int("rsql.trim", 1_000_000, "rows trimmed by BenchmarkTrim")

// BenchmarkTrim trims -rsql.trim rows (1,000,000 by default) of an events
// table on MariaDB and on PostgreSQL in chunks of the default size and of other sizes, behind
// an archiver's cursor at the head, and reports the rows trimmed per
// second of the pass and its longest single statement (scan, DELETE,
// marker UPDATE or commit). Each iteration inserts the rows first (not
// measured: the metrics come from the pass alone); run it with
// -benchtime=1x.
func BenchmarkTrim(b *testing.B) {
	for _, e := range serverEngines() {
		b.Run(e.name, func(b *testing.B) { benchmarkTrim(b, e) })
	}
}

func benchmarkTrim(b *testing.B, e engine) {
	for _, chunk := range []int{rsql.DefaultTrimChunk, 250, 1000, 5000} {
		b.Run(fmt.Sprintf("rows=%d/chunk=%d", *trimN, chunk), func(b *testing.B) {
			db := e.openDB(b)
			ctx := context.Background()
			var rate, longest, statements float64
			for i := 0; b.Loop(); i++ {
				name := "trim_" + strconv.Itoa(i)
				if _, err := db.ExecContext(ctx, rsql.EventsSchema(e.d, name)); err != nil {
					b.Fatal(err)
				}
				table := rsql.NewEventsTable(name, rsql.WithEventsDialect(e.d), rsql.WithEventMetadataField("metadata"))
				evs := make([]rsql.EventToInsert, 5000)
				for j := range evs {
					evs[j] = rsql.EventToInsert{ForeignID: strconv.Itoa(100000 + j), Type: testType(1 + j%5), MetaData: []byte("some metadata")}
				}
				for n := 0; n < *trimN; n += len(evs) {
					if _, err := table.InsertMany(ctx, db, evs[:min(len(evs), *trimN-n)]); err != nil {
						b.Fatal(err)
					}
				}
				store := rpatterns.MemCursorStore()
				_ = store.SetCursor(ctx, "archiver", strconv.Itoa(*trimN))
				tr, err := rsql.NewTrimmer(db, table, time.Hour, rsql.WithTrimArchive(store, "archiver"), rsql.WithTrimChunk(chunk))
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				r, err := tr.TrimBelow(ctx, int64(*trimN)+1)
				d := time.Since(start)
				if err != nil || r.Rows != int64(*trimN) {
					b.Fatalf("TrimBelow = %+v, %v", r, err)
				}
				rate = float64(r.Rows) / d.Seconds()
				longest = max(longest, float64(r.Longest.Microseconds())/1000)
				statements = float64(r.Statements)
				_ = table.Close()
				if _, err := db.ExecContext(ctx, "DROP TABLE "+name); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(rate, "rows/s")
			b.ReportMetric(longest, "longest-ms")
			b.ReportMetric(statements, "statements")
		})
	}
}
