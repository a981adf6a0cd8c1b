package rsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest"
)

// newSQLiteTable creates an events table in a SQLite database.
func newSQLiteTable(t testing.TB, db *sql.DB, opts ...rsql.EventsOption) *rsql.EventsTable {
	t.Helper()
	name := fmt.Sprintf("events_%d", tableSeq.Add(1))
	sqlitetest.Tables.CreateEventsTable(t, db, name)
	all := append([]rsql.EventsOption{rsql.WithEventsDialect(rsql.SQLite),
		rsql.WithEventMetadataField("metadata"), rsql.WithEventTraceField("trace")}, opts...)
	return rsql.NewEventsTable(name, all...)
}

func TestSQLiteStreamConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []rsql.EventsOption
	}{
		{"Cache", nil},
		{"NoCache", []rsql.EventsOption{rsql.WithoutEventsCache()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := sqlitetest.Open(t)
			reflextest.TestStreamFunc(t, reflextest.StreamHarness{
				New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
					table := newSQLiteTable(t, db, tc.opts...)
					return table.ToStream(db), func(t *testing.T, events ...reflex.Event) {
						insert(t, db, table, events...)
					}
				},
				InvalidCursors: []string{"abc", "-1", "9223372036854775808"},
			})
		})
	}
}

func TestSQLiteInsertMany(t *testing.T) {
	db := sqlitetest.Open(t)
	table := newSQLiteTable(t, db)
	evs := make([]rsql.EventToInsert, 20_000) // more parameters than one statement takes
	for i := range evs {
		evs[i] = rsql.EventToInsert{ForeignID: strconv.Itoa(i), Type: testType(1), MetaData: []byte{byte(i)}}
	}
	if _, err := table.InsertMany(t.Context(), db, evs); err != nil {
		t.Fatal(err)
	}
	got := drain(t, table.ToStream(db), "")
	if len(got) != len(evs) {
		t.Fatalf("streamed %d events, want %d", len(got), len(evs))
	}
	for i, e := range got {
		if e.ForeignID != strconv.Itoa(i) || len(e.MetaData) != 1 || e.MetaData[0] != byte(i) || e.Timestamp.IsZero() {
			t.Fatalf("event %d = %+v", i, e)
		}
	}
}

// TestSQLiteGapFilled: SQLite reuses rolled-back IDs, so gaps come from
// explicit IDs or deletes; the filler fills them.
func TestSQLiteGapFilled(t *testing.T) {
	db := sqlitetest.Open(t)
	table := newSQLiteTable(t, db)
	for _, id := range []int{1, 3} {
		if _, err := db.Exec(`INSERT INTO "`+table.Name()+`" (id, foreign_id, timestamp, type) VALUES (?, 'f', strftime('%Y-%m-%d %H:%M:%f', 'now'), 1)`, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := drain(t, table.ToStream(db), ""); !equal(ids(got), []string{"1"}) {
		t.Fatalf("before filling: %v, want [1]", ids(got))
	}
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	cl := openStream(t, table, db, "")
	for _, want := range []string{"1", "3"} {
		if e := recvWithin(t, cl); e.ID != want {
			t.Fatalf("got %s, want %s", e.ID, want)
		}
	}
	// A rolled-back insert leaves no gap: its ID is reused.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := table.Insert(t.Context(), tx, "rolled back", testType(1)); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback()
	insert(t, db, table, reflex.Event{ForeignID: "next", Type: testType(1)})
	if e := recvWithin(t, cl); e.ID != "4" || e.ForeignID != "next" {
		t.Fatalf("got %s %q, want 4 \"next\"", e.ID, e.ForeignID)
	}
}

// TestSQLiteConcurrentWriters: with writers serialised by SQLite, a
// tailing consumer sees every committed event in order.
func TestSQLiteConcurrentWriters(t *testing.T) {
	db := sqlitetest.Open(t)
	table := newSQLiteTable(t, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	const writers, each = 4, 50
	cl := openStream(t, table, db, "")
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				tx, err := db.BeginTx(context.Background(), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := table.Insert(context.Background(), tx, fmt.Sprintf("%d-%d", w, i), testType(1)); err != nil {
					_ = tx.Rollback()
					t.Error(err)
					return
				}
				if i%5 == 0 {
					_ = tx.Rollback()
					continue
				}
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	want := writers * each * 4 / 5
	for i := 1; i <= want; i++ {
		if e := recvWithin(t, cl); e.ID != strconv.Itoa(i) {
			t.Fatalf("event %d has ID %s", i, e.ID)
		}
	}
	wg.Wait()
}

func TestSQLiteLag(t *testing.T) {
	db := sqlitetest.Open(t)
	table := newSQLiteTable(t, db)
	insertN(t, db, table, 1, 4)
	if _, err := db.Exec(`UPDATE "` + table.Name() + `" SET timestamp = strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hour') WHERE id <= 2`); err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]rsql.EventsOption{{rsql.WithoutEventsCache()}, nil} {
		tb := table.Clone(opts...)
		if got := drain(t, tb.ToStream(db), "", reflex.WithStreamLag(time.Minute)); !equal(ids(got), seq(1, 2)) {
			t.Errorf("lag 1 min: %v, want [1 2]", ids(got))
		}
	}
}

func TestSQLiteSchemaFile(t *testing.T) {
	db := sqlitetest.Open(t)
	b, err := os.ReadFile("schema/sqlite/events.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(b)); err != nil {
		t.Fatalf("events.sql: %v", err)
	}
	table := rsql.NewEventsTable("events", rsql.WithEventsDialect(rsql.SQLite), rsql.WithEventMetadataField("metadata"))
	if _, err := table.InsertWithMetadata(t.Context(), db, "1", testType(1), []byte("m")); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, table.ToStream(db), ""); len(got) != 1 || string(got[0].MetaData) != "m" || got[0].Timestamp.IsZero() {
		t.Fatalf("streamed %+v", got)
	}
}
