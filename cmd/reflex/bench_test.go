package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// benchFixture is a MariaDB database with 1,000,000 events one second
// apart from 2026-01-01 and 1,000 consumers spread over them.
func benchFixture(b *testing.B) fixture {
	b.Helper()
	db, dsn := dbtest.OpenDSN(b)
	f := fixture{name: "mysql", dsn: "mysql://" + dsn, db: db, d: rsql.MySQL}
	for _, q := range []string{
		rsql.EventsSchema(rsql.MySQL, "events"),
		rsql.CursorsSchema(rsql.MySQL, "cursors"),
		"INSERT INTO events (foreign_id, timestamp, type) SELECT seq, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND, 1 FROM seq_1_to_1000000",
		"INSERT INTO cursors (id, last_event_id, updated_at) SELECT CONCAT('consumer_', seq), seq * 997, now(6) FROM seq_1_to_1000",
	} {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	return f
}

// BenchmarkConsumersReport measures the lag report of 1,000 consumers
// (what reflex consumers prints), in process. Target: <= 200 ms.
func BenchmarkConsumersReport(b *testing.B) {
	f := benchFixture(b)
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var dbf dbFlags
	dbf.register(fs, &env{getenv: func(string) string { return "" }}, tables{events: true, eventsDSN: true, cursors: true, leases: true})
	if err := fs.Parse([]string{"--dsn", f.dsn}); err != nil {
		b.Fatal(err)
	}
	s, err := openLagSource(b.Context(), fs, dbf)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	for b.Loop() {
		r, err := s.report(b.Context(), nil)
		if err != nil || len(r.rows) != 1000 {
			b.Fatalf("report: %v rows, %v", len(r.rows), err)
		}
		if err := r.print(&printer{w: io.Discard}, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/report")
}

// BenchmarkCommands runs the built command as an operator would: the
// whole process (start, connect, query, print). Targets: tail --since on
// 1,000,000 events finds its start in <= 50 ms (BenchmarkCursorAt in
// package rsql measures the search alone), consumers over 1,000 cursors
// in <= 200 ms.
func BenchmarkCommands(b *testing.B) {
	f := benchFixture(b)
	for _, bc := range []struct {
		name string
		args []string
	}{
		{"tail-since", []string{"tail", "--dsn", f.dsn, "--since", "2026-01-06T12:00:00Z", "--limit", "1"}},
		{"consumers", []string{"consumers", "--dsn", f.dsn}},
		{"version-of-nothing", []string{"help"}}, // the process alone, for comparison
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				ctx, cancel := context.WithTimeout(b.Context(), cliGuard)
				cmd := reflexCmd(ctx, bc.args...)
				out, err := cmd.Output()
				cancel()
				if err != nil {
					b.Fatalf("reflex %s: %v", strings.Join(bc.args, " "), err)
				}
				if bc.name == "tail-since" && !strings.HasPrefix(string(out), fmt.Sprintf("id=%d ", 5*86400+43200)) {
					b.Fatalf("tail --since printed %q", out)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/run")
		})
	}
	_ = time.Second
}
