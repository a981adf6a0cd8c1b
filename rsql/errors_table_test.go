package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// errRow is a row of consumer_errors.
type errRow struct {
	id, eventID      int64
	consumer, msg    string
	status           int
	created, updated time.Time
}

func errRows(t *testing.T, db *sql.DB, table string) []errRow {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT id, consumer, event_id, error_msg, error_status, created_at, updated_at FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []errRow
	for rows.Next() {
		var r errRow
		if err := rows.Scan(&r.id, &r.consumer, &r.eventID, &r.msg, &r.status, &r.created, &r.updated); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// errEvent is a row of an events table.
type errEvent struct {
	foreignID string
	typ       int
	metadata  string
}

func errEvents(t *testing.T, db *sql.DB, table string) []errEvent {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT foreign_id, type, metadata FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []errEvent
	for rows.Next() {
		var e errEvent
		var md []byte
		if err := rows.Scan(&e.foreignID, &e.typ, &md); err != nil {
			t.Fatal(err)
		}
		e.metadata = string(md)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestErrorsTableRecords(t *testing.T) {
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) { errorsTableRecords(t, e) })
	}
}

func errorsTableRecords(t *testing.T, e engine) {
	db := e.openDB(t)
	rsqltest.Tables{Dialect: e.d}.CreateErrorsTables(t, db)
	var counted []string
	var mu sync.Mutex
	insert := rsql.NewErrorsTable(rsql.WithErrorsDialect(e.d), rsql.WithErrorCounter(func(c string) {
		mu.Lock()
		defer mu.Unlock()
		counted = append(counted, c)
	})).ToErrorInsertFunc(db)
	ctx := t.Context()

	if err := insert(ctx, "consumer-a", "12", "boom"); err != nil {
		t.Fatalf("insert: %v", err)
	}
	rows := errRows(t, db, "consumer_errors")
	if len(rows) != 1 {
		t.Fatalf("%d error rows, want 1", len(rows))
	}
	r := rows[0]
	if r.consumer != "consumer-a" || r.eventID != 12 || r.msg != "boom" || r.status != int(reflex.EventErrorRecorded) ||
		r.created.IsZero() || r.updated.IsZero() {
		t.Errorf("error row = %+v", r)
	}
	evs := errEvents(t, db, "consumer_errors_events")
	want := errEvent{foreignID: fmt.Sprint(r.id), typ: 1, metadata: "consumer-a"}
	if len(evs) != 1 || evs[0] != want {
		t.Fatalf("events = %+v, want [%+v]", evs, want)
	}

	// A duplicate (consumer, event) with another message succeeds and
	// reuses the row: its event points at the existing row.
	if err := insert(ctx, "consumer-a", "12", "boom again"); err != nil {
		t.Fatalf("duplicate insert: %v", err)
	}
	// Distinct consumers and events get their own rows.
	if err := insert(ctx, "consumer-b", "12", "x"); err != nil {
		t.Fatal(err)
	}
	if err := insert(ctx, "consumer-a", "13", "y"); err != nil {
		t.Fatal(err)
	}
	rows = errRows(t, db, "consumer_errors")
	if len(rows) != 3 {
		t.Fatalf("%d error rows after a duplicate and two distinct, want 3: %+v", len(rows), rows)
	}
	evs = errEvents(t, db, "consumer_errors_events")
	if len(evs) != 4 || evs[1].foreignID != fmt.Sprint(r.id) ||
		evs[2].foreignID != fmt.Sprint(rows[1].id) || evs[3].foreignID != fmt.Sprint(rows[2].id) ||
		evs[2].metadata != "consumer-b" {
		t.Errorf("events = %+v, rows = %+v", evs, rows)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(counted) != "[consumer-a consumer-a consumer-b consumer-a]" {
		t.Errorf("counter calls = %v", counted)
	}
}

// TestErrorsTableStrictMode: on a strict-mode server the arguments are used
// in the documented order (consumerName, eventID, errMsg); the upstream
// dead-letter consumer swapped them, which strict mode rejects.
func TestErrorsTableStrictMode(t *testing.T) {
	_, dsn := dbtest.OpenDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES'"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var mode string
	if err := db.QueryRowContext(t.Context(), "SELECT @@SESSION.sql_mode").Scan(&mode); err != nil || !strings.Contains(mode, "STRICT") {
		t.Fatalf("sql_mode = %q, %v; want strict", mode, err)
	}
	rsqltest.CreateErrorsTables(t, db)

	var f reflex.ErrorInsertFunc = rsql.NewErrorsTable().ToErrorInsertFunc(db)
	if err := f(t.Context(), "my-consumer", "42", "failed"); err != nil {
		t.Fatalf("ErrorInsertFunc(consumer, eventID, msg) in strict mode: %v", err)
	}
	rows := errRows(t, db, "consumer_errors")
	if len(rows) != 1 || rows[0].consumer != "my-consumer" || rows[0].eventID != 42 {
		t.Errorf("rows = %+v", rows)
	}
	// The swapped order fails clearly, before reaching the server.
	err = f(t.Context(), "42", "my-consumer", "failed")
	if !errors.Is(err, rsql.ErrDeadLetter) || !errors.Is(err, rsql.ErrInvalidIntID) {
		t.Errorf("swapped arguments = %v, want ErrDeadLetter and ErrInvalidIntID", err)
	}
	// And the server itself refuses a non-integer event id in strict mode.
	_, err = db.ExecContext(t.Context(), "INSERT INTO consumer_errors (consumer, event_id, error_msg, created_at, updated_at, error_status) VALUES ('42', 'my-consumer', '', now(), now(), 1)")
	if err == nil {
		t.Errorf("strict mode accepted a consumer name as event_id")
	}
}

// TestErrorsTableNotifyAfterCommit: the event's notify function and the
// counter run only after the transaction committed.
func TestErrorsTableNotifyAfterCommit(t *testing.T) {
	db := dbtest.Open(t)
	rsqltest.CreateErrorsTables(t, db)
	events := rsql.NewEventsTable("consumer_errors_events", rsql.WithEventMetadataField("metadata"))
	visible := func() int {
		var n int
		if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM consumer_errors_events").Scan(&n); err != nil {
			t.Error(err)
		}
		return n
	}
	var notified, counted atomic.Int64
	var atNotify, atCount atomic.Int64
	insert := rsql.NewErrorsTable(
		rsql.WithErrorEventInserter(func(ctx context.Context, dbc rsql.DBC, fid string, typ reflex.EventType, md []byte) (rsql.NotifyFunc, error) {
			if _, ok := dbc.(*sql.Tx); !ok {
				t.Errorf("event inserted through %T, want the *sql.Tx", dbc)
			}
			if _, err := events.InsertWithMetadata(ctx, dbc, fid, typ, md); err != nil {
				return nil, err
			}
			if n := visible(); n != 0 {
				t.Errorf("event visible to others before commit")
			}
			return func() { notified.Add(1); atNotify.Store(int64(visible())) }, nil
		}),
		rsql.WithErrorCounter(func(string) { counted.Add(1); atCount.Store(int64(visible())) }),
	).ToErrorInsertFunc(db)
	if err := insert(t.Context(), "c", "1", "m"); err != nil {
		t.Fatal(err)
	}
	if notified.Load() != 1 || atNotify.Load() != 1 || counted.Load() != 1 || atCount.Load() != 1 {
		t.Errorf("notify %d (saw %d events), counter %d (saw %d); want 1 each after commit",
			notified.Load(), atNotify.Load(), counted.Load(), atCount.Load())
	}
}

// TestErrorsTableFailures: every failure wraps ErrDeadLetter, rolls the
// error row back and neither notifies nor counts.
func TestErrorsTableFailures(t *testing.T) {
	db := dbtest.Open(t)
	rsqltest.CreateErrorsTables(t, db)
	var counted atomic.Int64
	counter := rsql.WithErrorCounter(func(string) { counted.Add(1) })
	boom := errors.New("boom")

	cases := []struct {
		name            string
		table           *rsql.ErrorsTable
		consumer, event string
		db              *sql.DB
		want            []error // besides ErrDeadLetter
		wantMsg         string
	}{
		{"empty consumer", rsql.NewErrorsTable(counter), "", "1", db, nil, "empty consumer"},
		{"non-int event id", rsql.NewErrorsTable(counter), "c", "abc", db, []error{rsql.ErrInvalidIntID}, `"abc"`},
		{"negative event id", rsql.NewErrorsTable(counter), "c", "-1", db, []error{rsql.ErrInvalidIntID}, `"-1"`},
		{"nil db", rsql.NewErrorsTable(counter), "c", "1", nil, nil, "nil *sql.DB"},
		{"missing errors table", rsql.NewErrorsTable(counter, rsql.WithErrorTableName("nope")), "c", "1", db, nil, "nope"},
		{"missing events table", rsql.NewErrorsTable(counter,
			rsql.WithErrorEventsTable(rsql.NewEventsTable("no_events", rsql.WithEventMetadataField("metadata")))),
			"c", "1", db, nil, "no_events"},
		{"event inserter error", rsql.NewErrorsTable(counter,
			rsql.WithErrorEventInserter(func(context.Context, rsql.DBC, string, reflex.EventType, []byte) (rsql.NotifyFunc, error) {
				return func() { t.Error("notified after a failure") }, boom
			})), "c", "1", db, []error{boom}, "insert error event"},
		{"inserter error", rsql.NewErrorsTable(counter,
			rsql.WithErrorInserter(func(context.Context, rsql.DBC, string, string, string, reflex.ErrorStatus) (string, error) {
				return "", boom
			})), "c", "1", db, []error{boom}, "boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.table.ToErrorInsertFunc(tc.db)(t.Context(), tc.consumer, tc.event, "msg")
			if !errors.Is(err, rsql.ErrDeadLetter) {
				t.Fatalf("err = %v, want ErrDeadLetter", err)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want it to wrap %v", err, w)
				}
			}
			if msg := err.Error(); !strings.Contains(msg, "dead lettering error failed") || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("err = %q, want it to contain %q", msg, tc.wantMsg)
			}
		})
	}
	if rows := errRows(t, db, "consumer_errors"); len(rows) != 0 {
		t.Errorf("failed inserts left rows: %+v", rows)
	}
	if n := counted.Load(); n != 0 {
		t.Errorf("counter called %d times for failures", n)
	}
}

