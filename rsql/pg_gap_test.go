package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// The gap cases that only PostgreSQL has: an ID is taken from the
// sequence while the INSERT runs, and no READ UNCOMMITTED level shows a
// row still being written.

// pgFillingTable returns a fresh PostgreSQL database and an events table
// whose gaps FillGaps fills.
func pgFillingTable(t *testing.T) (*sql.DB, *rsql.EventsTable) {
	t.Helper()
	db := postgres.openDB(t)
	table := newEngineTable(t, postgres, db)
	if err := rsql.FillGaps(db, table); err != nil {
		t.Fatal(err)
	}
	stopGaps(t, table)
	return db, table
}

// pgHold is an advisory lock held by a session of the test: rows whose
// foreign ID starts with "slow" wait for it in a BEFORE INSERT trigger,
// after their ID was taken from the sequence and before the row is
// written (a slow trigger, a paused server process).
type pgHold struct {
	conn *sql.Conn
}

const pgHoldKey = 4242

// holdSlowRows installs the trigger on table and takes the lock.
func holdSlowRows(t *testing.T, db *sql.DB, table *rsql.EventsTable) *pgHold {
	t.Helper()
	ctx := t.Context()
	for _, q := range []string{
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION slow_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.foreign_id LIKE 'slow%%' THEN
    PERFORM pg_advisory_lock_shared(%d);
    PERFORM pg_advisory_unlock_shared(%d);
  END IF;
  RETURN NEW;
END $$`, pgHoldKey, pgHoldKey),
		"CREATE TRIGGER slow_rows BEFORE INSERT ON " + table.QuotedName() + " FOR EACH ROW EXECUTE FUNCTION slow_rows()",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SELECT pg_advisory_lock(%d)", pgHoldKey)); err != nil {
		t.Fatal(err)
	}
	h := &pgHold{conn: conn}
	t.Cleanup(h.release)
	return h
}

// release lets the held rows be written.
func (h *pgHold) release() {
	_, _ = h.conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock_all()")
}

// waitWaiting waits until a session runs a statement containing text
// that waits for a lock of the given type ("advisory", "transactionid").
func waitWaiting(t *testing.T, db *sql.DB, text, lock string) {
	t.Helper()
	err := testguard.Poll(time.Minute, 5*time.Millisecond, "a statement waiting for a "+lock+" lock", func() (int64, bool, error) {
		var n int64
		err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() `+
			`AND wait_event_type = 'Lock' AND wait_event = $1 AND position($2 in query) > 0 AND pid <> pg_backend_pid()`, lock, text).Scan(&n)
		return 0, n > 0, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// recvAsync receives events from cl on a goroutine, until it has n.
func recvAsync(cl reflex.StreamClient, n int) <-chan []*reflex.Event {
	ch := make(chan []*reflex.Event, 1)
	go func() {
		var got []*reflex.Event
		for len(got) < n {
			e, err := cl.Recv()
			if err != nil {
				break
			}
			got = append(got, e)
		}
		ch <- got
	}()
	return ch
}

// fids returns "id:foreignID" of each event.
func fids(evs []*reflex.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.ID+":"+e.ForeignID)
	}
	return strings.Join(s, ",")
}

// TestPGGapWriterSleepsBeforeCommit: a transaction has inserted (ID 2)
// and sleeps before its commit while ID 3 commits. The filler waits for
// it on the ID's unique index instead of filling the ID; the stream
// delivers 2 then 3 once it commits, and nothing is filled.
func TestPGGapWriterSleepsBeforeCommit(t *testing.T) {
	db, table := pgFillingTable(t)
	filled := metrics.NewEventsTable(table.Name()).GapFilled
	before := value(filled)
	insert(t, db, table, reflex.Event{ForeignID: "a", Type: testType(1)})
	tx, id := openTx(t, db, table, "b")
	if id != 2 {
		t.Fatalf("open transaction has ID %d, want 2", id)
	}
	insert(t, db, table, reflex.Event{ForeignID: "c", Type: testType(1)})

	cl := openStream(t, table, db, "")
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("first event %s, want 1", e.ID)
	}
	got := recvAsync(cl, 2)
	// The filler's noop INSERT of ID 2 waits for the writer.
	waitWaiting(t, db, "OVERRIDING SYSTEM VALUE", "transactionid")
	select {
	case evs := <-got:
		t.Fatalf("streamed %s while ID 2 is being written", fids(evs))
	default:
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit of the writer the filler waited for: %v", err)
	}
	select {
	case evs := <-got:
		if fids(evs) != "2:b,3:c" {
			t.Fatalf("streamed %s, want 2:b,3:c", fids(evs))
		}
	case <-time.After(guard):
		t.Fatal("no events after the commit")
	}
	if d := value(filled) - before; d != 0 {
		t.Errorf("%v IDs filled, want none", d)
	}
}

