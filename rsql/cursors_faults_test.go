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
	"testing/synctest"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// TestCursorsNextRunAfterFailedFlush: when a run's flushes fail, the
// cursor stays buffered and GetCursor returns it, so the next run resumes
// after it and its SetCursor calls succeed; nothing is consumed twice.
func TestCursorsNextRunAfterFailedFlush(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour))
	var failing atomic.Bool
	h := &curHookDBC{DBC: db, beforeExec: func(string) error {
		if failing.Load() {
			return errors.New("database unreachable")
		}
		return nil
	}}
	log := reflextest.NewLog()
	for i := range 10 {
		log.Append(reflex.Event{ForeignID: fmt.Sprint(i), Type: crashType(1)})
	}
	consumed := make(map[string]int)
	consumer := reflex.NewConsumer("c", func(_ context.Context, e *reflex.Event) error {
		consumed[e.ID]++
		return nil
	})
	spec := reflex.NewSpec(log.Stream, ct.ToStore(h), consumer, reflex.WithStreamToHead())

	failing.Store(true)
	if err := reflex.Run(t.Context(), spec); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("first run = %v, want ErrHeadReached", err)
	}
	if err := ct.Flush(t.Context()); err == nil {
		t.Fatal("Flush succeeded while the database fails")
	}
	curWant(t, ct, db, "c", "10") // buffered, still to be written

	failing.Store(false)
	log.Append(reflex.Event{ForeignID: "10", Type: crashType(1)}, reflex.Event{ForeignID: "11", Type: crashType(1)})
	if err := reflex.Run(t.Context(), spec); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("second run = %v, want ErrHeadReached", err)
	}
	curWant(t, rsql.NewCursorsTable(ct.Name(), rsql.WithCursorAsyncDisabled()), db, "c", "12")
	for i := 1; i <= 12; i++ {
		if n := consumed[strconv.Itoa(i)]; n != 1 {
			t.Errorf("event %d consumed %d times, want once", i, n)
		}
	}
}

// TestCursorsConcurrentWriter: two tables (two processes) writing the
// cursor of one consumer name find each other's writes and report
// ErrConcurrentWriter; the stored cursor never moves back.
func TestCursorsConcurrentWriter(t *testing.T) {
	db := dbtest.Open(t)
	a := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour))
	b := rsql.NewCursorsTable(a.Name(), rsql.WithCursorAsyncPeriod(time.Hour))
	t.Cleanup(func() { b.Close() })
	conflicts := metrics.CursorsTableConcurrentWriters(a.Name())
	reader := rsql.NewCursorsTable(a.Name(), rsql.WithCursorAsyncDisabled())
	ctx := t.Context()

	curWant(t, a, db, "c", "")
	curWant(t, b, db, "c", "")
	curSet(t, a, db, "c", "5")
	curFlush(t, a)

	// b read no row, but a created it.
	curSet(t, b, db, "c", "3")
	err := b.Flush(ctx)
	if !errors.Is(err, rsql.ErrConcurrentWriter) || !strings.Contains(err.Error(), `"5"`) || !strings.Contains(err.Error(), `"c"`) {
		t.Fatalf("Flush of the second writer = %v, want ErrConcurrentWriter naming the consumer and the stored cursor", err)
	}
	if got := counterValue(t, conflicts); got != 1 {
		t.Errorf("reflex_cursors_table_concurrent_writers_total = %v, want 1", got)
	}
	curWant(t, reader, db, "c", "5")

	// After GetCursor, b writes over what it read.
	curWant(t, b, db, "c", "5")
	curSet(t, b, db, "c", "6")
	curFlush(t, b)

	// a last wrote 5: it finds 6, even though its 7 is greater.
	curSet(t, a, db, "c", "7")
	if err := a.Flush(ctx); !errors.Is(err, rsql.ErrConcurrentWriter) {
		t.Fatalf("Flush of the first writer = %v, want ErrConcurrentWriter", err)
	}
	curWant(t, reader, db, "c", "6")
	// The next SetCursor reports it once, then a goes on from the stored
	// cursor.
	if err := a.SetCursor(ctx, db, "c", "8"); !errors.Is(err, rsql.ErrConcurrentWriter) {
		t.Errorf("SetCursor after the conflict = %v, want ErrConcurrentWriter", err)
	}
	if err := a.SetCursor(ctx, db, "c", "6"); !errors.Is(err, rsql.ErrCursorNotIncreasing) {
		t.Errorf("SetCursor(6) with 6 stored = %v, want ErrCursorNotIncreasing", err)
	}
	curSet(t, a, db, "c", "8")
	curFlush(t, a)
	curWant(t, reader, db, "c", "8")
	if got := counterValue(t, conflicts); got != 2 {
		t.Errorf("reflex_cursors_table_concurrent_writers_total = %v, want 2", got)
	}
}

