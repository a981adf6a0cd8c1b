package rsql_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// crashChildEnv, when set to a DSN, makes TestCursorsCrash run as the
// consumer process of the crash test instead of as the test;
// crashEngineEnv names its engine.
const (
	crashChildEnv  = "RSQL_CURSORS_CRASH_CHILD_DSN"
	crashEngineEnv = "RSQL_CURSORS_CRASH_CHILD_ENGINE"
)

const (
	crashKills    = 12                     // SIGKILLs of the consumer (issue: at least 10)
	crashMinDelay = 100 * time.Millisecond // life of a consumer process before its kill: random in
	crashMaxDelay = 700 * time.Millisecond // [min, max)
	crashConsumer = "crash-consumer"
)

type crashType int

func (c crashType) ReflexType() int { return int(c) }

// TestCursorsCrash kills a consumer process that uses an asynchronous SQL
// cursors table with SIGKILL at random points while events are produced,
// and restarts it, at least ten times. The consumer records each event it
// consumes in a `consumed` table before returning nil. After each kill
// the stored cursor must never be beyond the last consumed event, every
// event up to it must have been consumed, and it must never move back; at
// the end every event has been consumed at least once. On MariaDB and
// PostgreSQL.
func TestCursorsCrash(t *testing.T) {
	if dsn := os.Getenv(crashChildEnv); dsn != "" {
		crashChild(engineByName(os.Getenv(crashEngineEnv)), dsn) // never returns
	}
	if testing.Short() {
		t.Skip("skipping the crash test (it takes about 10 s) in -short mode")
	}
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) { cursorsCrash(t, e) })
	}
}

func cursorsCrash(t *testing.T, e engine) {
	db, dsn := e.open(t)
	tables := rsqltest.Tables{Dialect: e.d}
	tables.CreateEventsTable(t, db, "events")
	tables.CreateCursorsTable(t, db, "cursors")
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE consumed (id BIGINT NOT NULL PRIMARY KEY, n INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}

	// Produce events until the kills are over.
	prodCtx, stopProducer := context.WithCancel(t.Context())
	var producer sync.WaitGroup
	var prodErr error
	producer.Go(func() {
		events := rsql.NewEventsTable("events", rsql.WithEventsDialect(e.d))
		defer events.Close()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-prodCtx.Done():
				return
			case <-tick.C:
			}
			notify, err := events.Insert(prodCtx, db, strconv.Itoa(i), crashType(1+i%3))
			if err != nil {
				if prodCtx.Err() == nil {
					prodErr = err
				}
				return
			}
			notify()
		}
	})
	defer func() { stopProducer(); producer.Wait() }()

	var prevCursor int64
	consumedSoFar := func() (int64, error) {
		var n int64
		err := db.QueryRowContext(t.Context(), "SELECT COALESCE(SUM(n), 0) FROM consumed").Scan(&n)
		return n, err
	}
	for kill := range crashKills {
		before, err := consumedSoFar()
		if err != nil {
			t.Fatal(err)
		}
		child := startCrashChild(t, e, dsn)
		// The random kill point is counted from the child's first
		// consumption, not from its start: a race-built child on a busy
		// machine may take longer to start than the whole delay.
		err = testguard.Poll(time.Minute, 5*time.Millisecond, "the consumer's first event after its start", func() (int64, bool, error) {
			n, err := consumedSoFar()
			return n, n > before, err
		})
		if err != nil {
			t.Fatalf("consumer %d: %v\n%s", kill, err, child.out.String())
		}
		delay := crashMinDelay + rand.N(crashMaxDelay-crashMinDelay)
		select {
		case <-time.After(delay):
		case <-child.exited:
			t.Fatalf("consumer %d exited early: %v\n%s", kill, child.err, child.out.String())
		}
		child.kill(t)
		cursor := checkCrashInvariants(t, e, db, kill)
		if cursor < prevCursor {
			t.Fatalf("after kill %d the stored cursor moved back from %d to %d", kill, prevCursor, cursor)
		}
		prevCursor = cursor
	}
	stopProducer()
	producer.Wait()
	if prodErr != nil {
		t.Fatalf("producer: %v", prodErr)
	}

	// A last consumer catches up with every event.
	var head int64
	if err := db.QueryRowContext(t.Context(), "SELECT MAX(id) FROM events").Scan(&head); err != nil {
		t.Fatal(err)
	}
	child := startCrashChild(t, e, dsn)
	// Bounded by progress, not by the clock: fail only when the count of
	// unconsumed events stops falling.
	err := testguard.Poll(time.Minute, 10*time.Millisecond, "the last consumer's catch-up", func() (int64, bool, error) {
		var missing int64
		err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM events e LEFT JOIN consumed c ON c.id = e.id WHERE c.id IS NULL").Scan(&missing)
		return missing, missing == 0, err
	})
	if err != nil {
		t.Fatalf("of %d events, not all consumed after the last restart: %v\n%s", head, err, child.out.String())
	}
	child.kill(t)
	checkCrashInvariants(t, e, db, crashKills)

	var dups, replays int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*), COALESCE(SUM(n - 1), 0) FROM consumed WHERE n > 1").Scan(&dups, &replays); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events, %d kills, cursor %d before the last run; %d events consumed more than once (%d replays)",
		head, crashKills, prevCursor, dups, replays)
	if prevCursor == 0 {
		t.Errorf("the stored cursor never advanced during the kills")
	}
}

