package rblob_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocloud.dev/blob/fileblob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// retentionTable is the events table of the retention tests.
func retentionTable() *rsql.EventsTable {
	return rsql.NewEventsTable("events", rsql.WithEventMetadataField("metadata"), rsql.WithEventsBackoff(10*time.Millisecond))
}

func openFileBucket(t testing.TB, dir string) *rblob.Bucket {
	t.Helper()
	raw, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	return rblob.NewBucket("retention", raw, rblob.WithBackoff(testBackoff))
}

// checkConsumer checks that it consumes the events after its start, in
// order, each once, with the content tieredEvent gives its ID.
type checkConsumer struct {
	next  int64 // ID expected next
	last  int64 // stop (return errDone) after this ID
	guard *testguard.Guard
	err   error
}

var errDone = errors.New("all events consumed")

func (c *checkConsumer) Name() string { return "check" }

func (c *checkConsumer) Consume(_ context.Context, e *reflex.Event) error {
	id, err := strconv.ParseInt(e.ID, 10, 64)
	if err != nil || id != c.next {
		c.err = fmt.Errorf("event %q, want %d", e.ID, c.next)
		return c.err
	}
	w := tieredEvent(int(id))
	if e.ForeignID != w.ForeignID || !reflex.IsType(e.Type, w.Type) || string(e.MetaData) != string(w.MetaData) {
		c.err = fmt.Errorf("event %s = (%q, %d, %q), want (%q, %d, %q)", e.ID, e.ForeignID, e.Type.ReflexType(), e.MetaData, w.ForeignID, w.Type.ReflexType(), w.MetaData)
		return c.err
	}
	c.next++
	if c.next%1000 == 0 {
		c.guard.Tick()
	}
	if id == c.last {
		return errDone
	}
	return nil
}

// consumeAll runs a consumer of stream from after to the event last,
// checking every event; it returns how long that took.
func consumeAll(t *testing.T, stream reflex.StreamFunc, after, last int64) time.Duration {
	t.Helper()
	ctx, guard := testguard.Progress(t, time.Minute, "consuming the tiered stream")
	c := &checkConsumer{next: after + 1, last: last, guard: guard}
	store := rpatterns.MemCursorStore()
	if after > 0 {
		_ = store.SetCursor(ctx, c.Name(), strconv.FormatInt(after, 10))
	}
	start := time.Now()
	err := reflex.Run(ctx, reflex.NewSpec(stream, store, c))
	d := time.Since(start)
	if !errors.Is(err, errDone) {
		t.Fatalf("consuming from %d: Run = %v (consumer: %v), next expected %d", after, err, c.err, c.next)
	}
	return d
}