func TestErrorsTableEventOptions(t *testing.T) {
	db := dbtest.Open(t)
	rsqltest.CreateErrorsTables(t, db)
	rsqltest.CreateEventsTable(t, db, "other_events")
	ctx := t.Context()

	// Record only: no event, not even an events table needed.
	if err := rsql.NewErrorsTable(rsql.WithErrorRecordOnly(),
		rsql.WithErrorEventsTable(rsql.NewEventsTable("missing", rsql.WithEventMetadataField("metadata"))),
		rsql.WithErrorRecordOnly()).ToErrorInsertFunc(db)(ctx, "c", "1", "m"); err != nil {
		t.Fatal(err)
	}
	if evs := errEvents(t, db, "consumer_errors_events"); len(evs) != 0 {
		t.Errorf("record-only inserted events: %+v", evs)
	}

	// The last event option wins: WithErrorEventsTable after record-only.
	other := rsql.NewEventsTable("other_events", rsql.WithEventMetadataField("metadata"))
	if err := rsql.NewErrorsTable(rsql.WithErrorRecordOnly(), rsql.WithErrorEventsTable(other)).
		ToErrorInsertFunc(db)(ctx, "c", "2", "m"); err != nil {
		t.Fatal(err)
	}
	if evs := errEvents(t, db, "other_events"); len(evs) != 1 || evs[0].metadata != "c" {
		t.Errorf("other_events = %+v, want one event", evs)
	}

	// A custom inserter receives the arguments in order, inside the tx,
	// and its id becomes the event's foreign id.
	var got []string
	ins := func(ctx context.Context, dbc rsql.DBC, consumer, eventID, msg string, status reflex.ErrorStatus) (string, error) {
		if _, ok := dbc.(*sql.Tx); !ok {
			t.Errorf("inserter got %T, want *sql.Tx", dbc)
		}
		got = []string{consumer, eventID, msg, fmt.Sprint(int(status))}
		return "777", nil
	}
	if err := rsql.NewErrorsTable(rsql.WithErrorInserter(ins), rsql.WithErrorEventsTable(other)).
		ToErrorInsertFunc(db)(ctx, "cons", "not-an-int", "msg"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[cons not-an-int msg 1]" {
		t.Errorf("inserter args = %v", got)
	}
	if evs := errEvents(t, db, "other_events"); len(evs) != 2 || evs[1].foreignID != "777" {
		t.Errorf("other_events = %+v, want the second with foreign id 777", evs)
	}
}

