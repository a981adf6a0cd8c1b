package main

import (
	"strings"
	"testing"

	"github.com/seed-e488ba2e/reflex/rsql"
)

type testType int

func (t testType) ReflexType() int { return int(t) }

// TestGapsHeldTransaction holds a transaction that wrote an event while a
// later event commits: the gap is shown in flight, and tail stops before
// it and says so; once rolled back, the gap is missing.
func TestGapsHeldTransaction(t *testing.T) {
	f := mysqlFixture(t)
	f.seedEvents(t, 1, 3)
	ctx := t.Context()
	table := rsql.NewEventsTable("events")
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := table.Insert(ctx, tx, "held", testType(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := table.Insert(ctx, f.db, "committed", testType(1)); err != nil {
		t.Fatal(err)
	}
	gaps := func(args ...string) result {
		t.Helper()
		return want(t, exitOK, append([]string{"gaps", "--dsn", f.dsn}, args...)...)
	}
	golden(t, "gaps_in_flight.golden", maskText(gaps().stdout))
	golden(t, "gaps_in_flight.json.golden", maskJSON(t, gaps("--json").stdout, "next_timestamp", "age_seconds"))
	r := want(t, exitOK, "tail", "--dsn", f.dsn)
	if strings.Count(r.stdout, "\n") != 3 || !strings.Contains(r.stderr, "stopped at event 3 before the head 5") {
		t.Errorf("tail at a gap:\n%s", r)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if r := gaps("--from", "2"); !strings.Contains(r.stdout, "missing") || strings.Contains(r.stdout, "in flight") {
		t.Errorf("gaps after the rollback:\n%s", r.stdout)
	}
	if r := gaps("--from", "4"); !strings.HasPrefix(r.stdout, "no open gaps after ID 4") {
		t.Errorf("gaps after the gap:\n%s", r.stdout)
	}
}

func TestGapsSQLite(t *testing.T) {
	f := sqliteFixture(t, "events")
	f.seedEvents(t, 1, 10)
	f.exec(t, "DELETE FROM events WHERE id IN (4, 5, 8)")
	golden(t, "gaps_sqlite.golden", maskText(want(t, exitOK, "gaps", "--dsn", f.dsn).stdout))
	if r := want(t, exitOK, "gaps", "--dsn", f.dsn, "--since", "2026-01-02T03:06:30Z"); !strings.Contains(r.stdout, "\n7  ") || strings.Contains(r.stdout, "\n3  ") {
		t.Errorf("gaps --since after the first gap:\n%s", r.stdout)
	}
	want(t, exitUsage, "gaps", "--dsn", f.dsn, "--from", "1", "--since", "1h")
	want(t, exitUsage, "gaps", "--dsn", f.dsn, "--since", "2100-01-01T00:00:00Z")
	want(t, exitNotFound, "gaps", "--dsn", f.dsn, "--events", "nope")
}