// TestPGGapNextvalRolledBack: IDs taken by nextval in a transaction that
// rolled back (and by a rolled-back insert) are never written: the filler
// fills them after its grace period and the stream passes them.
func TestPGGapNextvalRolledBack(t *testing.T) {
	db, table := pgFillingTable(t)
	filled := metrics.NewEventsTable(table.Name()).GapFilled
	before := value(filled)
	insert(t, db, table, reflex.Event{ForeignID: "a", Type: testType(1)})
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := tx.QueryRow("SELECT nextval(pg_get_serial_sequence($1, 'id'))", table.QuotedName()).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if id != 2 {
		t.Fatalf("nextval = %d, want 2", id)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	tx, id = openTx(t, db, table, "rolled back")
	if id != 3 {
		t.Fatalf("rolled-back insert has ID %d, want 3", id)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	insert(t, db, table, reflex.Event{ForeignID: "d", Type: testType(1)})

	cl := openStream(t, table, db, "")
	for _, want := range []string{"1:a", "4:d"} {
		if e := recvWithin(t, cl); e.ID+":"+e.ForeignID != want {
			t.Fatalf("got %s:%s, want %s", e.ID, e.ForeignID, want)
		}
	}
	if d := value(filled) - before; d != 2 {
		t.Errorf("%v IDs filled, want 2", d)
	}
}

// TestPGGapInsertManyRunning: a multi-row InsertMany is still running
// (its first row written, its second row's ID taken but the row not
// written) when a later ID commits and the filler looks at its IDs. The
// filler waits for the first row's transaction, so the InsertMany
// completes and commits, and the stream delivers every row in order.
func TestPGGapInsertManyRunning(t *testing.T) {
	db, table := pgFillingTable(t)
	defer rsql.SetGapConfirm(time.Millisecond)() // the race is the trigger's, not the grace's
	checked := make(chan struct{}, 1)
	rsql.SetFillCheckHook(func() {
		select {
		case checked <- struct{}{}:
		default:
		}
	})
	defer rsql.SetFillCheckHook(nil)
	filled := metrics.NewEventsTable(table.Name()).GapFilled
	before := value(filled)
	insert(t, db, table, reflex.Event{ForeignID: "a", Type: testType(1)})
	hold := holdSlowRows(t, db, table)

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	many := make(chan error, 1)
	go func() {
		_, err := table.InsertMany(context.Background(), tx, []rsql.EventToInsert{
			{ForeignID: "m1", Type: testType(1)}, {ForeignID: "slow-m2", Type: testType(1)}, {ForeignID: "m3", Type: testType(1)},
		})
		many <- err
	}()
	waitWaiting(t, db, "INSERT INTO", "advisory") // row m2 has ID 3, row m1 is written
	insert(t, db, table, reflex.Event{ForeignID: "b", Type: testType(1)})

	cl := openStream(t, table, db, "")
	if e := recvWithin(t, cl); e.ID != "1" {
		t.Fatalf("first event %s, want 1", e.ID)
	}
	got := recvAsync(cl, 4)
	select {
	case <-checked:
	case <-time.After(guard):
		t.Fatal("the filler never looked at the gap")
	}
	waitWaiting(t, db, "OVERRIDING SYSTEM VALUE", "transactionid")
	hold.release()
	if err := <-many; err != nil {
		t.Fatalf("InsertMany while the filler looked at its IDs: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case evs := <-got:
		if fids(evs) != "2:m1,3:slow-m2,4:b,5:m3" {
			t.Fatalf("streamed %s, want 2:m1,3:slow-m2,4:b,5:m3", fids(evs))
		}
	case <-time.After(guard):
		t.Fatal("no events after the commit")
	}
	if d := value(filled) - before; d != 0 {
		t.Errorf("%v IDs filled, want none", d)
	}
}

// TestPGGapFilledWriterFails: the race that remains. A writer has taken
// ID 2 but not written its row when ID 3 commits, for longer than the
// filler's grace: the filler's noop takes ID 2, and the writer's INSERT
// fails with ErrIDFilled. Its transaction rolls back; the stream never
// delivers its event, nor the noop, and every event it delivers is one
// the table holds.
func TestPGGapFilledWriterFails(t *testing.T) {
	db, table := pgFillingTable(t)
	defer rsql.SetGapConfirm(time.Millisecond)()
	filled := metrics.NewEventsTable(table.Name()).GapFilled
	before := value(filled)
	insert(t, db, table, reflex.Event{ForeignID: "a", Type: testType(1)})
	hold := holdSlowRows(t, db, table)

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	writer := make(chan error, 1)
	go func() {
		_, err := table.Insert(context.Background(), tx, "slow-writer", testType(1))
		writer <- err
	}()
	waitWaiting(t, db, "INSERT INTO", "advisory")
	insert(t, db, table, reflex.Event{ForeignID: "c", Type: testType(1)})

	cl := openStream(t, table, db, "")
	for _, want := range []string{"1:a", "3:c"} {
		if e := recvWithin(t, cl); e.ID+":"+e.ForeignID != want {
			t.Fatalf("got %s:%s, want %s", e.ID, e.ForeignID, want)
		}
	}
	if d := value(filled) - before; d != 1 {
		t.Errorf("%v IDs filled, want 1", d)
	}
	hold.release()
	err = <-writer
	if !errors.Is(err, rsql.ErrIDFilled) {
		t.Fatalf("writer whose ID was filled: Insert = %v, want ErrIDFilled", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	insert(t, db, table, reflex.Event{ForeignID: "d", Type: testType(1)})
	if e := recvWithin(t, cl); e.ID+":"+e.ForeignID != "4:d" {
		t.Fatalf("got %s:%s after the failed writer, want 4:d", e.ID, e.ForeignID)
	}
	// What was delivered is what the table holds, besides the noop.
	var held []string
	rows, err := db.Query("SELECT id, foreign_id FROM " + table.QuotedName() + " WHERE type <> 0 ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var fid string
		if err := rows.Scan(&id, &fid); err != nil {
			t.Fatal(err)
		}
		held = append(held, fmt.Sprintf("%d:%s", id, fid))
	}
	if got := strings.Join(held, ","); got != "1:a,3:c,4:d" {
		t.Errorf("table holds %s, want 1:a,3:c,4:d (the delivered events)", got)
	}
}