func TestErrorsTableCustomColumns(t *testing.T) {
	db := dbtest.Open(t)
	rsqltest.CreateErrorsTables(t, db)
	_, err := db.ExecContext(t.Context(), "CREATE TABLE dead (pk BIGINT AUTO_INCREMENT PRIMARY KEY, who VARBINARY(255) NOT NULL, "+
		"evt BIGINT NOT NULL, msg TEXT NOT NULL, c DATETIME(3) NOT NULL, u DATETIME(3) NOT NULL, st INT NOT NULL, UNIQUE (who, evt))")
	if err != nil {
		t.Fatal(err)
	}
	et := rsql.NewErrorsTable(rsql.WithErrorTableName("`dead`"), rsql.WithErrorIDField("pk"), rsql.WithErrorEventConsumerField("who"),
		rsql.WithErrorEventIDField("evt"), rsql.WithErrorMsgField("msg"), rsql.WithErrorCreatedAtField("c"),
		rsql.WithErrorUpdatedAtField("u"), rsql.WithErrorStatusField("st"))
	f := et.ToErrorInsertFunc(db)
	for range 2 {
		if err := f(t.Context(), "w", "5", "m"); err != nil {
			t.Fatal(err)
		}
	}
	var pk, n int
	if err := db.QueryRowContext(t.Context(), "SELECT MAX(pk), COUNT(*) FROM dead WHERE who = 'w' AND evt = 5 AND st = 1").Scan(&pk, &n); err != nil || n != 1 {
		t.Fatalf("dead rows = %d, %v; want 1", n, err)
	}
	evs := errEvents(t, db, "consumer_errors_events")
	if len(evs) != 2 || evs[0].foreignID != fmt.Sprint(pk) || evs[1].foreignID != fmt.Sprint(pk) {
		t.Errorf("events = %+v, want two pointing at %d", evs, pk)
	}
}

