package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/tracing"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

type testType int

func (t testType) ReflexType() int { return int(t) }

// guard bounds blocking steps of tests: a hang guard, not a speed check.
const guard = 30 * time.Second

var tableSeq atomic.Int64

// newTable creates a fresh events table in db and returns it configured
// with opts (plus a metadata and trace column).
func newTable(t testing.TB, db *sql.DB, opts ...rsql.EventsOption) *rsql.EventsTable {
	t.Helper()
	name := fmt.Sprintf("events_%d", tableSeq.Add(1))
	rsqltest.CreateEventsTable(t, db, name)
	all := append([]rsql.EventsOption{rsql.WithEventMetadataField("metadata"), rsql.WithEventTraceField("trace")}, opts...)
	return rsql.NewEventsTable(name, all...)
}

// insert inserts events in one transaction and commits.
func insert(t testing.TB, db *sql.DB, table *rsql.EventsTable, events ...reflex.Event) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer tx.Rollback()
	var notifies []rsql.NotifyFunc
	for _, e := range events {
		n, err := table.InsertWithMetadata(ctx, tx, e.ForeignID, e.Type, e.MetaData)
		if err != nil {
			t.Fatalf("InsertWithMetadata: %v", err)
		}
		notifies = append(notifies, n)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	for _, n := range notifies {
		n()
	}
}

// insertN inserts n events with foreign IDs "1".."n" (from first) and type 1.
func insertN(t testing.TB, db *sql.DB, table *rsql.EventsTable, first, n int) {
	t.Helper()
	evs := make([]rsql.EventToInsert, n)
	for i := range evs {
		evs[i] = rsql.EventToInsert{ForeignID: fmt.Sprint(first + i), Type: testType(1)}
	}
	for len(evs) > 0 {
		k := min(len(evs), 5000)
		notify, err := table.InsertMany(context.Background(), db, evs[:k])
		if err != nil {
			t.Fatalf("InsertMany: %v", err)
		}
		notify()
		evs = evs[k:]
	}
}

// drain reads a to-head stream until ErrHeadReached.
func drain(t testing.TB, stream reflex.StreamFunc, after string, opts ...reflex.StreamOption) []*reflex.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cl, err := stream(ctx, after, append(opts, reflex.WithStreamToHead())...)
	if err != nil {
		t.Fatalf("stream(%q): %v", after, err)
	}
	defer closeClient(cl)
	var out []*reflex.Event
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			return out
		}
		if err != nil {
			t.Fatalf("Recv after %d events: %v", len(out), err)
		}
		out = append(out, e)
	}
}

func closeClient(cl reflex.StreamClient) {
	if c, ok := cl.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// ids returns the IDs of events.
func ids(events []*reflex.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func seq(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// recvWithin receives one event, failing t if none arrives within guard.
func recvWithin(t testing.TB, cl reflex.StreamClient) *reflex.Event {
	t.Helper()
	type res struct {
		e   *reflex.Event
		err error
	}
	ch := make(chan res, 1)
	go func() {
		e, err := cl.Recv()
		ch <- res{e, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Recv: %v", r.err)
		}
		return r.e
	case <-time.After(guard):
		t.Fatalf("Recv: no event within %v", guard)
		return nil
	}
}

func TestEventsStreamConformance(t *testing.T) {
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) {
			db := e.openDB(t)
			for _, tc := range []struct {
				name string
				opts []rsql.EventsOption
			}{
				{"Cache", nil},
				{"NoCache", []rsql.EventsOption{rsql.WithoutEventsCache()}},
				{"LookupLimit7", []rsql.EventsOption{rsql.WithEventLookupLimit(7)}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					reflextest.TestStreamFunc(t, reflextest.StreamHarness{
						New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
							table := newEngineTable(t, e, db, tc.opts...)
							return table.ToStream(db), func(t *testing.T, events ...reflex.Event) {
								insert(t, db, table, events...)
							}
						},
						InvalidCursors: []string{"abc", "-1", "9223372036854775808", "1.5", " 1", "0x10"},
					})
				})
			}
		})
	}
}

// TestStreamMethodConformance runs the suite on Stream (lazy from-head is
// not the suite's semantics, so from-head is skipped).
func TestStreamMethodConformance(t *testing.T) {
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) {
			db := e.openDB(t)
			reflextest.TestStreamFunc(t, reflextest.StreamHarness{
				New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
					table := newEngineTable(t, e, db)
					stream := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
						return table.Stream(ctx, db, after, opts...), nil
					}
					return stream, func(t *testing.T, events ...reflex.Event) { insert(t, db, table, events...) }
				},
				SkipFromHead:   true,
				InvalidCursors: []string{"abc", "-1", "9223372036854775808"},
			})
		})
	}
}

