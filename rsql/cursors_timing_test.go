package rsql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex/rsql"
)

// recordingDBC records the statements of async flushes, for timing tests
// in a synctest bubble (no network I/O there). It is not a SQL fake: it
// answers every statement with as many rows affected as it names
// consumers, and refuses queries (tables using it skip their catalog read,
// see SkipCursorsCatalog); the SQL itself is tested against MariaDB
// elsewhere.
type recordingDBC struct {
	mu    sync.Mutex // protects stmts
	stmts []string
}

func (r *recordingDBC) ExecContext(_ context.Context, q string, _ ...any) (sql.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stmts = append(r.stmts, q)
	n := 1
	switch {
	case strings.HasPrefix(q, "UPDATE "):
		n = max(1, strings.Count(q, " WHEN ")/2) // a CASE for the cursor, one for the condition
	case strings.HasPrefix(q, "INSERT "):
		n = strings.Count(q, "), (") + 1
	}
	return driver.RowsAffected(n), nil
}

func (r *recordingDBC) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	panic("recordingDBC: unexpected query")
}

func (r *recordingDBC) QueryRowContext(context.Context, string, ...any) *sql.Row {
	panic("recordingDBC: unexpected query")
}

// count returns the number of flushes: each is one UPDATE here, since
// this DBC reports every row affected.
func (r *recordingDBC) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.stmts {
		if strings.HasPrefix(q, "UPDATE ") {
			n++
		}
	}
	return n
}

// TestCursorsAsyncPeriod: the background loop flushes once per period,
// only when something is buffered, and Close stops it (synctest fails the
// test if the goroutine outlives the bubble).
func TestCursorsAsyncPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		r := &recordingDBC{}
		ct := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncPeriod(time.Second))
		rsql.SkipCursorsCatalog(ct)
		defer ct.Close()
		if err := ct.SetCursor(ctx, r, "c", "1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		if n := r.count(); n != 0 {
			t.Fatalf("%d flushes before the first period ended, want 0", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if n := r.count(); n != 1 {
			t.Fatalf("%d flushes after one period, want 1", n)
		}
		time.Sleep(10 * time.Second) // nothing buffered: no statements
		synctest.Wait()
		if n := r.count(); n != 1 {
			t.Fatalf("%d flushes with an empty buffer, want still 1", n)
		}
		if err := ct.SetCursor(ctx, r, "c", "2"); err != nil {
			t.Fatal(err)
		}
		if err := ct.SetCursor(ctx, r, "d", "2"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := r.count(); n != 2 {
			t.Fatalf("%d flushes, want 2 (one for both consumers)", n)
		}
		if err := ct.SetCursor(ctx, r, "c", "3"); err != nil {
			t.Fatal(err)
		}
		if err := ct.Close(); err != nil {
			t.Fatal(err)
		}
		if n := r.count(); n != 3 {
			t.Fatalf("%d flushes after Close, want 3 (Close flushes)", n)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := r.count(); n != 3 {
			t.Fatalf("%d flushes after Close and an hour, want 3", n)
		}
	})
}

// TestCursorsDefaultPeriod: by default the table is asynchronous with a
// 5 s period.
func TestCursorsDefaultPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recordingDBC{}
		ct := rsql.NewCursorsTable("cursors")
		rsql.SkipCursorsCatalog(ct)
		defer ct.Close()
		if err := ct.SetCursor(t.Context(), r, "c", "1"); err != nil {
			t.Fatal(err)
		}
		if n := r.count(); n != 0 {
			t.Fatalf("SetCursor wrote synchronously by default")
		}
		time.Sleep(5*time.Second - time.Nanosecond)
		synctest.Wait()
		if n := r.count(); n != 0 {
			t.Fatalf("flushed before 5 s")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if n := r.count(); n != 1 {
			t.Fatalf("%d flushes at 5 s, want 1", n)
		}
	})
}
