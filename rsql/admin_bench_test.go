package rsql_test

import (
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// BenchmarkCursorAt finds the cursor of a time in a table of 1,000,000
// events (one second apart) on MariaDB: a binary search with point
// lookups, about 20 queries, never a scan. Target: <= 50 ms per search.
func BenchmarkCursorAt(b *testing.B) {
	db := dbtest.Open(b)
	rsqltest.CreateEventsTable(b, db, "events")
	// MariaDB's sequence engine writes the rows in one statement.
	if _, err := db.Exec("INSERT INTO events (foreign_id, timestamp, type) " +
		"SELECT seq, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND, 1 FROM seq_1_to_1000000"); err != nil {
		b.Fatal(err)
	}
	table := rsql.NewEventsTable("events")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	i := 0
	for b.Loop() {
		i = (i + 7919) % 1_000_000
		want := int64(i)
		got, err := table.CursorAt(b.Context(), db, base.Add(time.Duration(i+1)*time.Second))
		if err != nil || got != want {
			b.Fatalf("CursorAt = %d, %v; want %d", got, err, want)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/search")
}