func TestInsertInvalidNoop(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	ctx := t.Context()
	n, err := table.Insert(ctx, db, "0", testType(0))
	if !errors.Is(err, rsql.ErrInvalidNoop) || err.Error() != "inserting invalid noop event" {
		t.Errorf("Insert(noop) error = %v, want %q", err, "inserting invalid noop event")
	}
	if n != nil {
		t.Error("Insert(noop) returned a non-nil NotifyFunc")
	}
	n, err = table.InsertMany(ctx, db, []rsql.EventToInsert{{ForeignID: "1", Type: testType(1)}, {ForeignID: "0", Type: testType(0)}})
	if !errors.Is(err, rsql.ErrInvalidNoop) || !strings.Contains(err.Error(), "event 1") {
		t.Errorf("InsertMany(noop at 1) error = %v, want ErrInvalidNoop naming event 1", err)
	}
	if n != nil {
		t.Error("InsertMany(noop) returned a non-nil NotifyFunc")
	}
	// Either half of the noop marker alone is a valid event.
	for _, e := range []rsql.EventToInsert{{ForeignID: "0", Type: testType(11)}, {ForeignID: "5", Type: testType(0)}} {
		if _, err := table.Insert(ctx, db, e.ForeignID, e.Type); err != nil {
			t.Errorf("Insert(%q, %d): %v", e.ForeignID, e.Type.ReflexType(), err)
		}
	}
	got := drain(t, table.ToStream(db), "")
	if len(got) != 2 || got[0].ForeignID != "0" || got[0].Type.ReflexType() != 11 || got[1].Type.ReflexType() != 0 {
		t.Errorf("streamed %v, want the two valid events", ids(got))
	}
	if _, err := table.Insert(ctx, db, "1", nil); err == nil {
		t.Error("Insert with a nil type succeeded")
	}
}

func TestInsertMetadataNotEnabled(t *testing.T) {
	db := dbtest.Open(t)
	name := "plain_events"
	rsqltest.CreateEventsTable(t, db, name)
	table := rsql.NewEventsTable(name)
	n, err := table.InsertWithMetadata(t.Context(), db, "1", testType(1), []byte("x"))
	if !errors.Is(err, rsql.ErrMetadataNotEnabled) || err.Error() != "metadata not enabled" {
		t.Errorf("InsertWithMetadata error = %v, want %q", err, "metadata not enabled")
	}
	if n == nil {
		t.Error("NotifyFunc is nil after an insert error, want a no-op")
	} else {
		n()
	}
	if _, err := table.InsertMany(t.Context(), db, []rsql.EventToInsert{{ForeignID: "1", Type: testType(1), MetaData: []byte{}}}); !errors.Is(err, rsql.ErrMetadataNotEnabled) {
		t.Errorf("InsertMany error = %v, want ErrMetadataNotEnabled", err)
	}
	// Nil metadata is fine, and the column is not read.
	if _, err := table.InsertWithMetadata(t.Context(), db, "1", testType(1), nil); err != nil {
		t.Fatalf("InsertWithMetadata(nil): %v", err)
	}
	got := drain(t, table.ToStream(db), "")
	if len(got) != 1 || got[0].MetaData != nil {
		t.Errorf("streamed %d events (metadata %q), want 1 without metadata", len(got), got[0].MetaData)
	}
}

