package rsql_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// cursorsBenchSets is the number of SetCursor calls per consumer between
// two flushes in BenchmarkCursorsAsync (a consumer advancing 100 events per
// flush period).
const cursorsBenchSets = 100

// BenchmarkCursorsAsync measures one flush period of an asynchronous table:
// per op, every consumer sets 100 increasing cursors, then one Flush. The
// "stmts/flush" metric is the number of statements per flush; compare ns/op
// with BenchmarkCursorsUpdatePerBatch (one plain UPDATE per batch).
func BenchmarkCursorsAsync(b *testing.B) {
	for _, consumers := range []int{1, 16} {
		b.Run(fmt.Sprintf("consumers=%d", consumers), func(b *testing.B) {
			db := dbtest.Open(b)
			ct := newCursorsTable(b, db, rsql.WithCursorAsyncPeriod(time.Hour), rsql.WithCursorSetCounter(nil))
			h := &curHookDBC{DBC: db}
			names := make([]string, consumers)
			for i := range names {
				names[i] = fmt.Sprintf("consumer-%d", i)
			}
			ctx := b.Context()
			var cur, flushes int64
			for b.Loop() {
				for range cursorsBenchSets {
					cur++
					c := strconv.FormatInt(cur, 10)
					for _, n := range names {
						if err := ct.SetCursor(ctx, h, n, c); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := ct.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				flushes++
			}
			b.ReportMetric(float64(h.execs.Load())/float64(flushes), "stmts/flush")
			b.ReportMetric(float64(cursorsBenchSets*consumers), "sets/op")
		})
	}
}

// BenchmarkCursorsSync measures a synchronous SetCursor of an existing
// consumer (one UPDATE).
func BenchmarkCursorsSync(b *testing.B) {
	db := dbtest.Open(b)
	ct := newCursorsTable(b, db, rsql.WithCursorAsyncDisabled(), rsql.WithCursorSetCounter(nil))
	h := &curHookDBC{DBC: db}
	ctx := b.Context()
	var cur int64
	for b.Loop() {
		cur++
		if err := ct.SetCursor(ctx, h, "consumer", strconv.FormatInt(cur, 10)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(h.execs.Load())/float64(cur), "stmts/op")
}

// BenchmarkCursorsUpdatePerBatch is the baseline of BenchmarkCursorsAsync:
// one plain UPDATE of one consumer's cursor per op, as a caller writes it
// with database/sql (args: prepare and execute) and with the values inlined
// (one round trip, as rsql does).
func BenchmarkCursorsUpdatePerBatch(b *testing.B) {
	db := dbtest.Open(b)
	newCursorsTable(b, db) // creates cursors_<n>
	name := fmt.Sprintf("cursors_%d", curSeq.Load())
	ctx := b.Context()
	if _, err := db.ExecContext(ctx, "INSERT INTO "+name+" VALUES ('consumer-0', 0, now(6))"); err != nil {
		b.Fatal(err)
	}
	var cur int64
	b.Run("args", func(b *testing.B) {
		q := "UPDATE " + name + " SET last_event_id = ?, updated_at = now(6) WHERE id = ?"
		for b.Loop() {
			cur++
			if _, err := db.ExecContext(ctx, q, cur, "consumer-0"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("inline", func(b *testing.B) {
		for b.Loop() {
			cur++
			q := "UPDATE " + name + " SET last_event_id = " + strconv.FormatInt(cur, 10) +
				", updated_at = now(6) WHERE id = 'consumer-0'"
			if _, err := db.ExecContext(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCursorsAsyncVsUpdate pairs, in each op, one flush period of an
// asynchronous table (100 SetCursor calls and a Flush) with the baseline
// plain UPDATE (values inlined, one round trip), timing each, so that both
// run under the same load; the "ratio" metric is baseline time / async
// time (target >= 0.9).
func BenchmarkCursorsAsyncVsUpdate(b *testing.B) {
	db := dbtest.Open(b)
	ct := newCursorsTable(b, db, rsql.WithCursorAsyncPeriod(time.Hour), rsql.WithCursorSetCounter(nil))
	ctx := b.Context()
	if _, err := db.ExecContext(ctx, "INSERT INTO "+ct.Name()+" VALUES ('baseline', 0, now(6))"); err != nil {
		b.Fatal(err)
	}
	var (
		cur           int64
		async, update time.Duration
		ids           = make([]string, cursorsBenchSets)
	)
	for b.Loop() {
		// Event IDs exist before their cursors are set: not timed.
		for i := range ids {
			cur++
			ids[i] = strconv.FormatInt(cur, 10)
		}
		t0 := time.Now()
		for _, id := range ids {
			if err := ct.SetCursor(ctx, db, "consumer", id); err != nil {
				b.Fatal(err)
			}
		}
		if err := ct.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		q := "UPDATE " + ct.Name() + " SET last_event_id = " + strconv.FormatInt(cur, 10) +
			", updated_at = now(6) WHERE id = 'baseline'"
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
		async += t1.Sub(t0)
		update += time.Since(t1)
	}
	b.ReportMetric(float64(async.Nanoseconds())/float64(b.N), "async-ns/op")
	b.ReportMetric(float64(update.Nanoseconds())/float64(b.N), "update-ns/op")
	b.ReportMetric(float64(update)/float64(async), "ratio")
}

// BenchmarkCursorsAsyncCPU is BenchmarkCursorsAsync without a database
// (a DBC that records statements): the library's own cost of 100
// SetCursor calls per consumer and one flush building the statement.
func BenchmarkCursorsAsyncCPU(b *testing.B) {
	for _, consumers := range []int{1, 16} {
		b.Run(fmt.Sprintf("consumers=%d", consumers), func(b *testing.B) {
			r := &recordingDBC{}
			ct := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncPeriod(time.Hour), rsql.WithCursorSetCounter(nil))
			rsql.SkipCursorsCatalog(ct)
			b.Cleanup(func() { ct.Close() })
			names := make([]string, consumers)
			for i := range names {
				names[i] = fmt.Sprintf("consumer-%d", i)
			}
			ctx := b.Context()
			var cur int64
			for b.Loop() {
				for range cursorsBenchSets {
					cur++
					c := strconv.FormatInt(cur, 10)
					for _, n := range names {
						if err := ct.SetCursor(ctx, r, n, c); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := ct.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				r.mu.Lock()
				r.stmts = r.stmts[:0]
				r.mu.Unlock()
			}
		})
	}
}