// TestCursorsConcurrentWriterStopsRun: two replicas run one consumer name
// over one stream, each with its own asynchronous table. The second one's
// run ends with ErrConcurrentWriter, found by its background flush,
// instead of processing every event again silently.
func TestCursorsConcurrentWriterStopsRun(t *testing.T) {
	db := dbtest.Open(t)
	first := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour))
	second := rsql.NewCursorsTable(first.Name(), rsql.WithCursorAsyncPeriod(time.Millisecond))
	t.Cleanup(func() { second.Close() })
	conflicts := metrics.CursorsTableConcurrentWriters(first.Name())
	log := reflextest.NewLog()
	for i := range 100 {
		log.Append(reflex.Event{ForeignID: fmt.Sprint(i), Type: crashType(1)})
	}

	firstDone, gotCursor := make(chan struct{}), make(chan struct{})
	secondErr := make(chan error, 1)
	go func() {
		consumer := reflex.NewConsumer("replicated", func(_ context.Context, e *reflex.Event) error {
			switch e.ID {
			case "1": // both replicas have read the cursor
				<-firstDone
			case "2": // the background flush of cursor 1 met the first replica's row
				before := counterValue(t, conflicts)
				return testguard.Poll(time.Minute, time.Millisecond, "the second replica's flush", func() (int64, bool, error) {
					return 0, counterValue(t, conflicts) > before, nil
				})
			}
			return nil
		})
		store := &getHookStore{CursorStore: second.ToStore(db), done: gotCursor}
		secondErr <- reflex.Run(t.Context(), reflex.NewSpec(log.Stream, store, consumer))
	}()

	// The second replica reads the (missing) cursor before the first one
	// runs.
	select {
	case <-gotCursor:
	case <-time.After(2 * time.Minute):
		t.Fatal("the second replica did not read its cursor")
	}
	consumer := reflex.NewConsumer("replicated", func(context.Context, *reflex.Event) error { return nil })
	if err := reflex.Run(t.Context(), reflex.NewSpec(log.Stream, first.ToStore(db), consumer, reflex.WithStreamToHead())); !reflex.IsHeadReachedErr(err) {
		t.Fatalf("first replica: %v", err)
	}
	close(firstDone)
	select {
	case err := <-secondErr:
		if !errors.Is(err, rsql.ErrConcurrentWriter) {
			t.Fatalf("second replica's run = %v, want ErrConcurrentWriter", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the second replica's run did not end")
	}
	curWant(t, rsql.NewCursorsTable(first.Name(), rsql.WithCursorAsyncDisabled()), db, "replicated", "100")
}

// getHookStore closes done after its first GetCursor.
type getHookStore struct {
	reflex.CursorStore
	done chan struct{}
	once sync.Once
}

func (s *getHookStore) GetCursor(ctx context.Context, name string) (string, error) {
	c, err := s.CursorStore.GetCursor(ctx, name)
	s.once.Do(func() { close(s.done) })
	return c, err
}

// TestCursorsAsyncRefusesTx: an asynchronous table, which writes later,
// refuses a transaction as its handle instead of buffering a cursor that
// no flush could ever write.
func TestCursorsAsyncRefusesTx(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour))
	tx, err := db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	err = ct.SetCursor(t.Context(), tx, "c", "1")
	if err == nil || !strings.Contains(err.Error(), "*sql.Tx") || !strings.Contains(err.Error(), "WithCursorAsyncDisabled") {
		t.Fatalf("async SetCursor through a transaction = %v, want an error saying what to do", err)
	}
	if err := ct.ToStore(tx).SetCursor(t.Context(), "c", "1"); err == nil {
		t.Error("async store over a transaction accepted a cursor")
	}
	curFlush(t, ct) // nothing buffered
	curSet(t, ct, db, "c", "1")
	curFlush(t, ct)
	curWant(t, ct, db, "c", "1")
}

// frozenDBC is a database that never answers: every statement blocks until
// its context ends. Tables using it skip their catalog read.
type frozenDBC struct{}

