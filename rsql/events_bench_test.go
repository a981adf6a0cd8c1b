package rsql_test

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

var catchUpN = flag.Int("rsql.catchup", 100_000, "events preloaded by BenchmarkCatchUp and BenchmarkRawSelectLoop")

// rawLimit is the batch size of the raw baseline loop.
const rawLimit = 5000

// catchUpData returns a new database with an events table of *catchUpN
// events.
func catchUpData(b *testing.B) (*sql.DB, string) {
	b.Helper()
	db := dbtest.Open(b)
	name := "catchup"
	rsqltest.CreateEventsTable(b, db, name)
	table := rsql.NewEventsTable(name, rsql.WithEventMetadataField("metadata"))
	evs := make([]rsql.EventToInsert, 5000)
	for i := range evs {
		evs[i] = rsql.EventToInsert{ForeignID: strconv.Itoa(100000 + i), Type: testType(1 + i%5)}
		if i%4 == 0 {
			evs[i].MetaData = []byte("some metadata")
		}
	}
	for n := 0; n < *catchUpN; n += len(evs) {
		if _, err := table.InsertMany(context.Background(), db, evs[:min(len(evs), *catchUpN-n)]); err != nil {
			b.Fatalf("InsertMany: %v", err)
		}
	}
	return db, name
}

// memStore is a minimal in-memory cursor store.
type memStore struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memStore) GetCursor(_ context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name], nil
}

func (s *memStore) SetCursor(_ context.Context, name, cursor string) error {
	s.mu.Lock()
	s.m[name] = cursor
	s.mu.Unlock()
	return nil
}

func (*memStore) Flush(context.Context) error { return nil }

// BenchmarkCatchUp measures reflex.Run over a table of -rsql.catchup
// events from the start to the head, with an in-memory cursor store.
// Compare its events/s with BenchmarkRawSelectLoop's rows/s, or see
// BenchmarkCatchUpRatio.
func BenchmarkCatchUp(b *testing.B) {
	db, name := catchUpData(b)
	table := rsql.NewEventsTable(name, rsql.WithEventMetadataField("metadata"))
	base := resetPeakRSS()
	var d time.Duration
	for b.Loop() {
		d += runCatchUp(b, db, table)
	}
	b.ReportMetric(float64(*catchUpN*b.N)/d.Seconds(), "events/s")
	b.ReportMetric(base, "base-RSS-MB")
	reportPeakRSS(b)
}

// BenchmarkRawSelectLoop is the baseline of BenchmarkCatchUp: a prepared
// "SELECT ... WHERE id > ? ORDER BY id LIMIT 5000" loop over the same
// table, scanning every column.
func BenchmarkRawSelectLoop(b *testing.B) {
	db, name := catchUpData(b)
	stmt := rawStmt(b, db, name)
	var d time.Duration
	for b.Loop() {
		d += rawLoop(b, stmt)
	}
	b.ReportMetric(float64(*catchUpN*b.N)/d.Seconds(), "rows/s")
}

// BenchmarkCatchUpRatio alternates the two measurements above in each
// iteration, so that both see the same machine load, and reports
// catch-up events/s divided by raw rows/s (target >= 0.5).
func BenchmarkCatchUpRatio(b *testing.B) {
	db, name := catchUpData(b)
	table := rsql.NewEventsTable(name, rsql.WithEventMetadataField("metadata"))
	stmt := rawStmt(b, db, name)
	var run, raw time.Duration
	for b.Loop() {
		raw += rawLoop(b, stmt)
		run += runCatchUp(b, db, table)
	}
	n := float64(*catchUpN * b.N)
	b.ReportMetric(n/run.Seconds(), "events/s")
	b.ReportMetric(n/raw.Seconds(), "raw-rows/s")
	b.ReportMetric(raw.Seconds()/run.Seconds(), "ratio")
}

// runCatchUp runs a consumer from the start of table to its head.
func runCatchUp(b *testing.B, db *sql.DB, table *rsql.EventsTable) time.Duration {
	consumer := reflex.NewConsumer("bench", func(context.Context, *reflex.Event) error { return nil })
	store := &memStore{m: make(map[string]string)}
	spec := reflex.NewSpec(table.ToStream(db), store, consumer, reflex.WithStreamToHead())
	start := time.Now()
	if err := reflex.Run(context.Background(), spec); !reflex.IsHeadReachedErr(err) {
		b.Fatalf("Run: %v", err)
	}
	d := time.Since(start)
	if got := store.m["bench"]; got != strconv.Itoa(*catchUpN) {
		b.Fatalf("cursor %q after the run, want %d", got, *catchUpN)
	}
	return d
}

