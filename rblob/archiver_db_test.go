package rblob_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the child process opens the DSN itself
	"gocloud.dev/blob/fileblob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

const (
	childDSN = "RBLOB_TEST_CHILD_DSN"
	childDir = "RBLOB_TEST_CHILD_DIR"

	dbEvents     = 100_000
	dbObjectSize = 5_000 // 20 objects
)

func dbEventsTable() *rsql.EventsTable {
	return rsql.NewEventsTable("events", rsql.WithEventMetadataField("metadata"))
}

func newDBArchiver(t testing.TB, dir string) (*rblob.Archiver, func()) {
	raw, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatalf("fileblob.OpenBucket: %v", err)
	}
	a := rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(dbObjectSize), rblob.WithArchiveMaxAge(0))
	return a, func() { _ = a.Close(); _ = raw.Close() }
}

// TestArchiveEventsTable archives a MariaDB events table of 100,000 events
// into a fileblob bucket, SIGKILLs the archiving process twice mid-way,
// finishes in-process, and then checks that streaming the bucket from the
// start yields every event exactly once, in order, with identical ids,
// types, foreign ids, timestamps and metadata.
func TestArchiveEventsTable(t *testing.T) {
	db, dsn := dbtest.OpenDSN(t)
	rsqltest.CreateEventsTable(t, db, "events")
	rsqltest.CreateCursorsTable(t, db, "cursors")
	table := dbEventsTable()
	ctx := t.Context()

	batch := make([]rsql.EventToInsert, 0, 1000)
	for i := 1; i <= dbEvents; i++ {
		e := rsql.EventToInsert{ForeignID: fmt.Sprintf("user-%d", i%977), Type: evType(1 + i%9)}
		switch i % 3 {
		case 1:
			e.MetaData = fmt.Appendf(nil, `{"seq":%d}`, i)
		case 2:
			e.MetaData = []byte{0, byte(i), byte(i >> 8), '\n', 0xff}
		}
		batch = append(batch, e)
		if len(batch) == cap(batch) {
			if _, err := table.InsertMany(ctx, db, batch); err != nil {
				t.Fatalf("InsertMany: %v", err)
			}
			batch = batch[:0]
		}
	}

	dir := t.TempDir()
	count := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "*"+rblob.ArchiveKeySuffix))
		return len(m)
	}
	total := dbEvents / dbObjectSize
	for kill := 1; kill <= 2; kill++ {
		at := count() + 3
		n := runChildUntil(t, dsn, dir, func() bool { return count() >= at })
		t.Logf("kill %d: SIGKILLed the archiver with %d of %d objects written", kill, n, total)
		if n >= total {
			t.Fatalf("kill %d happened after the archive was complete", kill)
		}
	}

	// Restart in-process and finish.
	skipped := metrics.NewRBlobArchiver("archiver").Skipped
	skippedBefore := counterValue(t, skipped)
	cursors := rsql.NewCursorsTable("cursors")
	defer cursors.Close()
	a, closeA := newDBArchiver(t, dir)
	defer closeA()
	stream := table.ToStream(db)
	archive(t, a, stream, cursors.ToStore(db))
	if c, err := cursors.GetCursor(ctx, db, "archiver"); err != nil || c != fmt.Sprint(dbEvents) {
		t.Errorf("archiver cursor = %q, %v; want %d", c, err, dbEvents)
	}

	t.Logf("the final run skipped %v events already archived", counterValue(t, skipped)-skippedBefore)

	raw, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	got := replay(t, raw)
	want := readEvents(t, db)
	if len(want) != dbEvents {
		t.Fatalf("read %d events from the table, want %d", len(want), dbEvents)
	}
	sameEvents(t, got, want)
	if n := count(); n != total {
		t.Errorf("%d objects, want %d", n, total)
	}
}

// readEvents reads the events table directly, in ID order.
func readEvents(t *testing.T, db *sql.DB) []reflex.Event {
	rows, err := db.QueryContext(t.Context(), "SELECT id, type, foreign_id, timestamp, metadata FROM events ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []reflex.Event
	for rows.Next() {
		var (
			e   reflex.Event
			typ int
		)
		if err := rows.Scan(&e.ID, &typ, &e.ForeignID, &e.Timestamp, &e.MetaData); err != nil {
			t.Fatal(err)
		}
		e.Type = evType(typ)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// runChildUntil runs TestArchiverChild in a child process and SIGKILLs it
// once done reports true; it returns the number of objects then.
func runChildUntil(t *testing.T, dsn, dir string, done func() bool) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestArchiverChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDSN+"="+dsn, childDir+"="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	guard := time.After(2 * time.Minute) // hang guard
	for !done() {
		select {
		case err := <-exited:
			t.Fatalf("child exited early: %v\n%s", err, out.String())
		case <-guard:
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("child made no progress\n%s", out.String())
		case <-tick.C:
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatalf("kill child: %v", err)
	}
	<-exited
	m, _ := filepath.Glob(filepath.Join(dir, "*"+rblob.ArchiveKeySuffix))
	return len(m)
}

// TestArchiverChild is the archiving process of TestArchiveEventsTable. It
// archives until killed, with the default asynchronous cursors table, and
// is throttled so that kills land mid-way.
func TestArchiverChild(t *testing.T) {
	dsn, dir := os.Getenv(childDSN), os.Getenv(childDir)
	if dsn == "" || dir == "" {
		t.Skip("runs only as the child process of TestArchiveEventsTable")
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cursors := rsql.NewCursorsTable("cursors")
	defer cursors.Close()
	a, closeA := newDBArchiver(t, dir)
	defer closeA()
	err = reflex.Run(t.Context(), a.Spec(throttle(dbEventsTable().ToStream(db)), cursors.ToStore(db)))
	t.Fatalf("Run: %v", err)
}

// throttle pauses a stream for 10ms every 1,000 events.
func throttle(stream reflex.StreamFunc) reflex.StreamFunc {
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		cl, err := stream(ctx, after, opts...)
		if err != nil {
			return nil, err
		}
		return &throttled{StreamClient: cl, ctx: ctx}, nil
	}
}

type throttled struct {
	reflex.StreamClient
	ctx context.Context
	n   int
}

func (c *throttled) Recv() (*reflex.Event, error) {
	if c.n++; c.n%1000 == 0 {
		select {
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return c.StreamClient.Recv()
}