// TestRetentionHistory produces events into a MariaDB table while an
// archiver writes them into a fileblob bucket, trims the table to its last
// 10,000 events, and then reads the whole history through the tiered
// stream: a new consumer from cursor 0 sees every event in order exactly
// once, and a consumer of the table whose cursor was in the trimmed range
// goes on from the archive without loss. 100,000 events; 1,000,000 with
// -long.
func TestRetentionHistory(t *testing.T) {
	n := int64(100_000)
	if *long {
		n = 1_000_000
	}
	const keep = 10_000
	db := dbtest.Open(t)
	rsqltest.CreateEventsTable(t, db, "events")
	rsqltest.CreateCursorsTable(t, db, "cursors")
	table := retentionTable()
	t.Cleanup(func() { _ = table.Close() })
	dir := t.TempDir()
	bucket := openFileBucket(t, dir)

	// The archiver runs while the events are produced.
	raw, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncPeriod(50*time.Millisecond))
	defer cursors.Close()
	archiver := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxAge(100*time.Millisecond))
	defer archiver.Close()
	archCtx, stopArchiver := context.WithCancel(t.Context())
	var archiving sync.WaitGroup
	var archErr error
	archiving.Go(func() {
		archErr = reflex.Run(archCtx, archiver.Spec(table.ToStream(db), cursors.ToStore(db)))
	})

	// An old consumer of the table, a third of the way.
	old := n / 3
	start := time.Now()
	ctx, guard := testguard.Progress(t, time.Minute, "producing events")
	batch := make([]rsql.EventToInsert, 0, 1000)
	for i := int64(1); i <= n; i++ {
		e := tieredEvent(int(i))
		batch = append(batch, rsql.EventToInsert{ForeignID: e.ForeignID, Type: e.Type, MetaData: e.MetaData})
		if len(batch) == cap(batch) || i == n {
			if _, err := table.InsertMany(ctx, db, batch); err != nil {
				t.Fatalf("InsertMany: %v", err)
			}
			batch = batch[:0]
			guard.Tick()
		}
	}
	produced := time.Since(start)
	plain := &checkConsumer{next: 1, last: old, guard: guard}
	if err := reflex.Run(ctx, reflex.NewSpec(table.ToStream(db), rpatterns.MemCursorStore(), plain)); !errors.Is(err, errDone) {
		t.Fatalf("old consumer: %v (%v)", err, plain.err)
	}

	// Wait until everything is archived (the durable cursor).
	reader := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncDisabled())
	defer reader.Close()
	err = testguard.Poll(time.Minute, 20*time.Millisecond, "archiving", func() (int64, bool, error) {
		c, err := reader.GetCursor(t.Context(), db, "archiver")
		if err != nil || c == "" {
			return 0, false, err
		}
		id, err := strconv.ParseInt(c, 10, 64)
		return id, id == n, err
	})
	if err != nil {
		t.Fatal(err)
	}
	archived := time.Since(start)
	stopArchiver()
	archiving.Wait()
	if !errors.Is(archErr, context.Canceled) {
		t.Fatalf("archiver: %v", archErr)
	}

	// Trim to the last 10,000.
	tr, err := rsql.NewTrimmer(db, table, time.Hour, rsql.WithTrimArchive(reader.ToStore(db), "archiver"))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	r, err := tr.TrimBelow(t.Context(), n-keep+1)
	if err != nil {
		t.Fatalf("TrimBelow: %v", err)
	}
	trimmed := time.Since(start)
	if r.Rows != n-keep || r.Through != n-keep || r.Oldest != n-keep+1 {
		t.Fatalf("TrimBelow(%d) = %+v", n-keep+1, r)
	}
	var rows int64
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM events").Scan(&rows); err != nil || rows != keep+1 {
		t.Fatalf("the table holds %d rows (%v), want %d (the marker and the last %d events)", rows, err, keep+1, keep)
	}

	tiered := bucket.StreamTiered(table.ToStream(db), func(ctx context.Context) (int64, error) { return table.TrimmedThrough(ctx, db) })
	full := consumeAll(t, tiered, 0, n)

	// The old consumer: the table fails it, the tiered stream resumes it.
	_, err = recvFirst(t, table.ToStream(db), strconv.FormatInt(old, 10))
	if !errors.Is(err, rsql.ErrTrimmed) {
		t.Errorf("the old consumer's table stream: %v, want ErrTrimmed", err)
	}
	consumeAll(t, tiered, old, n)

	t.Logf("%d events: produced in %v, archived after %v, trimmed %d rows in %v (%.0f rows/s, %d statements, longest %v), tiered replay from 0 in %v (%.0f events/s)",
		n, produced.Round(time.Millisecond), archived.Round(time.Millisecond), r.Rows, trimmed.Round(time.Millisecond),
		float64(r.Rows)/trimmed.Seconds(), r.Statements, r.Longest, full.Round(time.Millisecond), float64(n)/full.Seconds())
}

// recvFirst opens a stream after after and returns its first result.
func recvFirst(t *testing.T, stream reflex.StreamFunc, after string) (*reflex.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // hang guard
	defer cancel()
	cl, err := stream(ctx, after)
	if err != nil {
		return nil, err
	}
	defer cl.(io.Closer).Close()
	return cl.Recv()
}

const (
	retentionChildRole = "RBLOB_RETENTION_CHILD"
	retentionChildDSN  = "RBLOB_RETENTION_DSN"
	retentionChildDir  = "RBLOB_RETENTION_DIR"
	retentionObject    = 500 // events per archive object in the crash test
	retentionChunk     = 200 // rows per trim chunk in the crash test
)