// checkCrashInvariants checks the stored cursor against the consumed
// events and returns it.
func checkCrashInvariants(t *testing.T, e engine, db *sql.DB, kill int) int64 {
	t.Helper()
	ctx := t.Context()
	s, err := rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(e.d)).GetCursor(ctx, db, crashConsumer)
	if err != nil {
		t.Fatal(err)
	}
	var cursor int64
	if s != "" {
		if cursor, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("stored cursor %q: %v", s, err)
		}
	}
	var lastConsumed int64
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM consumed").Scan(&lastConsumed); err != nil {
		t.Fatal(err)
	}
	if cursor > lastConsumed {
		t.Fatalf("after kill %d the stored cursor %d is beyond the last consumed event %d", kill, cursor, lastConsumed)
	}
	var missing int
	var first sql.NullInt64
	err = db.QueryRowContext(ctx, e.q("SELECT COUNT(*), MIN(e.id) FROM events e LEFT JOIN consumed c ON c.id = e.id WHERE e.id <= ? AND c.id IS NULL"), cursor).
		Scan(&missing, &first)
	if err != nil {
		t.Fatal(err)
	}
	if missing > 0 {
		t.Fatalf("after kill %d, %d events up to the stored cursor %d were never consumed (first %d)", kill, missing, cursor, first.Int64)
	}
	return cursor
}

// crashProc is a running consumer process.
type crashProc struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	out    *syncBuffer
	exited chan struct{} // closed when the process has exited; err is set
	err    error
}

// startCrashChild re-executes the test binary as a consumer process.
func startCrashChild(t *testing.T, e engine, dsn string) *crashProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCursorsCrash$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dsn, crashEngineEnv+"="+e.name)
	p := &crashProc{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	stdin, err := cmd.StdinPipe() // the child exits when the parent goes away
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatalf("start consumer process: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill(t) })
	return p
}

// kill sends SIGKILL and waits for the process to exit.
func (p *crashProc) kill(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill() // SIGKILL
	<-p.exited
	_ = p.stdin.Close()
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// crashChild is the consumer process: it runs the consumer forever,
// recording each event before acknowledging it, with a cursors table that
// flushes every 20 ms, until it is killed (or its parent goes away).
func crashChild(e engine, dsn string) {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3) // the parent closed stdin or died
	}()
	db, err := sql.Open(e.driver, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	events := rsql.NewEventsTable("events", rsql.WithEventsDialect(e.d), rsql.WithEventsBackoff(10*time.Millisecond))
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(e.d), rsql.WithCursorAsyncPeriod(20*time.Millisecond))
	upsert := "INSERT INTO consumed (id, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1"
	if e.d == rsql.PostgreSQL {
		upsert = "INSERT INTO consumed (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = consumed.n + 1"
	}
	consumer := reflex.NewConsumer(crashConsumer, func(ctx context.Context, ev *reflex.Event) error {
		_, err := db.ExecContext(ctx, upsert, ev.IDInt())
		return err
	})
	spec := reflex.NewSpec(events.ToStream(db), cursors.ToStore(db), consumer)
	ctx := context.Background()
	for {
		err := reflex.Run(ctx, spec)
		fmt.Fprintln(os.Stderr, "crash child: run:", err)
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
