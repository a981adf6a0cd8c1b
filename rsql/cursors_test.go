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

	dto "github.com/prometheus/client_model/go"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// curSeq makes table names unique within a test database.
var curSeq atomic.Int64

// newCursorsTable creates a fresh int cursors table in db and returns a
// CursorsTable for it, closed at the end of the test.
func newCursorsTable(t testing.TB, db *sql.DB, opts ...rsql.CursorsOption) *rsql.CursorsTable {
	t.Helper()
	name := fmt.Sprintf("cursors_%d", curSeq.Add(1))
	rsqltest.CreateCursorsTable(t, db, name)
	ct := rsql.NewCursorsTable(name, opts...)
	t.Cleanup(func() { ct.Close() })
	return ct
}

// curHookDBC wraps a real database, counting statements and letting a test
// fail or observe them.
type curHookDBC struct {
	rsql.DBC
	execs atomic.Int64
	// beforeExec, if set, runs before each ExecContext; a non-nil error
	// is returned instead of running the statement.
	beforeExec func(q string) error
}

func (h *curHookDBC) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	h.execs.Add(1)
	if h.beforeExec != nil {
		if err := h.beforeExec(q); err != nil {
			return nil, err
		}
	}
	return h.DBC.ExecContext(ctx, q, args...)
}

func curSet(t *testing.T, ct *rsql.CursorsTable, dbc rsql.DBC, name, cursor string) {
	t.Helper()
	if err := ct.SetCursor(t.Context(), dbc, name, cursor); err != nil {
		t.Fatalf("SetCursor(%q, %q): %v", name, cursor, err)
	}
}

func curFlush(t *testing.T, ct *rsql.CursorsTable) {
	t.Helper()
	if err := ct.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func curWant(t *testing.T, ct *rsql.CursorsTable, dbc rsql.DBC, name, want string) {
	t.Helper()
	got, err := ct.GetCursor(t.Context(), dbc, name)
	if err != nil {
		t.Fatalf("GetCursor(%q): %v", name, err)
	}
	if got != want {
		t.Errorf("GetCursor(%q) = %q, want %q", name, got, want)
	}
}

func TestCursorsTableConformance(t *testing.T) {
	modes := []struct {
		name string
		opts []rsql.CursorsOption
	}{
		{"Sync", []rsql.CursorsOption{rsql.WithCursorAsyncDisabled()}},
		{"AsyncFlushOnly", []rsql.CursorsOption{rsql.WithCursorAsyncPeriod(time.Hour)}},
		{"AsyncBackground", []rsql.CursorsOption{rsql.WithCursorAsyncPeriod(time.Millisecond)}},
		{"ToStoreClone", nil},
	}
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) {
			db := e.openDB(t)
			for _, m := range modes {
				t.Run(m.name, func(t *testing.T) {
					reflextest.TestCursorStore(t, func(t *testing.T) reflex.CursorStore {
						if m.opts == nil {
							ct := newEngineCursorsTable(t, e, db)
							s := ct.ToStore(db, rsql.WithCursorAsyncPeriod(10*time.Millisecond))
							t.Cleanup(func() { s.Close() })
							return s
						}
						return newEngineCursorsTable(t, e, db, m.opts...).ToStore(db)
					})
				})
			}
		})
	}
}