// TestRetentionCrash SIGKILLs the archiver mid-object and the trimmer
// mid-chunk, three times each, while events are produced, restarting them
// each time: after each kill the trimmer has deleted only archived rows and
// the table holds every event after its marker; at the end the tiered
// stream yields every event exactly once, in order.
func TestRetentionCrash(t *testing.T) {
	if role := os.Getenv(retentionChildRole); role != "" {
		retentionChild(t, role) // never returns
	}
	if testing.Short() {
		t.Skip("skipping the retention crash test in -short mode")
	}
	db, dsn := dbtest.OpenDSN(t)
	rsqltest.CreateEventsTable(t, db, "events")
	rsqltest.CreateCursorsTable(t, db, "cursors")
	table := retentionTable()
	t.Cleanup(func() { _ = table.Close() })
	dir := t.TempDir()
	reader := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncDisabled())
	defer reader.Close()
	archivedThrough := func() int64 {
		c, err := reader.GetCursor(t.Context(), db, "archiver")
		if err != nil {
			t.Fatal(err)
		}
		id, _ := strconv.ParseInt(c, 10, 64)
		return id
	}
	objects := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "*"+rblob.ArchiveKeySuffix))
		return len(m)
	}

	// Produce events until the kills are over: event i has ID i.
	prodCtx, stopProducer := context.WithCancel(t.Context())
	var producer sync.WaitGroup
	var prodErr error
	var produced atomic.Int64
	producer.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		batch := make([]rsql.EventToInsert, 50)
		for {
			select {
			case <-prodCtx.Done():
				return
			case <-tick.C:
			}
			for j := range batch {
				e := tieredEvent(int(produced.Load()) + j + 1)
				batch[j] = rsql.EventToInsert{ForeignID: e.ForeignID, Type: e.Type, MetaData: e.MetaData}
			}
			// Not cancelled mid-insert: an insert that commits is counted.
			if _, err := table.InsertMany(t.Context(), db, batch); err != nil {
				prodErr = err
				return
			}
			produced.Add(int64(len(batch)))
		}
	})
	defer func() { stopProducer(); producer.Wait() }()

	for kill := 1; kill <= 3; kill++ {
		// The archiver, killed once it wrote (and stored the cursor of)
		// two more objects, with events buffered for the next.
		at := archivedThrough() + 2*retentionObject
		child := startRetentionChild(t, "archiver", dsn, dir)
		err := testguard.Poll(time.Minute, 2*time.Millisecond, "the archiver child", func() (int64, bool, error) {
			a := archivedThrough()
			return a, a >= at, child.exitErr()
		})
		if err != nil {
			t.Fatalf("archiver %d: %v\n%s", kill, err, child.output())
		}
		time.Sleep(time.Duration(rand.N(20)) * time.Millisecond) // a random point in the next object, not a synchronisation
		child.kill(t)

		// The trimmer, killed inside a chunk: a row the chunk deletes is
		// locked here, so the chunk waits with rows deleted.
		before, err := table.TrimmedThrough(t.Context(), db)
		if err != nil {
			t.Fatal(err)
		}
		rowsBefore := countRows(t, db)
		arch := archivedThrough()
		if arch-before < 4 {
			t.Fatalf("kill %d: archived through %d, trimmed through %d: nothing to trim", kill, arch, before)
		}
		lock, err := db.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		locked := before + min(retentionChunk/2, (arch-before)/2)
		if _, err := lock.ExecContext(t.Context(), "SELECT id FROM events WHERE id = ? FOR UPDATE", locked); err != nil {
			t.Fatal(err)
		}
		child = startRetentionChild(t, "trimmer", dsn, dir)
		err = testguard.Poll(time.Minute, 2*time.Millisecond, "the trimmer child", func() (int64, bool, error) {
			// Its DELETE cannot pass the locked row: once it runs, the
			// chunk has deleted rows (those before the locked one) and
			// waits, uncommitted.
			var waiting int64
			err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND INFO LIKE 'DELETE FROM%' AND TIME >= 1").Scan(&waiting)
			if err == nil {
				err = child.exitErr()
			}
			return 0, waiting > 0, err
		})
		if err != nil {
			t.Fatalf("trimmer %d: %v\n%s", kill, err, child.output())
		}
		child.kill(t)
		_ = lock.Rollback()
		after, err := table.TrimmedThrough(t.Context(), db)
		if err != nil {
			t.Fatal(err)
		}
		if after != before || countRows(t, db) < rowsBefore {
			t.Errorf("kill %d: the killed chunk changed the table: trimmed through %d -> %d, %d rows -> %d", kill, before, after, rowsBefore, countRows(t, db))
		}
		// A trimmer run to completion: never past the archive, and the
		// table holds every event after its marker.
		child = startRetentionChild(t, "trimmer", dsn, dir)
		err = testguard.Poll(time.Minute, 5*time.Millisecond, "the trimmer child's pass", func() (int64, bool, error) {
			th, err := table.TrimmedThrough(t.Context(), db)
			return th, th > before, err
		})
		if err != nil {
			t.Fatalf("trimmer %d: %v\n%s", kill, err, child.output())
		}
		child.kill(t)
		checkRetention(t, db, table, archivedThrough())
		now, _ := table.TrimmedThrough(t.Context(), db)
		t.Logf("kill %d: %d objects, archived through %d, trimmed through %d (the killed chunk left it at %d), %d events produced",
			kill, objects(), archivedThrough(), now, after, produced.Load())
	}
	stopProducer()
	producer.Wait()
	if prodErr != nil {
		t.Fatal(prodErr)
	}

	// Finish in-process: archive to the head, trim, read everything.
	raw, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	archiver := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(retentionObject), rblob.WithArchiveMaxAge(0))
	defer archiver.Close()
	archive(t, archiver, table.ToStream(db), reader.ToStore(db))
	head, err := table.Head(t.Context(), db)
	if err != nil || head != produced.Load() {
		t.Fatalf("head %d (%v), want %d", head, err, produced.Load())
	}
	tr, err := rsql.NewTrimmer(db, table, time.Hour, rsql.WithTrimArchive(reader.ToStore(db), "archiver"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.TrimBelow(t.Context(), head-100); err != nil {
		t.Fatal(err)
	}
	checkRetention(t, db, table, head)
	bucket := openFileBucket(t, dir)
	consumeAll(t, bucket.StreamTiered(table.ToStream(db), func(ctx context.Context) (int64, error) { return table.TrimmedThrough(ctx, db) }), 0, head)
	// Nothing duplicated in the archive either (StreamArchived fails on an
	// ID that does not increase).
	consumeAll(t, bucket.StreamArchived, 0, head)
}

func countRows(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkRetention checks that the table is trimmed at most through
// archived and holds every ID after its marker.
func checkRetention(t *testing.T, db *sql.DB, table *rsql.EventsTable, archived int64) {
	t.Helper()
	th, err := table.TrimmedThrough(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if th > archived {
		t.Fatalf("the table is trimmed through %d, past the archived %d", th, archived)
	}
	var lo, hi, n int64
	if err := db.QueryRowContext(t.Context(), "SELECT MIN(id), MAX(id), COUNT(*) FROM events WHERE id > ?", th).Scan(&lo, &hi, &n); err != nil {
		t.Fatal(err)
	}
	if n != hi-lo+1 || lo != th+1 {
		t.Fatalf("after the marker %d the table holds %d rows with IDs %d to %d: rows lost", th, n, lo, hi)
	}
	var below int64
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM events WHERE id <= ?", th).Scan(&below); err != nil {
		t.Fatal(err)
	}
	if th > 0 && below != 1 {
		t.Fatalf("%d rows at or below the marker %d, want 1", below, th)
	}
}

// retentionProc is a child process of TestRetentionCrash.
type retentionProc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error
}

func startRetentionChild(t *testing.T, role, dsn, dir string) *retentionProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRetentionCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), retentionChildRole+"="+role, retentionChildDSN+"="+dsn, retentionChildDir+"="+dir)
	p := &retentionProc{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.exited })
	return p
}