func TestInsertInTxVisibleOnCommit(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	notify, err := table.Insert(t.Context(), tx, "1", testType(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := drain(t, table.ToStream(db), ""); len(got) != 0 {
		t.Fatalf("uncommitted event streamed: %v", ids(got))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	notify()
	if got := drain(t, table.ToStream(db), ""); !equal(ids(got), []string{"1"}) {
		t.Fatalf("after commit: %v, want [1]", ids(got))
	}
}

func TestInsertForeignIDsRoundTrip(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	fids := []string{"", "plain", `it's "quoted" \ back\\slash`, "ünïcødé 🎉", "0", "x'; DROP TABLE t; --"}
	for _, f := range fids {
		if _, err := table.Insert(t.Context(), db, f, testType(3)); err != nil {
			t.Fatalf("Insert(%q): %v", f, err)
		}
	}
	got := drain(t, table.ToStream(db), "")
	if len(got) != len(fids) {
		t.Fatalf("streamed %d events, want %d", len(got), len(fids))
	}
	for i, e := range got {
		if e.ForeignID != fids[i] {
			t.Errorf("event %d foreign ID %q, want %q", i, e.ForeignID, fids[i])
		}
	}
}

func TestInsertMany(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	evs := []rsql.EventToInsert{
		{ForeignID: "a", Type: testType(1)},
		{ForeignID: "b", Type: testType(2), MetaData: []byte("meta")},
		{ForeignID: "c", Type: testType(3), MetaData: []byte{}},
	}
	// Inside a transaction, split into several statements.
	defer rsql.SetMaxInsertSQL(60)()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := table.InsertMany(t.Context(), tx, evs); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback()
	if got := drain(t, table.ToStream(db), ""); len(got) != 0 {
		t.Fatalf("rolled-back InsertMany streamed %v", ids(got))
	}
	notify, err := table.InsertMany(t.Context(), db, evs)
	if err != nil {
		t.Fatal(err)
	}
	notify()
	got := drain(t, table.ToStream(db), "")
	if len(got) != 3 {
		t.Fatalf("streamed %d events, want 3", len(got))
	}
	for i, e := range got {
		w := evs[i]
		if e.ForeignID != w.ForeignID || e.Type.ReflexType() != w.Type.ReflexType() || string(e.MetaData) != string(w.MetaData) || (e.MetaData == nil) != (w.MetaData == nil) {
			t.Errorf("event %d = (%q, %d, %q), want (%q, %d, %q)", i, e.ForeignID, e.Type.ReflexType(), e.MetaData, w.ForeignID, w.Type.ReflexType(), w.MetaData)
		}
	}
	if n, err := table.InsertMany(t.Context(), db, nil); err != nil || n == nil {
		t.Errorf("InsertMany(nil) = (%v, %v), want a no-op", n, err)
	}
}

func TestInsertOversizedMetadata(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	_, err := table.InsertWithMetadata(t.Context(), db, "1", testType(1), make([]byte, 70_000))
	if err == nil {
		t.Fatal("inserting 70 000 bytes into a blob column succeeded")
	}
	if !strings.Contains(err.Error(), table.Name()) || !strings.Contains(err.Error(), "metadata") {
		t.Errorf("error %q names neither the table nor the column", err)
	}
}

func TestInsertTrace(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("0102030405060708")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
	ctx := trace.ContextWithSpanContext(t.Context(), sc)
	if _, err := table.Insert(ctx, db, "traced", testType(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := table.Insert(t.Context(), db, "untraced", testType(1)); err != nil {
		t.Fatal(err)
	}
	got := drain(t, table.ToStream(db), "")
	if len(got) != 2 {
		t.Fatalf("streamed %d events", len(got))
	}
	dec, err := tracing.Unmarshal(got[0].Trace)
	if err != nil || dec.TraceID() != tid || dec.SpanID() != sid {
		t.Errorf("trace = %v (%v), want trace %v span %v", dec, err, tid, sid)
	}
	if got[1].Trace != nil {
		t.Errorf("event without a span has trace %q", got[1].Trace)
	}
	// Without a trace column nothing is stored.
	plain := rsql.NewEventsTable(table.Name())
	if _, err := plain.Insert(ctx, db, "x", testType(1)); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, plain.ToStream(db), "2"); len(got) != 1 || got[0].Trace != nil {
		t.Errorf("table without trace column streamed %d events with trace", len(got))
	}
}

func TestCustomColumns(t *testing.T) {
	db := dbtest.Open(t)
	if _, err := db.Exec("CREATE TABLE `custom` (`eid` BIGINT AUTO_INCREMENT PRIMARY KEY, `ref` VARCHAR(255) NOT NULL, `at` DATETIME(6) NOT NULL, `kind` INT NOT NULL, `meta` BLOB NULL, `tr` BLOB NULL)"); err != nil {
		t.Fatal(err)
	}
	table := rsql.NewEventsTable("custom", rsql.WithEventIDField("eid"), rsql.WithEventForeignIDField("ref"),
		rsql.WithEventTimeField("at"), rsql.WithEventTypeField("kind"), rsql.WithEventMetadataField("meta"),
		rsql.WithEventTraceField("`tr`"))
	insert(t, db, table, reflex.Event{ForeignID: "f1", Type: testType(1), MetaData: []byte("m")},
		reflex.Event{ForeignID: "f2", Type: testType(2)}, reflex.Event{ForeignID: "f3", Type: testType(3)})
	got := drain(t, table.ToStream(db), "", reflex.WithStreamLag(time.Nanosecond))
	if !equal(ids(got), seq(1, 3)) || got[0].ForeignID != "f1" || string(got[0].MetaData) != "m" || got[2].Type.ReflexType() != 3 {
		t.Fatalf("streamed %v", ids(got))
	}
}

func TestEventsTableInt(t *testing.T) {
	db := dbtest.Open(t)
	if _, err := db.Exec("CREATE TABLE int_events (id BIGINT AUTO_INCREMENT PRIMARY KEY, foreign_id BIGINT NOT NULL, timestamp DATETIME(6) NOT NULL, type INT NOT NULL, metadata BLOB NULL)"); err != nil {
		t.Fatal(err)
	}
	table := rsql.NewEventsTableInt("int_events", rsql.WithEventMetadataField("metadata"))
	if _, err := table.Insert(t.Context(), db, 123, testType(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := table.InsertWithMetadata(t.Context(), db, -7, testType(2), []byte("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := table.Insert(t.Context(), db, 0, testType(0)); !errors.Is(err, rsql.ErrInvalidNoop) {
		t.Errorf("Insert(0, 0) = %v, want ErrInvalidNoop", err)
	}
	clone := table.Clone(rsql.WithEventsBackoff(time.Second))
	got := drain(t, clone.ToStream(db), "")
	if len(got) != 2 || got[0].ForeignID != "123" || got[1].ForeignID != "-7" || string(got[1].MetaData) != "m" {
		t.Fatalf("streamed %v", got)
	}
	if err := rsql.FillGaps(db, clone); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, clone)
}

func TestCloneOptions(t *testing.T) {
	var calls atomic.Int64
	inserter := func(context.Context, rsql.DBC, string, reflex.EventType, []byte) error {
		calls.Add(1)
		return nil
	}
	table := rsql.NewEventsTable("t", rsql.WithEventsInserter(inserter), rsql.WithEventsInMemNotifier())
	clone := table.Clone(rsql.WithEventsBackoff(time.Second))
	if _, err := clone.Insert(t.Context(), nil, "1", testType(1)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Errorf("clone did not use the inserter option")
	}
	if clone.Backoff() != time.Second || table.Backoff() == time.Second {
		t.Errorf("backoffs: table %v, clone %v", table.Backoff(), clone.Backoff())
	}
	// A failing inserter's error is returned with a no-op NotifyFunc.
	boom := errors.New("boom")
	failing := rsql.NewEventsTable("t", rsql.WithEventsInserter(func(context.Context, rsql.DBC, string, reflex.EventType, []byte) error { return boom }))
	n, err := failing.Insert(t.Context(), nil, "1", testType(1))
	if !errors.Is(err, boom) || n == nil {
		t.Errorf("Insert = (%v, %v), want (no-op, boom)", n, err)
	}
	if _, err := failing.InsertMany(t.Context(), nil, []rsql.EventToInsert{{ForeignID: "1", Type: testType(1)}}); !errors.Is(err, boom) {
		t.Errorf("InsertMany error = %v, want boom", err)
	}
}

func TestLookupLimit(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	insertN(t, db, table, 1, 5000)
	for _, tc := range []struct {
		limit       int
		first, next int // Buffered after the first Recv, and after the first batch
	}{
		{10, 9, 9},
		{2000, 1999, 1999},
		{0, 999, 1999}, // default: catching up reads bigger batches
	} {
		tb := table.Clone(rsql.WithEventLookupLimit(tc.limit), rsql.WithoutEventsCache())
		cl := tb.Stream(t.Context(), db, "")
		buf := cl.(reflex.Buffered)
		if _, err := cl.Recv(); err != nil {
			t.Fatal(err)
		}
		if got := buf.Buffered(); got != tc.first {
			t.Errorf("limit %d: Buffered after the first event = %d, want %d", tc.limit, got, tc.first)
		}
		for range tc.first + 1 {
			if _, err := cl.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		if got := buf.Buffered(); got != tc.next {
			t.Errorf("limit %d: Buffered after the second batch's first event = %d, want %d", tc.limit, got, tc.next)
		}
		closeClient(cl)
	}
}

// TestCatchUpLarge streams more events than several catch-up batches, with
// the read-ahead, and checks order and completeness.
func TestCatchUpLarge(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	const n = 30_000
	insertN(t, db, table, 1, n)
	got := drain(t, table.ToStream(db), "")
	if len(got) != n {
		t.Fatalf("streamed %d events, want %d", len(got), n)
	}
	for i, e := range got {
		if e.ID != strconv.Itoa(i+1) || e.ForeignID != strconv.Itoa(i+1) {
			t.Fatalf("event %d = (%s, %s)", i, e.ID, e.ForeignID)
		}
	}
	// Closing in the middle of a catch-up stops the read-ahead.
	cl := table.Stream(t.Context(), db, "")
	for range 1500 {
		if _, err := cl.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	closeClient(cl)
	if _, err := cl.Recv(); !errors.Is(err, context.Canceled) {
		t.Errorf("Recv after Close = %v, want context.Canceled", err)
	}
}

// TestNoopRangesSkipped: a long run of noops is skipped without
// delivering any of them.
func TestNoopRangesSkipped(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	if _, err := db.Exec("INSERT INTO " + table.Name() + " (id, foreign_id, timestamp, type) SELECT seq, '0', now(6), 0 FROM seq_1_to_2500"); err != nil {
		t.Fatal(err)
	}
	insertN(t, db, table, 1, 1)
	for _, opts := range [][]rsql.EventsOption{nil, {rsql.WithoutEventsCache()}, {rsql.WithEventLookupLimit(100)}} {
		if got := drain(t, table.Clone(opts...).ToStream(db), ""); !equal(ids(got), []string{"2501"}) {
			t.Errorf("streamed %d events (%v...), want only 2501", len(got), ids(got[:min(len(got), 3)]))
		}
	}
	if got := drain(t, table.Clone(rsql.WithIncludeNoopEvents()).ToStream(db), ""); len(got) != 2501 {
		t.Errorf("with noops: %d events, want 2501", len(got))
	}
}

func TestStreamLagSQL(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	insertN(t, db, table, 1, 4)
	if _, err := db.Exec("UPDATE " + table.Name() + " SET timestamp = now(6) - INTERVAL 1 HOUR WHERE id <= 2"); err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]rsql.EventsOption{nil, {rsql.WithoutEventsCache()}} {
		tb := table.Clone(opts...)
		if got := drain(t, tb.ToStream(db), "", reflex.WithStreamLag(time.Minute)); !equal(ids(got), seq(1, 2)) {
			t.Errorf("lag 1 min: %v, want [1 2]", ids(got))
		}
		// The cached path applies the same cut-off.
		drain(t, tb.ToStream(db), "")
		if got := drain(t, tb.ToStream(db), "", reflex.WithStreamLag(time.Minute)); !equal(ids(got), seq(1, 2)) {
			t.Errorf("lag 1 min after caching: %v, want [1 2]", ids(got))
		}
	}
}

func TestBadCursors(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	for _, c := range []string{"abc", "-1", "9223372036854775808", "1e3"} {
		_, err := table.ToStream(db)(t.Context(), c)
		if !errors.Is(err, rsql.ErrInvalidIntID) || !strings.Contains(err.Error(), strconv.Quote(c)) {
			t.Errorf("ToStream cursor %q: error %v, want ErrInvalidIntID naming the cursor", c, err)
		}
		cl := table.Stream(t.Context(), db, c)
		for range 2 { // the error sticks
			if _, err := cl.Recv(); !errors.Is(err, rsql.ErrInvalidIntID) {
				t.Errorf("Stream cursor %q: Recv error %v, want ErrInvalidIntID", c, err)
			}
		}
		closeClient(cl)
	}
}

// TestNilHandles: nil database handles give errors, not panics.
func TestNilHandles(t *testing.T) {
	ctx := t.Context()
	table := rsql.NewEventsTable("events_nil")
	for _, dbc := range []rsql.DBC{nil, (*sql.DB)(nil), (*sql.Tx)(nil)} {
		if _, err := table.Insert(ctx, dbc, "a", testType(1)); err == nil || !strings.Contains(err.Error(), "nil DBC") {
			t.Errorf("Insert(%T): error %v, want nil DBC", dbc, err)
		}
		evs := []rsql.EventToInsert{{ForeignID: "a", Type: testType(1)}}
		if _, err := table.InsertMany(ctx, dbc, evs); err == nil || !strings.Contains(err.Error(), "nil DBC") {
			t.Errorf("InsertMany(%T): error %v, want nil DBC", dbc, err)
		}
	}
	for _, opts := range [][]reflex.StreamOption{nil, {reflex.WithStreamFromHead()}} {
		if _, err := table.ToStream(nil)(ctx, "", opts...); err == nil || !strings.Contains(err.Error(), "nil *sql.DB") {
			t.Errorf("ToStream(nil) with %d options: error %v, want nil *sql.DB", len(opts), err)
		}
		cl := table.Stream(ctx, nil, "", opts...)
		if _, err := cl.Recv(); err == nil || !strings.Contains(err.Error(), "nil *sql.DB") {
			t.Errorf("Stream(nil) with %d options: Recv error %v, want nil *sql.DB", len(opts), err)
		}
		closeClient(cl)
	}
	cursors := rsql.NewCursorsTable("cursors_nil", rsql.WithCursorAsyncDisabled())
	if _, err := cursors.GetCursor(ctx, (*sql.DB)(nil), "c"); err == nil {
		t.Error("GetCursor with a nil *sql.DB succeeded")
	}
	if err := cursors.SetCursor(ctx, (*sql.Tx)(nil), "c", "1"); err == nil {
		t.Error("SetCursor with a nil *sql.Tx succeeded")
	}
}

func TestConstructionPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"bad table", func() { rsql.NewEventsTable("events; DROP TABLE x") }},
		{"empty table", func() { rsql.NewEventsTable("") }},
		{"three parts", func() { rsql.NewEventsTable("a.b.c") }},
		{"bad id", func() { rsql.NewEventsTable("e", rsql.WithEventIDField("id`")) }},
		{"bad time", func() { rsql.NewEventsTable("e", rsql.WithEventTimeField("a b")) }},
		{"bad type", func() { rsql.NewEventsTable("e", rsql.WithEventTypeField("t-1")) }},
		{"bad fid", func() { rsql.NewEventsTable("e", rsql.WithEventForeignIDField("")) }},
		{"bad metadata", func() { rsql.NewEventsTable("e", rsql.WithEventMetadataField("m'")) }},
		{"bad trace", func() { rsql.NewEventsTable("e", rsql.WithEventTraceField("t\"")) }},
		{"nil option", func() { rsql.NewEventsTable("e", nil) }},
		{"nil loader", func() { rsql.NewEventsTable("e", rsql.WithEventsLoader(nil)) }},
		{"nil inserter", func() { rsql.NewEventsTable("e", rsql.WithEventsInserter(nil)) }},
		{"nil notifier", func() { rsql.NewEventsTable("e", rsql.WithEventsNotifier(nil)) }},
		{"negative backoff", func() { rsql.NewEventsTable("e", rsql.WithEventsBackoff(-time.Second)) }},
		{"clone", func() { rsql.NewEventsTable("e").Clone(rsql.WithEventIDField("x y")) }},
		{"int table", func() { rsql.NewEventsTableInt("bad name") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || !strings.HasPrefix(s, "rsql: ") {
					t.Errorf("panic = %v, want an \"rsql: \" message", r)
				}
			}()
			tc.f()
		})
	}
	// Valid unusual names.
	rsql.NewEventsTable("db.events", rsql.WithEventIDField("`id`"))
}

// TestCustomLoaderTails: a stream over a loader that reads no SQL table
// (and no *sql.DB) still tails, reloading every backoff interval.
func TestCustomLoaderTails(t *testing.T) {
	var (
		mu     sync.Mutex
		events []*reflex.Event
	)
	loader := func(_ context.Context, _ *sql.DB, prev int64, _ time.Duration) ([]*reflex.Event, error) {
		mu.Lock()
		defer mu.Unlock()
		if int(prev) < len(events) {
			return events[prev:], nil
		}
		return nil, nil
	}
	table := rsql.NewEventsTable("memory_tail", rsql.WithEventsLoader(loader), rsql.WithEventsBackoff(5*time.Millisecond))
	cl := table.Stream(t.Context(), nil, "")
	defer closeClient(cl)
	go func() {
		mu.Lock()
		events = append(events, &reflex.Event{ID: "1", ForeignID: "f", Type: testType(1), Timestamp: time.Now()})
		mu.Unlock()
	}()
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("got %s, want 1", e.ID)
	}
}