func TestCursorsSyncWriteRule(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncDisabled())
	ctx := t.Context()

	curWant(t, ct, db, "c", "")
	curSet(t, ct, db, "c", "10")
	curWant(t, ct, db, "c", "10")

	for _, cur := range []string{"10", "9", "0"} {
		err := ct.SetCursor(ctx, db, "c", cur)
		if !errors.Is(err, rsql.ErrCursorNotIncreasing) {
			t.Fatalf("SetCursor(c, %s) after 10 = %v, want ErrCursorNotIncreasing", cur, err)
		}
		ce, ok := errors.AsType[*rsql.CursorConflictError](err)
		if !ok {
			t.Fatalf("SetCursor(c, %s) error %T is not a *CursorConflictError", cur, err)
		}
		if ce.Existing != "10" || ce.Cursor != cur || ce.Consumer != "c" || ce.Buffered || ce.UpdatedAt.IsZero() {
			t.Errorf("conflict = %+v, want existing 10, cursor %s, consumer c, stored with a time", ce, cur)
		}
		if msg := err.Error(); !strings.Contains(msg, "attempted to set cursor <= existing cursor") ||
			!strings.Contains(msg, `"c"`) || !strings.Contains(msg, `"10"`) {
			t.Errorf("error %q does not say what happened", msg)
		}
	}
	curWant(t, ct, db, "c", "10")

	curSet(t, ct, db, "c", "11")
	curWant(t, ct, db, "c", "11")
	curSet(t, ct, db, "other", "1")
	curWant(t, ct, db, "other", "1")
	curWant(t, ct, db, "c", "11")
}

func TestCursorsInvalidIntCursor(t *testing.T) {
	db := dbtest.Open(t)
	bad := []string{"abc", "-1", "9223372036854775808", "99999999999999999999", "", "007", "+5", " 1", "1.5", "0x10"}
	for _, mode := range []struct {
		name string
		opt  rsql.CursorsOption
	}{
		{"Sync", rsql.WithCursorAsyncDisabled()},
		{"Async", rsql.WithCursorAsyncPeriod(time.Hour)},
	} {
		t.Run(mode.name, func(t *testing.T) {
			ct := newCursorsTable(t, db, mode.opt)
			for _, cur := range bad {
				err := ct.SetCursor(t.Context(), db, "consumer-x", cur)
				if !errors.Is(err, rsql.ErrInvalidCursor) {
					t.Errorf("SetCursor(%q) = %v, want ErrInvalidCursor", cur, err)
					continue
				}
				if msg := err.Error(); !strings.Contains(msg, "consumer-x") || !strings.Contains(msg, strconv.Quote(cur)) ||
					!strings.Contains(msg, "invalid int cursor") {
					t.Errorf("SetCursor(%q) error %q does not name the consumer and cursor", cur, msg)
				}
			}
			curFlush(t, ct)
			curWant(t, ct, db, "consumer-x", "")
			// The largest int64 is fine.
			curSet(t, ct, db, "consumer-x", "9223372036854775807")
			curFlush(t, ct)
			curWant(t, ct, db, "consumer-x", "9223372036854775807")
		})
	}
	if err := rsql.NewCursorsTable("c").SetCursor(t.Context(), db, "x", "99999999999999999999"); err == nil ||
		!strings.Contains(err.Error(), "out of int64 range") {
		t.Errorf("overflow error = %v, want it to say out of int64 range", err)
	}
}

func TestCursorsStringCursors(t *testing.T) {
	db := dbtest.Open(t)
	for _, mode := range []struct {
		name string
		opt  rsql.CursorsOption
	}{
		{"Sync", rsql.WithCursorAsyncDisabled()},
		{"Async", rsql.WithCursorAsyncPeriod(time.Hour)},
	} {
		t.Run(mode.name, func(t *testing.T) {
			name := fmt.Sprintf("strcursors_%d", curSeq.Add(1))
			rsqltest.CreateStringCursorsTable(t, db, name)
			ct := rsql.NewCursorsTable(name, rsql.WithCursorStrings(), mode.opt)
			t.Cleanup(func() { ct.Close() })
			ctx := t.Context()

			curSet(t, ct, db, "c", "abcd")
			curFlush(t, ct)
			curWant(t, ct, db, "c", "abcd")
			// "aaa" sorts before "abcd": refused (sync) or ignored (async flush).
			err := ct.SetCursor(ctx, db, "c", "aaa")
			if mode.name == "Sync" && !errors.Is(err, rsql.ErrCursorNotIncreasing) {
				t.Fatalf(`SetCursor("aaa") after "abcd" = %v, want ErrCursorNotIncreasing`, err)
			}
			curFlush(t, ct)
			curWant(t, ct, db, "c", "abcd")
			curSet(t, ct, db, "c", "abce")
			curSet(t, ct, db, "d", "key|01|5")
			curFlush(t, ct)
			curWant(t, ct, db, "c", "abce")
			curWant(t, ct, db, "d", "key|01|5")

			if err := ct.SetCursor(ctx, db, "c", ""); err == nil || !strings.Contains(err.Error(), "empty cursor") {
				t.Errorf(`SetCursor("") = %v, want an empty cursor error`, err)
			}
		})
	}
}