func (frozenDBC) ExecContext(ctx context.Context, _ string, _ ...any) (sql.Result, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (frozenDBC) QueryContext(ctx context.Context, _ string, _ ...any) (*sql.Rows, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (frozenDBC) QueryRowContext(context.Context, string, ...any) *sql.Row {
	panic("frozenDBC: unexpected QueryRowContext")
}

// TestCursorsCloseBounded: Close returns within the flush timeout (10 s
// by default) when the database does not answer, also while a background
// flush is stuck, and closing a store with its own table is bounded too.
func TestCursorsCloseBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []rsql.CursorsOption
		want time.Duration
	}{
		{"Default", nil, 10 * time.Second},
		{"Option", []rsql.CursorsOption{rsql.WithCursorFlushTimeout(2 * time.Second)}, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ct := rsql.NewCursorsTable("cursors", tc.opts...)
				rsql.SkipCursorsCatalog(ct)
				if err := ct.SetCursor(t.Context(), frozenDBC{}, "c", "1"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5*time.Second + time.Second/2) // the background flush is stuck
				start := time.Now()
				err := ct.Close()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Close = %v, want context.DeadlineExceeded", err)
				}
				if got := time.Since(start); got != tc.want {
					t.Errorf("Close took %v, want %v", got, tc.want)
				}

				parent := rsql.NewCursorsTable("cursors", tc.opts...)
				s := parent.ToStore(frozenDBC{}, rsql.WithCursorAsyncPeriod(time.Hour))
				rsql.SkipCursorsCatalog(rsql.StoreTable(s))
				if err := s.SetCursor(t.Context(), "c", "1"); err != nil {
					t.Fatal(err)
				}
				start = time.Now()
				if err := s.Close(); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != tc.want {
					t.Errorf("store Close = %v after %v, want context.DeadlineExceeded after %v", err, time.Since(start), tc.want)
				}
				if err := parent.Close(); err != nil {
					t.Errorf("parent Close = %v", err)
				}
			})
		})
	}
}

// TestCursorsCloseWhileTableLocked: against MariaDB, Close returns after
// the flush timeout while the table is locked by another session; the
// unflushed cursor stays buffered (GetCursor returns it, a later Flush
// writes it), and a process that ended here would replay its events.
func TestCursorsCloseWhileTableLocked(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour), rsql.WithCursorFlushTimeout(time.Second))
	curWant(t, ct, db, "c", "")
	curSet(t, ct, db, "c", "5")
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "LOCK TABLES "+ct.Name()+" WRITE"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ct.Close() }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Close blocked while the table was locked")
	}
	if _, err := conn.ExecContext(t.Context(), "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}
	curWant(t, ct, db, "c", "5")
	curFlush(t, ct)
	curWant(t, rsql.NewCursorsTable(ct.Name(), rsql.WithCursorAsyncDisabled()), db, "c", "5")
}

// TestCursorsToStoreOwnsClone: a store made with options owns its table
// and its background flush: closing the store, or the table it was made
// from, stops the flush (synctest fails the test if a goroutine is left).
func TestCursorsToStoreOwnsClone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recordingDBC{}
		parent := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncPeriod(time.Hour))
		stores := make([]*rsql.CursorStore, 2)
		for i := range stores {
			stores[i] = parent.ToStore(r, rsql.WithCursorAsyncPeriod(time.Second))
			rsql.SkipCursorsCatalog(rsql.StoreTable(stores[i]))
			if err := stores[i].SetCursor(t.Context(), "c", "1"); err != nil {
				t.Fatal(err)
			}
		}
		var store reflex.CursorStore = stores[0] // as luno/reflex's ToStore returns it
		time.Sleep(time.Second)
		synctest.Wait()
		if n := r.count(); n != 2 {
			t.Fatalf("%d flushes after a period, want 2 (one per store)", n)
		}
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				if err := stores[0].Close(); err != nil {
					t.Errorf("store Close: %v", err)
				}
			})
		}
		wg.Wait()
		if err := store.SetCursor(t.Context(), "c", "2"); !errors.Is(err, rsql.ErrCursorsTableClosed) {
			t.Errorf("SetCursor on a closed store = %v, want ErrCursorsTableClosed", err)
		}
		// The parent closes the store it still owns.
		if err := stores[1].SetCursor(t.Context(), "c", "2"); err != nil {
			t.Fatal(err)
		}
		if err := parent.Close(); err != nil {
			t.Fatal(err)
		}
		if err := stores[1].SetCursor(t.Context(), "c", "3"); !errors.Is(err, rsql.ErrCursorsTableClosed) {
			t.Errorf("SetCursor on a store of a closed table = %v, want ErrCursorsTableClosed", err)
		}
		if n := r.count(); n != 3 {
			t.Errorf("%d flushes, want 3 (the parent's Close flushed the store's table)", n)
		}
	})
}
