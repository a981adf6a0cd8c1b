package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// redriveFixture is an events table with events 1..n and an errors table.
type redriveFixture struct {
	opsDB
	events *rsql.EventsTable
	errs   *rsql.ErrorsTable
	stream reflex.StreamFunc
}

func newRedriveFixture(t *testing.T, e opsDB, n int) *redriveFixture {
	t.Helper()
	ms := make([]int, n)
	for i := range ms {
		ms[i] = i
	}
	f := &redriveFixture{opsDB: e, events: e.seedEvents(t, minutes(ms...)...)}
	e.tables.CreateErrorsTables(t, e.db)
	f.errs = rsql.NewErrorsTable(rsql.WithErrorsDialect(e.d))
	f.stream = f.events.ToStream(e.db)
	return f
}

// record records an error of consumer for each event and returns the row
// ids.
func (f *redriveFixture) record(t *testing.T, consumer string, events ...int) []int64 {
	t.Helper()
	insert := f.errs.ToErrorInsertFunc(f.db)
	for _, ev := range events {
		if err := insert(t.Context(), consumer, strconv.Itoa(ev), "failed "+strconv.Itoa(ev)); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := f.errs.ListErrors(t.Context(), f.db, rsql.ErrorsQuery{Consumer: consumer, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range rows {
		if slices.Contains(events, int(r.EventIDInt())) {
			ids = append(ids, r.IDInt())
		}
	}
	return ids
}

// statuses returns "id:status" of the rows ids.
func (f *redriveFixture) statuses(t *testing.T, ids ...int64) string {
	t.Helper()
	rows, err := f.errs.ListErrors(t.Context(), f.db, rsql.ErrorsQuery{IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, r.ID+":"+rsql.ErrorStatusName(r.Status))
	}
	return fmt.Sprint(out)
}

// flaky is a consumer that fails each event of failFirst on its first
// delivery and counts its successful deliveries.
type flaky struct {
	name      string
	mu        sync.Mutex
	failFirst map[string]bool
	ok        map[string]int
}

func newFlaky(name string, failFirst ...string) *flaky {
	f := &flaky{name: name, failFirst: map[string]bool{}, ok: map[string]int{}}
	for _, id := range failFirst {
		f.failFirst[id] = true
	}
	return f
}

func (c *flaky) Name() string { return c.name }

func (c *flaky) Consume(_ context.Context, e *reflex.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failFirst[e.ID] {
		delete(c.failFirst, e.ID)
		return fmt.Errorf("boom at event %s", e.ID)
	}
	c.ok[e.ID]++
	return nil
}

func (c *flaky) successes() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.ok)
}

func TestRedrive(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		f := newRedriveFixture(t, e, 5)
		ids := f.record(t, "c", 2, 4)
		other := f.record(t, "other", 3)
		c := newFlaky("c", "4")

		// Nothing requested: nothing delivered.
		if res, err := f.errs.Redrive(ctx, f.db, f.stream, c); err != nil || len(res.Resolved)+len(res.Failed) != 0 {
			t.Fatalf("Redrive without requests = %+v, %v", res, err)
		}
		rows, err := f.errs.RequestRedrive(ctx, f.db, "c", ids...)
		if err != nil || len(rows) != 2 || rows[0].Status != rsql.ErrorRedriveRequested {
			t.Fatalf("RequestRedrive = %+v, %v", rows, err)
		}
		res, err := f.errs.Redrive(ctx, f.db, f.stream, c)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(res.Resolved) != fmt.Sprint(ids[:1]) || len(res.Failed) != 1 || res.Failed[0].ID != ids[1] || res.Failed[0].EventID != 4 {
			t.Fatalf("Redrive = %+v, want row %d resolved and row %d failed", res, ids[0], ids[1])
		}
		want := fmt.Sprintf("[%d:resolved %d:recorded]", ids[0], ids[1])
		if got := f.statuses(t, ids...); got != want {
			t.Errorf("statuses = %s, want %s", got, want)
		}
		if rows, _ := f.errs.ListErrors(ctx, f.db, rsql.ErrorsQuery{IDs: ids[1:]}); rows[0].Message != "boom at event 4" {
			t.Errorf("message after the failed redrive = %q", rows[0].Message)
		}
		// Request again: the second delivery succeeds.
		if _, err := f.errs.RequestRedrive(ctx, f.db, "c", ids[1]); err != nil {
			t.Fatal(err)
		}
		if res, err := f.errs.Redrive(ctx, f.db, f.stream, c); err != nil || fmt.Sprint(res.Resolved) != fmt.Sprint(ids[1:]) {
			t.Fatalf("second Redrive = %+v, %v", res, err)
		}
		if got := c.successes(); got != "map[2:1 4:1]" {
			t.Errorf("successful deliveries = %s, want each event once", got)
		}
		// Resolved rows are refused and left alone; so are other
		// consumers' rows.
		if _, err := f.errs.RequestRedrive(ctx, f.db, "c", ids...); !errors.Is(err, rsql.ErrErrorClosed) {
			t.Errorf("RequestRedrive of resolved rows = %v, want ErrErrorClosed", err)
		}
		if _, err := f.errs.RequestRedrive(ctx, f.db, "c", other...); !errors.Is(err, rsql.ErrErrorNotFound) {
			t.Errorf("RequestRedrive of another consumer's row = %v, want ErrErrorNotFound", err)
		}
		if _, err := f.errs.Redrive(ctx, f.db, f.stream, c, rsql.WithRedriveIDs(ids[0])); !errors.Is(err, rsql.ErrErrorClosed) {
			t.Errorf("Redrive of a resolved row = %v, want ErrErrorClosed", err)
		}
		if _, err := f.errs.RequestRedrive(ctx, f.db, "", 9999); !errors.Is(err, rsql.ErrErrorNotFound) {
			t.Errorf("RequestRedrive of a missing row = %v, want ErrErrorNotFound", err)
		}
		if got := f.statuses(t, ids...); got != fmt.Sprintf("[%d:resolved %d:resolved]", ids[0], ids[1]) {
			t.Errorf("statuses after refused requests = %s", got)
		}
		if got := c.successes(); got != "map[2:1 4:1]" {
			t.Errorf("successful deliveries after refused requests = %s", got)
		}
		// Discard.
		if rows, err := f.errs.Discard(ctx, f.db, "", other...); err != nil || rows[0].Status != rsql.ErrorDiscarded {
			t.Errorf("Discard = %+v, %v", rows, err)
		}
		if _, err := f.errs.Discard(ctx, f.db, "", other...); !errors.Is(err, rsql.ErrErrorClosed) {
			t.Errorf("Discard of a discarded row = %v, want ErrErrorClosed", err)
		}
		// An event the stream no longer has fails its row.
		gone := f.record(t, "c", 99)
		if res, err := f.errs.Redrive(ctx, f.db, f.stream, c, rsql.WithRedriveIDs(gone...)); err != nil ||
			len(res.Failed) != 1 || !errors.Is(res.Failed[0].Err, rsql.ErrEventNotFound) {
			t.Errorf("Redrive of a missing event = %+v, %v; want a failure wrapping ErrEventNotFound", res, err)
		}
	})
}