// TestCursorsIntOnVarchar: int cursors stored in a varchar column still
// compare as integers, synchronously and in a flush.
func TestCursorsIntOnVarchar(t *testing.T) {
	db := dbtest.Open(t)
	name := fmt.Sprintf("strcursors_%d", curSeq.Add(1))
	rsqltest.CreateStringCursorsTable(t, db, name)

	sync := rsql.NewCursorsTable(name, rsql.WithCursorAsyncDisabled())
	curSet(t, sync, db, "s", "9")
	curSet(t, sync, db, "s", "10") // "10" < "9" as strings
	if err := sync.SetCursor(t.Context(), db, "s", "9"); !errors.Is(err, rsql.ErrCursorNotIncreasing) {
		t.Fatalf(`SetCursor("9") after "10" = %v, want ErrCursorNotIncreasing`, err)
	}
	curWant(t, sync, db, "s", "10")

	async := rsql.NewCursorsTable(name, rsql.WithCursorAsyncPeriod(time.Hour))
	t.Cleanup(func() { async.Close() })
	curSet(t, async, db, "a", "9")
	curFlush(t, async)
	curSet(t, async, db, "a", "10")
	curFlush(t, async)
	curWant(t, async, db, "a", "10")
	curSet(t, async, db, "a", "11")
	curSet(t, sync, db, "a", "100") // another writer moves ahead
	if err := async.Flush(t.Context()); !errors.Is(err, rsql.ErrConcurrentWriter) {
		t.Fatalf("Flush after another writer moved the cursor = %v, want ErrConcurrentWriter", err)
	}
	curWant(t, async, db, "a", "100")

	// Beyond 2^53 doubles cannot tell neighbours apart: the comparison
	// must be on integers.
	const big = "9007199254740993" // 2^53 + 1
	curSet(t, sync, db, "b", "9007199254740992")
	curSet(t, sync, db, "b", big)
	curWant(t, sync, db, "b", big)
}

func TestCursorsAsyncBuffersUntilFlush(t *testing.T) {
	db := dbtest.Open(t)
	var sets atomic.Int64
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour), rsql.WithCursorSetCounter(func() { sets.Add(1) }))
	h := &curHookDBC{DBC: db}

	for i := 1; i <= 5; i++ {
		for _, c := range []string{"a", "b", "c"} {
			curSet(t, ct, h, c, strconv.Itoa(i))
		}
	}
	if n := h.execs.Load(); n != 0 {
		t.Errorf("async SetCursor ran %d statements, want 0", n)
	}
	curFlush(t, ct)
	if n := h.execs.Load(); n != 2 {
		t.Errorf("first Flush of 3 new consumers ran %d statements, want 2 (update, upsert)", n)
	}
	if n := sets.Load(); n != 3 {
		t.Errorf("set counter = %d after flushing 3 cursors, want 3", n)
	}
	for _, c := range []string{"a", "b", "c"} {
		curWant(t, ct, db, c, "5")
	}
	curFlush(t, ct) // nothing buffered: no statement
	if n := h.execs.Load(); n != 2 {
		t.Errorf("empty Flush ran a statement (%d total)", n)
	}
	for _, c := range []string{"a", "b", "c"} {
		curSet(t, ct, h, c, "6")
	}
	curFlush(t, ct)
	if n := h.execs.Load(); n != 3 {
		t.Errorf("Flush of 3 existing consumers ran %d statements, want 1", n-2)
	}
	for _, c := range []string{"a", "b", "c"} {
		curWant(t, ct, db, c, "6")
	}

	// A cursor not greater than the buffered one is refused at once.
	curSet(t, ct, h, "a", "7")
	for _, cur := range []string{"7", "6"} {
		err := ct.SetCursor(t.Context(), h, "a", cur)
		ce, ok := errors.AsType[*rsql.CursorConflictError](err)
		if !ok || !ce.Buffered || ce.Existing != "7" || !errors.Is(err, rsql.ErrCursorNotIncreasing) {
			t.Errorf("SetCursor(a, %s) with 7 buffered = %v, want a buffered conflict", cur, err)
		}
	}
	curWant(t, ct, db, "a", "7") // GetCursor returns what the table will write
}