func TestErrorsTableDefaultCounter(t *testing.T) {
	db := dbtest.Open(t)
	rsqltest.CreateErrorsTables(t, db)
	name := fmt.Sprintf("dead-letter-metric-%d", curSeq.Add(1))
	c := metrics.ConsumerDeadLettered.WithLabelValues(name)
	f := rsql.NewErrorsTable().ToErrorInsertFunc(db)
	for i := range 3 {
		if err := f(t.Context(), name, fmt.Sprint(i), "m"); err != nil {
			t.Fatal(err)
		}
	}
	if got := counterValue(t, c); got != 3 {
		t.Errorf("reflex_consumer_dead_lettered_events_count{consumer_name=%q} = %v, want 3", name, got)
	}
}

// TestErrorsTableConcurrentDuplicates: concurrent records of the same
// (consumer, event) all succeed and share one row.
func TestErrorsTableConcurrentDuplicates(t *testing.T) {
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) { errorsTableConcurrentDuplicates(t, e) })
	}
}

func errorsTableConcurrentDuplicates(t *testing.T, e engine) {
	db := e.openDB(t)
	rsqltest.Tables{Dialect: e.d}.CreateErrorsTables(t, db)
	f := rsql.NewErrorsTable(rsql.WithErrorsDialect(e.d)).ToErrorInsertFunc(db)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := f(t.Context(), "c", "9", fmt.Sprint("attempt ", i)); err != nil {
				t.Errorf("insert %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	rows := errRows(t, db, "consumer_errors")
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	for _, e := range errEvents(t, db, "consumer_errors_events") {
		if e.foreignID != fmt.Sprint(rows[0].id) {
			t.Errorf("event foreign id %s, want %d", e.foreignID, rows[0].id)
		}
	}
}

func TestIsDuplicateErrorInsertion(t *testing.T) {
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) { isDuplicateErrorInsertion(t, e) })
	}
}