// TestRedriveConcurrent runs redrivers side by side (as replicas of a
// service would): every row is resolved exactly once.
func TestRedriveConcurrent(t *testing.T) {
	db := dbtest.Open(t)
	e := opsDB{"mysql", db, rsql.MySQL, rsqltest.Tables{}}
	const n = 40
	f := newRedriveFixture(t, e, n)
	evs := make([]int, n)
	for i := range evs {
		evs[i] = i + 1
	}
	ids := f.record(t, "c", evs...)
	if _, err := f.errs.RequestRedrive(t.Context(), db, "c", ids...); err != nil {
		t.Fatal(err)
	}
	c := newFlaky("c")
	var (
		mu       sync.Mutex
		resolved []int64
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			res, err := f.errs.Redrive(t.Context(), db, f.stream, c)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			resolved = append(resolved, res.Resolved...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(resolved)
	if fmt.Sprint(resolved) != fmt.Sprint(ids) {
		t.Errorf("resolved %v, want each of %v once", resolved, ids)
	}
	if got := f.statuses(t, ids...); got != fmt.Sprint(statusList(ids, "resolved")) {
		t.Errorf("statuses = %s", got)
	}
}

func statusList(ids []int64, s string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%d:%s", id, s)
	}
	return out
}

// TestRedriveTx: effects written in the resolving transaction are
// committed once, with the row; a failure or a row resolved meanwhile
// rolls them back.
func TestRedriveTx(t *testing.T) {
	each(t, func(t *testing.T, e opsDB) {
		ctx := t.Context()
		f := newRedriveFixture(t, e, 3)
		e.exec(t, "CREATE TABLE effects (event_id BIGINT NOT NULL PRIMARY KEY)")
		ids := f.record(t, "c", 1, 2)
		failed := false
		fn := func(ctx context.Context, tx *sql.Tx, ev *reflex.Event) error {
			if _, err := tx.ExecContext(ctx, e.q("INSERT INTO effects (event_id) VALUES (?)"), ev.IDInt()); err != nil {
				return err
			}
			if ev.ID == "2" && !failed {
				failed = true
				return errors.New("boom after writing")
			}
			return nil
		}
		if _, err := f.errs.RequestRedrive(ctx, f.db, "c", ids...); err != nil {
			t.Fatal(err)
		}
		res, err := f.errs.RedriveTx(ctx, f.db, f.stream, "c", fn)
		if err != nil || len(res.Resolved) != 1 || len(res.Failed) != 1 {
			t.Fatalf("RedriveTx = %+v, %v", res, err)
		}
		if _, err := f.errs.RequestRedrive(ctx, f.db, "c", ids[1]); err != nil {
			t.Fatal(err)
		}
		if res, err := f.errs.RedriveTx(ctx, f.db, f.stream, "c", fn); err != nil || len(res.Resolved) != 1 {
			t.Fatalf("second RedriveTx = %+v, %v", res, err)
		}
		effects := effectsOf(t, f.db)
		if effects != "1,2" {
			t.Errorf("effects = %s, want 1,2 (each once)", effects)
		}
		if e.d == rsql.SQLite {
			return // SQLite's single writer: no concurrent resolution to race with
		}
		// A row resolved by another redriver during fn: rolled back.
		more := f.record(t, "c", 3)
		if _, err := f.errs.RequestRedrive(ctx, f.db, "c", more...); err != nil {
			t.Fatal(err)
		}
		race := func(ctx context.Context, tx *sql.Tx, ev *reflex.Event) error {
			if _, err := tx.ExecContext(ctx, e.q("INSERT INTO effects (event_id) VALUES (?)"), ev.IDInt()); err != nil {
				return err
			}
			_, err := f.db.ExecContext(ctx, e.q("UPDATE consumer_errors SET error_status = 3 WHERE id = ?"), more[0])
			return err
		}
		if res, err := f.errs.RedriveTx(ctx, f.db, f.stream, "c", race); err != nil || fmt.Sprint(res.Skipped) != fmt.Sprint(more) {
			t.Fatalf("RedriveTx of a row resolved meanwhile = %+v, %v; want it skipped", res, err)
		}
		var n int
		if err := f.db.QueryRow("SELECT COUNT(*) FROM effects WHERE event_id = 3").Scan(&n); err != nil || n != 0 {
			t.Errorf("effects of the skipped row: %d, %v; want none", n, err)
		}
	})
}

func TestRunRedriver(t *testing.T) {
	db := dbtest.Open(t)
	e := opsDB{"mysql", db, rsql.MySQL, rsqltest.Tables{}}
	f := newRedriveFixture(t, e, 3)
	ids := f.record(t, "c", 1, 2, 3)
	c := newFlaky("c")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- f.errs.RunRedriver(ctx, db, f.stream, c, rsql.WithRedriveEvery(20*time.Millisecond), rsql.WithRedriveLimit(2))
	}()
	if _, err := f.errs.RequestRedrive(t.Context(), db, "c", ids...); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(statusList(ids, "resolved"))
	err := testguard.Poll(time.Minute, 10*time.Millisecond, "the redriver", func() (int64, bool, error) {
		return 0, f.statuses(t, ids...) == want, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("RunRedriver = %v, want context.Canceled", err)
	}
	if got := c.successes(); got != "map[1:1 2:1 3:1]" {
		t.Errorf("deliveries = %s", got)
	}
	if err := f.errs.RunRedriver(t.Context(), db, f.stream, c, rsql.WithRedriveIDs(1)); err == nil {
		t.Error("RunRedriver with WithRedriveIDs = nil, want an error")
	}
}

// effectsOf returns the event IDs of the effects table, in order, joined
// with commas.
func effectsOf(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query("SELECT event_id FROM effects ORDER BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, strconv.FormatInt(id, 10))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(ids, ",")
}