func TestCursorsSyncCounter(t *testing.T) {
	db := dbtest.Open(t)
	var sets atomic.Int64
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncDisabled(), rsql.WithCursorSetCounter(func() { sets.Add(1) }))
	for i := 1; i <= 4; i++ {
		curSet(t, ct, db, "c", strconv.Itoa(i))
	}
	_ = ct.SetCursor(t.Context(), db, "c", "1") // refused: not counted
	if n := sets.Load(); n != 4 {
		t.Errorf("set counter = %d after 4 writes, want 4", n)
	}
	// nil disables counting.
	curSet(t, newCursorsTable(t, db, rsql.WithCursorAsyncDisabled(), rsql.WithCursorSetCounter(nil)), db, "c", "1")
}

func TestCursorsDefaultCounter(t *testing.T) {
	db := dbtest.Open(t)
	name := fmt.Sprintf("cursors_metric_%d", curSeq.Add(1))
	rsqltest.CreateCursorsTable(t, db, name)
	c := metrics.CursorsTableSet(name)
	before := counterValue(t, c)

	syncT := rsql.NewCursorsTable(name, rsql.WithCursorAsyncDisabled())
	curSet(t, syncT, db, "s", "1")
	curSet(t, syncT, db, "s", "2")
	asyncT := rsql.NewCursorsTable(name, rsql.WithCursorAsyncPeriod(time.Hour))
	curSet(t, asyncT, db, "a", "1")
	curSet(t, asyncT, db, "b", "1")
	curSet(t, asyncT, db, "a", "2")
	if err := asyncT.Close(); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, c) - before; got != 4 {
		t.Errorf("reflex_cursors_table_set_total{table=%q} grew by %v, want 4 (2 sync + 2 flushed rows)", name, got)
	}
}

// TestCursorsFlushFailureKeepsCursors: a failed flush returns its error and
// keeps the cursors for the next flush; nothing is lost or moved back.
func TestCursorsFlushFailureKeepsCursors(t *testing.T) {
	db := dbtest.Open(t)
	var flushed atomic.Int64
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour), rsql.WithCursorSetCounter(func() { flushed.Add(1) }))
	boom := errors.New("boom")
	var failNext atomic.Bool
	h := &curHookDBC{DBC: db}
	h.beforeExec = func(string) error {
		if failNext.Swap(false) {
			// A lower cursor for a and a new consumer arrive during the
			// failing flush.
			if err := ct.SetCursor(context.Background(), h, "a", "3"); err != nil {
				t.Errorf("SetCursor during flush: %v", err)
			}
			if err := ct.SetCursor(context.Background(), h, "new", "1"); err != nil {
				t.Errorf("SetCursor during flush: %v", err)
			}
			return boom
		}
		return nil
	}

	curSet(t, ct, h, "a", "5")
	curSet(t, ct, h, "b", "8")
	failNext.Store(true)
	err := ct.Flush(t.Context())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), ct.Name()) {
		t.Fatalf("Flush = %v, want the statement's error naming the table", err)
	}
	if n := flushed.Load(); n != 0 {
		t.Errorf("set counter = %d after a failed flush, want 0", n)
	}
	curWant(t, ct, db, "a", "5") // the kept cursor, which the table will write

	curSet(t, ct, h, "b", "9") // newer than the kept 8
	curFlush(t, ct)
	curWant(t, ct, db, "a", "5") // the kept 5 beats the later 3
	curWant(t, ct, db, "b", "9")
	curWant(t, ct, db, "new", "1")
	if n := flushed.Load(); n != 3 {
		t.Errorf("set counter = %d, want 3", n)
	}
}