// exitErr returns an error if the child exited.
func (p *retentionProc) exitErr() error {
	select {
	case <-p.exited:
		return fmt.Errorf("child exited early: %v", p.err)
	default:
		return nil
	}
}

func (p *retentionProc) output() string { return p.out.String() }

func (p *retentionProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatalf("kill: %v", err)
	}
	<-p.exited
}

// syncBuffer is a bytes buffer safe for the writes of exec's copying
// goroutines and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// retentionChild runs as the archiver (until killed) or the trimmer (one
// pass at a time, until killed) of TestRetentionCrash.
func retentionChild(t *testing.T, role string) {
	dsn, dir := os.Getenv(retentionChildDSN), os.Getenv(retentionChildDir)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	table := retentionTable()
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncPeriod(50*time.Millisecond))
	defer cursors.Close()
	ctx := context.Background()
	switch role {
	case "archiver":
		raw, err := fileblob.OpenBucket(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		a := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(retentionObject), rblob.WithArchiveMaxAge(0))
		err = reflex.Run(ctx, a.Spec(throttle(table.ToStream(db)), cursors.ToStore(db)))
		t.Fatalf("archiver: %v", err)
	case "trimmer":
		tr, err := rsql.NewTrimmer(db, table, time.Hour, rsql.WithTrimArchive(cursors.ToStore(db), "archiver"), rsql.WithTrimChunk(retentionChunk))
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := tr.TrimBelow(ctx, math.MaxInt64); err != nil {
				t.Fatalf("trimmer: %v", err)
			}
		}
	}
	t.Fatalf("unknown role %q", role)
}