func rawStmt(b *testing.B, db *sql.DB, name string) *sql.Stmt {
	stmt, err := db.PrepareContext(context.Background(), "SELECT id, foreign_id, timestamp, type, metadata, trace FROM "+name+
		" WHERE id > ? ORDER BY id LIMIT "+strconv.Itoa(rawLimit))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stmt.Close() })
	return stmt
}

// rawLoop reads every row with stmt.
func rawLoop(b *testing.B, stmt *sql.Stmt) time.Duration {
	ctx := context.Background()
	start := time.Now()
	var cursor int64
	n := 0
	for {
		rows, err := stmt.QueryContext(ctx, cursor)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for rows.Next() {
			var (
				id, typ     int64
				fid         string
				ts          time.Time
				meta, trace []byte
			)
			if err := rows.Scan(&id, &fid, &ts, &typ, &meta, &trace); err != nil {
				b.Fatal(err)
			}
			cursor = id
			got++
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
		rows.Close()
		n += got
		if got < rawLimit {
			break
		}
	}
	d := time.Since(start)
	if n != *catchUpN {
		b.Fatalf("read %d rows, want %d", n, *catchUpN)
	}
	return d
}

// resetPeakRSS resets the process's peak resident set size to the
// current one (Linux), so that reportPeakRSS measures what follows.
// It returns the current resident set size in MiB.
func resetPeakRSS() float64 {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return procStatusMB("VmRSS:")
}

// reportPeakRSS reports the process's peak resident set size (VmHWM).
func reportPeakRSS(b *testing.B) {
	b.ReportMetric(procStatusMB("VmHWM:"), "peak-RSS-MB")
}

// procStatusMB returns a kB field of /proc/self/status in MiB, 0 if it
// cannot be read.
func procStatusMB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field); ok {
			var kb float64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

// BenchmarkInsert measures a transaction that inserts a data row and an
// event. Compare with BenchmarkPlainTwoRowTx, or see BenchmarkInsertRatio.
func BenchmarkInsert(b *testing.B) {
	db := dbtest.Open(b)
	createDataTable(b, db)
	table := newTable(b, db)
	i := 0
	for b.Loop() {
		i++
		eventTx(b, db, table, i)
	}
}

// BenchmarkPlainTwoRowTx is the baseline of BenchmarkInsert: the same
// data row, then a row of the same shape as an event written with plain
// SQL (literal values, one round trip), in one transaction.
func BenchmarkPlainTwoRowTx(b *testing.B) {
	db := dbtest.Open(b)
	createDataTable(b, db)
	rsqltest.CreateEventsTable(b, db, "plain")
	i := 0
	for b.Loop() {
		i++
		plainTx(b, db, i)
	}
}

// BenchmarkInsertRatio alternates the two transactions above, so that
// both see the same machine load, and reports the event transaction's
// throughput relative to the plain one (target >= 0.95).
func BenchmarkInsertRatio(b *testing.B) {
	db := dbtest.Open(b)
	createDataTable(b, db)
	rsqltest.CreateEventsTable(b, db, "plain")
	table := newTable(b, db)
	var ev, plain time.Duration
	i := 0
	for b.Loop() {
		i++
		// Alternate the order too.
		start := time.Now()
		if i%2 == 0 {
			plainTx(b, db, i)
		} else {
			eventTx(b, db, table, i)
		}
		mid := time.Now()
		if i%2 == 0 {
			eventTx(b, db, table, i)
			ev += time.Since(mid)
			plain += mid.Sub(start)
		} else {
			plainTx(b, db, i)
			plain += time.Since(mid)
			ev += mid.Sub(start)
		}
	}
	b.ReportMetric(float64(b.N)/ev.Seconds(), "event-tx/s")
	b.ReportMetric(float64(b.N)/plain.Seconds(), "plain-tx/s")
	b.ReportMetric(plain.Seconds()/ev.Seconds(), "ratio")
}

func eventTx(b *testing.B, db *sql.DB, table *rsql.EventsTable, i int) {
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO data (name, value) VALUES (?, ?)", "name", i); err != nil {
		b.Fatal(err)
	}
	notify, err := table.Insert(ctx, tx, strconv.Itoa(i), testType(1))
	if err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	notify()
}

func plainTx(b *testing.B, db *sql.DB, i int) {
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO data (name, value) VALUES (?, ?)", "name", i); err != nil {
		b.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO plain (foreign_id, timestamp, type) VALUES ('"+strconv.Itoa(i)+"', now(6), 1)"); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func createDataTable(b *testing.B, db *sql.DB) {
	b.Helper()
	if _, err := db.Exec("CREATE TABLE data (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(255) NOT NULL, value BIGINT NOT NULL)"); err != nil {
		b.Fatal(err)
	}
}