// TestCursorsFlushMissingTable: errors of a flush against a missing table
// are returned, and the cursors are written once the table exists.
func TestCursorsFlushMissingTable(t *testing.T) {
	db := dbtest.Open(t)
	ct := rsql.NewCursorsTable("later", rsql.WithCursorAsyncPeriod(time.Hour))
	t.Cleanup(func() { ct.Close() })
	curSet(t, ct, db, "c", "42")
	if err := ct.Flush(t.Context()); err == nil || !strings.Contains(err.Error(), "later") {
		t.Fatalf("Flush into a missing table = %v, want an error naming it", err)
	}
	if _, err := ct.GetCursor(t.Context(), db, "c"); err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("GetCursor from a missing table = %v, want an error naming the consumer", err)
	}
	if err := ct.SetCursor(t.Context(), db, "c", "42"); !errors.Is(err, rsql.ErrCursorNotIncreasing) {
		t.Errorf("SetCursor of the kept cursor again = %v, want ErrCursorNotIncreasing", err)
	}
	rsqltest.CreateCursorsTable(t, db, "later")
	if err := ct.Close(); err != nil {
		t.Fatalf("Close (final flush): %v", err)
	}
	curWant(t, ct, db, "c", "42")

	syncT := rsql.NewCursorsTable("missing", rsql.WithCursorAsyncDisabled())
	if err := syncT.SetCursor(t.Context(), db, "c", "1"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("sync SetCursor into a missing table = %v, want an error naming it", err)
	}
}

func TestCursorsAsyncBackgroundFlush(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(5*time.Millisecond))
	curSet(t, ct, db, "c", "7")
	curWait(t, ct, db, "c", "7")
	curSet(t, ct, db, "c", "8")
	curWait(t, ct, db, "c", "8")
}

// waitCursor polls until the stored cursor of name is want.
func curWait(t *testing.T, ct *rsql.CursorsTable, db rsql.DBC, name, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := ct.GetCursor(t.Context(), db, name)
		if err != nil {
			t.Fatalf("GetCursor(%q): %v", name, err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetCursor(%q) = %q after 10s, want %q", name, got, want)
		}
	}
}

func TestCursorsCloseFlushesAndRefuses(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour))
	curSet(t, ct, db, "c", "3")

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = ct.Close() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Close #%d: %v", i, err)
		}
	}
	curWant(t, ct, db, "c", "3")
	if err := ct.SetCursor(t.Context(), db, "c", "4"); !errors.Is(err, rsql.ErrCursorsTableClosed) {
		t.Errorf("SetCursor after Close = %v, want ErrCursorsTableClosed", err)
	}
	if err := ct.Flush(t.Context()); err != nil {
		t.Errorf("Flush after Close = %v", err)
	}
	if err := ct.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	syncT := newCursorsTable(t, db, rsql.WithCursorAsyncDisabled())
	if err := syncT.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syncT.SetCursor(t.Context(), db, "c", "4"); !errors.Is(err, rsql.ErrCursorsTableClosed) {
		t.Errorf("sync SetCursor after Close = %v, want ErrCursorsTableClosed", err)
	}
	// Closing a table that never started its loop is fine too.
	if err := rsql.NewCursorsTable("never").Close(); err != nil {
		t.Errorf("Close of an unused table = %v", err)
	}
}

// TestCursorsCloseFailedFinalFlush: Close returns the final flush's error,
// every time, and the cursors can still be flushed later.
func TestCursorsCloseFailedFinalFlush(t *testing.T) {
	db := dbtest.Open(t)
	ct := rsql.NewCursorsTable("notyet", rsql.WithCursorAsyncPeriod(time.Hour))
	curSet(t, ct, db, "c", "1")
	err1, err2 := ct.Close(), ct.Close()
	if err1 == nil || err1 != err2 {
		t.Fatalf("Close = %v then %v, want the same flush error twice", err1, err2)
	}
	rsqltest.CreateCursorsTable(t, db, "notyet")
	curFlush(t, ct)
	curWant(t, ct, db, "c", "1")
}

