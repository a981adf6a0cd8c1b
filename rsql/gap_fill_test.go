package rsql

import (
	"context"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"slices"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
)

func TestComplementSubtract(t *testing.T) {
	if got := complement(5, 10, []int64{4, 6, 9, 11}); !slices.Equal(got, []int64{5, 7, 8}) {
		t.Errorf("complement = %v, want [5 7 8]", got)
	}
	if got := complement(1, 1, nil); len(got) != 0 {
		t.Errorf("complement of an empty range = %v", got)
	}
	if got := subtract([]int64{1, 2, 3, 5}, []int64{2, 5, 7}); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("subtract = %v, want [1 3]", got)
	}
}

// TestInsertNoopsDuplicate: filling an ID that was written meanwhile is
// success, and only new noops count as filled.
func TestInsertNoopsDuplicate(t *testing.T) {
	db := dbtest.Open(t)
	tab := NewEventsTable("fill_events")
	if _, err := db.Exec(EventsSchema(MySQL, "fill_events")); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Insert(t.Context(), db, "real", eventtype.Type(1)); err != nil { // ID 1
		t.Fatal(err)
	}
	before := gaugeOrCounter(tab.m.GapFilled)
	if err := tab.insertNoops(t.Context(), db, []int64{1, 2, 3}); err != nil {
		t.Fatalf("insertNoops over an existing ID: %v", err)
	}
	if got := gaugeOrCounter(tab.m.GapFilled) - before; got != 2 {
		t.Errorf("filled counter grew by %v, want 2", got)
	}
	var fid string
	if err := db.QueryRow("SELECT foreign_id FROM fill_events WHERE id = 1").Scan(&fid); err != nil || fid != "real" {
		t.Errorf("ID 1 = %q (%v), want the real event kept", fid, err)
	}
	// fillRange waits for an uncommitted ID, then fills it once rolled back.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO fill_events (id, foreign_id, timestamp, type) VALUES (5, 'x', now(6), 1)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tab.fillRangeUncommitted(context.Background(), db, 4, 6) }()
	select {
	case err := <-done:
		t.Fatalf("fillRange returned %v while ID 5 is uncommitted", err)
	case <-time.After(3 * gapRecheck):
	}
	_ = tx.Rollback()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM fill_events WHERE id IN (4, 5) AND foreign_id = '0' AND type = 0").Scan(&n); err != nil || n != 2 {
		t.Errorf("%d noops at 4 and 5 (%v), want 2", n, err)
	}
	// Cancelling stops a waiting fillRange with the context's error.
	tx, _ = db.Begin()
	defer tx.Rollback()
	if _, err := tx.Exec("INSERT INTO fill_events (id, foreign_id, timestamp, type) VALUES (7, 'x', now(6), 1)"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- tab.fillRangeUncommitted(ctx, db, 7, 8) }()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("cancelled fillRange = %v, want context.Canceled", err)
	}
}