func isDuplicateErrorInsertion(t *testing.T, e engine) {
	db := e.openDB(t)
	rsqltest.Tables{Dialect: e.d}.CreateErrorsTables(t, db)
	q := "INSERT INTO consumer_errors (consumer, event_id, error_msg, created_at, updated_at, error_status) VALUES ('c', 1, '', now(), now(), 1)"
	if _, err := db.ExecContext(t.Context(), q); err != nil {
		t.Fatal(err)
	}
	_, err := db.ExecContext(t.Context(), q)
	if !rsql.IsDuplicateErrorInsertion(err) || !rsql.IsDuplicateErrorInsertion(fmt.Errorf("wrapped: %w", err)) {
		t.Errorf("IsDuplicateErrorInsertion(%v) = false", err)
	}
	_, other := db.ExecContext(t.Context(), "INSERT INTO missing VALUES (1)")
	for _, e := range []error{nil, errors.New("1062"), other} {
		if rsql.IsDuplicateErrorInsertion(e) {
			t.Errorf("IsDuplicateErrorInsertion(%v) = true", e)
		}
	}
}

func TestErrorsTableConstructionPanics(t *testing.T) {
	cases := []struct {
		name string
		f    func()
	}{
		{"table", func() { rsql.NewErrorsTable(rsql.WithErrorTableName("a b")) }},
		{"id", func() { rsql.NewErrorsTable(rsql.WithErrorIDField("")) }},
		{"consumer", func() { rsql.NewErrorsTable(rsql.WithErrorEventConsumerField("x;")) }},
		{"event id", func() { rsql.NewErrorsTable(rsql.WithErrorEventIDField("x y")) }},
		{"msg", func() { rsql.NewErrorsTable(rsql.WithErrorMsgField("'")) }},
		{"created", func() { rsql.NewErrorsTable(rsql.WithErrorCreatedAtField("a.b.c")) }},
		{"updated", func() { rsql.NewErrorsTable(rsql.WithErrorUpdatedAtField("-")) }},
		{"status", func() { rsql.NewErrorsTable(rsql.WithErrorStatusField("`")) }},
		{"nil option", func() { rsql.NewErrorsTable(nil) }},
		{"nil inserter", func() { rsql.NewErrorsTable(rsql.WithErrorInserter(nil)) }},
		{"nil event inserter", func() { rsql.NewErrorsTable(rsql.WithErrorEventInserter(nil)) }},
		{"nil events table", func() { rsql.NewErrorsTable(rsql.WithErrorEventsTable(nil)) }},
		{"events table without metadata", func() { rsql.NewErrorsTable(rsql.WithErrorEventsTable(rsql.NewEventsTable("e"))) }},
		{"schema", func() { rsql.ErrorsSchema(rsql.MySQL, "") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || !strings.HasPrefix(s, "rsql: ") {
					t.Errorf("panic = %v, want an rsql: message", r)
				}
			}()
			tc.f()
		})
	}
}