func TestCursorsClone(t *testing.T) {
	db := dbtest.Open(t)
	var origSets atomic.Int64
	orig := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour), rsql.WithCursorSetCounter(func() { origSets.Add(1) }))
	clone := orig.Clone(rsql.WithCursorAsyncDisabled())
	t.Cleanup(func() { clone.Close() })

	if clone.Name() != orig.Name() {
		t.Errorf("clone name %q, want %q", clone.Name(), orig.Name())
	}
	curSet(t, orig, db, "c", "1")
	curFlush(t, clone) // the clone does not share the buffer
	curWant(t, clone, db, "c", "")

	curSet(t, clone, db, "c", "2") // synchronous, same table, same counter
	curWant(t, orig, db, "c", "2")
	if n := origSets.Load(); n != 1 {
		t.Errorf("counter = %d after one write through the clone, want 1 (the counter is copied)", n)
	}
	if err := orig.Close(); err != nil { // flushes the buffered 1: ignored, never backwards
		t.Fatal(err)
	}
	curWant(t, orig, db, "c", "2")
	if err := clone.SetCursor(t.Context(), db, "c", "3"); err != nil {
		t.Errorf("the clone does not share Close: %v", err)
	}
}

func TestCursorsToStore(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour))
	ctx := t.Context()

	shared := ct.ToStore(db)
	if err := shared.SetCursor(ctx, "s", "1"); err != nil {
		t.Fatal(err)
	}
	curFlush(t, ct) // the store writes into ct's buffer
	curWant(t, ct, db, "s", "1")
	if err := shared.Close(); err != nil {
		t.Fatal(err)
	}
	curSet(t, ct, db, "s", "2") // closing the shared store left ct open

	own := ct.ToStore(db, rsql.WithCursorAsyncDisabled())
	if err := own.SetCursor(ctx, "o", "5"); err != nil {
		t.Fatal(err)
	}
	curWant(t, ct, db, "o", "5") // synchronous clone
	if err := own.Close(); err != nil {
		t.Fatal(err)
	}
	if err := own.SetCursor(ctx, "o", "6"); !errors.Is(err, rsql.ErrCursorsTableClosed) {
		t.Errorf("SetCursor on a closed owned store = %v, want ErrCursorsTableClosed", err)
	}
	got, err := own.GetCursor(ctx, "o")
	if err != nil || got != "5" {
		t.Errorf("GetCursor after Close = %q, %v; want 5", got, err)
	}
}

func TestCursorsCustomColumns(t *testing.T) {
	db := dbtest.Open(t)
	_, err := db.ExecContext(t.Context(), "CREATE TABLE custom_cursors ("+
		"consumer VARBINARY(255) NOT NULL PRIMARY KEY, `cursor` BIGINT NOT NULL, ts DATETIME(3) NOT NULL)")
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []rsql.CursorsOption{rsql.WithCursorAsyncDisabled(), rsql.WithCursorAsyncPeriod(time.Hour)} {
		ct := rsql.NewCursorsTable("custom_cursors",
			rsql.WithCursorIDField("consumer"), rsql.WithCursorCursorField("`cursor`"), rsql.WithCursorTimeField("ts"), opt)
		name := fmt.Sprintf("c%d", curSeq.Add(1))
		curSet(t, ct, db, name, "1")
		curSet(t, ct, db, name, "2")
		if err := ct.Close(); err != nil {
			t.Fatal(err)
		}
		curWant(t, ct, db, name, "2")
	}
}

// TestCursorsInsideTx: a synchronous write through a transaction becomes
// visible on commit.
func TestCursorsInsideTx(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncDisabled())
	tx, err := db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	curSet(t, ct, tx, "c", "1")
	curWant(t, ct, db, "c", "")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	curWant(t, ct, db, "c", "1")
}

func TestCursorsConcurrentAsync(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Millisecond))
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("c%d", c)
			for i := 1; i <= 200; i++ {
				if err := ct.SetCursor(t.Context(), db, name, strconv.Itoa(i)); err != nil {
					t.Errorf("SetCursor(%s, %d): %v", name, i, err)
					return
				}
				if i%50 == 0 {
					if err := ct.Flush(t.Context()); err != nil {
						t.Errorf("Flush: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ct.Close(); err != nil {
		t.Fatal(err)
	}
	for c := range 8 {
		curWant(t, ct, db, fmt.Sprintf("c%d", c), "200")
	}
}

func TestCursorsBadInput(t *testing.T) {
	ctx := t.Context()
	ct := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncDisabled())
	if err := ct.SetCursor(ctx, nil, "c", "1"); err == nil || !strings.Contains(err.Error(), "nil DBC") {
		t.Errorf("SetCursor with a nil DBC = %v", err)
	}
	if _, err := ct.GetCursor(ctx, nil, "c"); err == nil || !strings.Contains(err.Error(), "nil DBC") {
		t.Errorf("GetCursor with a nil DBC = %v", err)
	}
	async := rsql.NewCursorsTable("cursors")
	if err := async.SetCursor(ctx, nil, "c", "1"); err == nil {
		t.Errorf("async SetCursor with a nil DBC succeeded")
	}
	if err := async.Close(); err != nil {
		t.Errorf("Close after refused sets = %v", err)
	}
}

func TestCursorsConstructionPanics(t *testing.T) {
	cases := []struct {
		name string
		f    func()
	}{
		{"table", func() { rsql.NewCursorsTable("bad name") }},
		{"empty table", func() { rsql.NewCursorsTable("") }},
		{"injection", func() { rsql.NewCursorsTable("c; DROP TABLE x") }},
		{"id column", func() { rsql.NewCursorsTable("c", rsql.WithCursorIDField("a-b")) }},
		{"cursor column", func() { rsql.NewCursorsTable("c", rsql.WithCursorCursorField("`x` or 1")) }},
		{"time column", func() { rsql.NewCursorsTable("c", rsql.WithCursorTimeField("")) }},
		{"negative period", func() { rsql.NewCursorsTable("c", rsql.WithCursorAsyncPeriod(-time.Second)) }},
		{"nil option", func() { rsql.NewCursorsTable("c", nil) }},
		{"clone", func() { rsql.NewCursorsTable("c").Clone(rsql.WithCursorIDField("x y")) }},
		{"schema", func() { rsql.CursorsSchema(rsql.MySQL, "x y") }},
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

func TestCursorsSchema(t *testing.T) {
	for _, tc := range []struct {
		ddl, want, col string
	}{
		{rsql.CursorsSchema(rsql.MySQL, "my_cursors"), "`my_cursors`", "`last_event_id` BIGINT"},
		{rsql.StringCursorsSchema(rsql.MySQL, "db1.c"), "`db1`.`c`", "`last_event_id` VARCHAR(255)"},
		{rsql.ErrorsSchema(rsql.MySQL, "errs"), "`errs`", "UNIQUE KEY (`consumer`, `event_id`)"},
		{rsql.CursorsSchema(rsql.Dialect{}, "x"), "`x`", "`updated_at`"},
	} {
		if !strings.Contains(tc.ddl, "CREATE TABLE IF NOT EXISTS "+tc.want+" (") || !strings.Contains(tc.ddl, tc.col) {
			t.Errorf("DDL lacks table %s or %s:\n%s", tc.want, tc.col, tc.ddl)
		}
	}
	// The DDL runs, twice (IF NOT EXISTS).
	db := dbtest.Open(t)
	for range 2 {
		rsqltest.CreateCursorsTable(t, db, "c1")
		rsqltest.CreateStringCursorsTable(t, db, "c2")
		if _, err := db.ExecContext(t.Context(), rsql.ErrorsSchema(rsql.MySQL, "e1")); err != nil {
			t.Fatal(err)
		}
	}
}

// counterValue reads a Prometheus counter.
func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
