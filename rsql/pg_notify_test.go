package rsql_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"weak"

	"github.com/jackc/pgx/v5"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// pgWriterEnv, when set to a DSN, makes TestPGNotifyWakesOtherProcess run
// as a writer process (pgWriterChild) instead of as the test.
const pgWriterEnv = "RSQL_PG_WRITER_DSN"

// pgWriter is a writer in another process: for each table name written
// to it, it inserts one event in a transaction, commits and calls the
// insert's NotifyFunc, then answers with the event's ID.
type pgWriter struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	// errOut is the child's standard error, for failures.
	errOut *syncBuffer
}

func startPGWriter(t *testing.T, dsn string) *pgWriter {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPGNotifyWakesOtherProcess$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), pgWriterEnv+"="+dsn)
	w := &pgWriter{cmd: cmd, errOut: &syncBuffer{}}
	cmd.Stderr = w.errOut
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.in, w.out = in, bufio.NewScanner(out)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start writer process: %v", err)
	}
	t.Cleanup(func() {
		_ = w.in.Close() // the child exits at the end of its input
		_ = cmd.Wait()
	})
	return w
}

// write makes the writer insert an event into table and returns its ID.
func (w *pgWriter) write(t *testing.T, table string) string {
	t.Helper()
	if _, err := fmt.Fprintln(w.in, table); err != nil {
		t.Fatalf("writer process: %v\n%s", err, w.errOut.String())
	}
	if !w.out.Scan() {
		t.Fatalf("writer process ended: %v\n%s", w.out.Err(), w.errOut.String())
	}
	id := w.out.Text()
	if _, err := strconv.ParseInt(id, 10, 64); err != nil {
		t.Fatalf("writer process: %s\n%s", id, w.errOut.String())
	}
	return id
}

// pgWriterChild is the writer process's main. Its notify connection
// looks for listeners before every NOTIFY, so that a stream of the test
// that starts listening is notified of the very next insert
// (TestPGNotifyListenerLock tests the production setting).
func pgWriterChild(dsn string) {
	rsql.SetPGPresenceTTL(0)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	tables := map[string]*rsql.EventsTable{}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		name := in.Text()
		table := tables[name]
		if table == nil {
			table = rsql.NewEventsTable(name, rsql.WithEventsDialect(rsql.PostgreSQL))
			tables[name] = table
		}
		id, err := func() (int64, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return 0, err
			}
			defer tx.Rollback()
			notify, err := table.Insert(ctx, tx, "other-process", testType(1))
			if err != nil {
				return 0, err
			}
			var id int64
			if err := tx.QueryRowContext(ctx, "SELECT lastval()").Scan(&id); err != nil {
				return 0, err
			}
			if err := tx.Commit(); err != nil {
				return 0, err
			}
			notify()
			return id, nil
		}()
		if err != nil {
			fmt.Println("insert:", err)
			os.Exit(2)
		}
		fmt.Println(id)
	}
	for _, table := range tables {
		table.Close() // sends the last notifications
	}
	os.Exit(0)
}

// notifyCounter counts the notifications that woke watchers, by channel.
type notifyCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func countNotified(t *testing.T) *notifyCounter {
	c := &notifyCounter{n: map[string]int{}}
	rsql.SetPGNotifiedHook(func(channel string) {
		c.mu.Lock()
		c.n[channel]++
		c.mu.Unlock()
	})
	t.Cleanup(func() { rsql.SetPGNotifiedHook(nil) })
	return c
}

func (c *notifyCounter) get(channel string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[channel]
}

// pgNotifyConn waits until the notify connection of db's database listens
// on channels channels and returns its state.
func pgNotifyConn(t *testing.T, db *sql.DB, channels int) rsql.PGNotifyConn {
	t.Helper()
	var name string
	if err := db.QueryRowContext(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	var got rsql.PGNotifyConn
	err := testguard.Poll(time.Minute, 5*time.Millisecond, "the notify connection", func() (int64, bool, error) {
		for _, c := range rsql.PGNotifyConns() {
			if c.Database == name {
				got = c
			}
		}
		return int64(got.Channels), got.PID != 0 && got.Channels == channels, nil
	})
	if err != nil {
		t.Fatalf("%v (last state %+v)", err, got)
	}
	return got
}

// tailing opens a stream of table from its head and returns a channel of
// the IDs it receives.
func tailing(t *testing.T, db *sql.DB, table *rsql.EventsTable) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cl, err := table.ToStream(db, reflex.WithStreamFromHead())(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			e, err := cl.Recv()
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Recv: %v", err)
				}
				return
			}
			ch <- e.ID
		}
	}()
	t.Cleanup(func() {
		cancel()
		closeClient(cl)
		<-done
	})
	return ch
}

// recvID waits for the next ID of ch (a hang guard: a notification takes
// milliseconds, a poll of a 1 h interval never comes).
func recvID(t *testing.T, ch <-chan string, what string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(guard):
		t.Fatalf("%s: no event within %v", what, guard)
		return ""
	}
}

// TestPGNotifyWakesOtherProcess: with LISTEN healthy, an event committed
// by a writer in another process, which calls the insert's NotifyFunc,
// reaches a stream at the head whose table polls once an hour: the
// notification woke it, not a poll.
func TestPGNotifyWakesOtherProcess(t *testing.T) {
	if dsn := os.Getenv(pgWriterEnv); dsn != "" {
		pgWriterChild(dsn) // never returns
	}
	db, dsn := postgres.open(t)
	qc := countQueries(t)
	nc := countNotified(t)
	table := newEngineTable(t, postgres, db, rsql.WithEventsBackoff(time.Hour))
	got := tailing(t, db, table)
	pgNotifyConn(t, db, 1)
	w := startPGWriter(t, dsn)
	for i := range 3 {
		id := w.write(t, table.Name())
		if r := recvID(t, got, "event of the other process"); r != id {
			t.Fatalf("event %d: received %s, want %s", i, r, id)
		}
	}
	if _, polls := qc.get(table.QuotedName()); polls != 0 {
		t.Errorf("%d polls, want none: the notifications woke the stream", polls)
	}
	if n := nc.get(table.Channel()); n < 3 {
		t.Errorf("%d notifications woke the stream, want at least 3", n)
	}
}

// TestPGNotifyConnectionKilled: when the notify connection is killed
// (pg_terminate_backend), streams fall back to their poll, and once it is
// back they are woken again by notifications, without a missed event: an
// event committed while it was down reaches a stream that polls once an
// hour when listening resumes.
func TestPGNotifyConnectionKilled(t *testing.T) {
	db, dsn := postgres.open(t)
	qc := countQueries(t)
	nc := countNotified(t)
	slow := newEngineTable(t, postgres, db, rsql.WithEventsBackoff(time.Hour))
	fast := newEngineTable(t, postgres, db, rsql.WithEventsBackoff(100*time.Millisecond))
	slowGot, fastGot := tailing(t, db, slow), tailing(t, db, fast)
	conn := pgNotifyConn(t, db, 2)
	w := startPGWriter(t, dsn)
	if id := w.write(t, slow.Name()); recvID(t, slowGot, "while listening") != id {
		t.Fatal("wrong event while listening")
	}

	// Hold the reconnection until the test has seen the streams poll.
	entered := make(chan struct{}, 1)
	resume := make(chan struct{})
	rsql.SetPGConnectHook(func(ctx context.Context) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-resume:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	defer rsql.SetPGConnectHook(nil)
	var killed bool
	if err := db.QueryRowContext(t.Context(), "SELECT pg_terminate_backend($1)", conn.PID).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", conn.PID, killed, err)
	}
	select {
	case <-entered:
	case <-time.After(guard):
		t.Fatal("the notify connection did not try to reconnect")
	}

	// Down: the fast stream polls; the slow one waits.
	_, fastPolls := qc.get(fast.QuotedName())
	fastNotified := nc.get(fast.Channel())
	id := w.write(t, fast.Name())
	if r := recvID(t, fastGot, "fast stream while the notify connection is down"); r != id {
		t.Fatalf("fast stream received %s, want %s", r, id)
	}
	if _, p := qc.get(fast.QuotedName()); p <= fastPolls {
		t.Errorf("fast stream woke without a poll while the notify connection was down")
	}
	if n := nc.get(fast.Channel()); n != fastNotified {
		t.Errorf("%d notifications while the connection was down", n-fastNotified)
	}
	missed := w.write(t, slow.Name())
	select {
	case r := <-slowGot:
		t.Fatalf("slow stream received %s while the notify connection is down and its poll is an hour away", r)
	default:
	}

	// Back: the event committed meanwhile arrives, then notifications
	// wake the slow stream again.
	close(resume)
	pgNotifyConn(t, db, 2)
	if r := recvID(t, slowGot, "event committed while the connection was down"); r != missed {
		t.Fatalf("slow stream received %s, want %s", r, missed)
	}
	before := nc.get(slow.Channel())
	id = w.write(t, slow.Name())
	if r := recvID(t, slowGot, "event after reconnecting"); r != id {
		t.Fatalf("slow stream received %s, want %s", r, id)
	}
	if n := nc.get(slow.Channel()); n <= before {
		t.Errorf("the slow stream's event after reconnecting came without a notification")
	}
	if _, polls := qc.get(slow.QuotedName()); polls != 0 {
		t.Errorf("the slow stream polled %d times", polls)
	}
}

// TestPGNotifyDebounced: a burst of inserts in this process sends far
// fewer NOTIFYs than events (those asked for while one is being sent are
// sent together), and Close sends the pending ones.
func TestPGNotifyDebounced(t *testing.T) {
	db, dsn := postgres.open(t)
	table := newEngineTable(t, postgres, db)
	ctx := t.Context()
	listener := rawListener(t, dsn, table.Channel(), true)
	const burst = 200
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() {
			notify, err := table.Insert(ctx, db, strconv.Itoa(i), testType(1))
			if err != nil {
				t.Error(err)
				return
			}
			notify()
		})
	}
	wg.Wait()
	table.Close() // sends what is pending
	n := notificationsUntilEnd(t, db, listener, table.Channel())
	t.Logf("%d inserts sent %d notifications", burst, n)
	if n == 0 || n > burst/4 {
		t.Errorf("%d inserts sent %d notifications, want between 1 and %d", burst, n, burst/4)
	}
}

// rawListener returns a session of its own listening on channel; if lock,
// it also holds the channel's listener lock, as documented for a session
// that listens outside rsql.
func rawListener(tb testing.TB, dsn, channel string, lock bool) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(tb.Context(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(tb.Context(), "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		tb.Fatal(err)
	}
	if lock {
		setListenLock(tb, conn, channel, true)
	}
	return conn
}

// setListenLock takes or releases conn's listener lock of channel.
func setListenLock(tb testing.TB, conn *pgx.Conn, channel string, take bool) {
	tb.Helper()
	fn := "pg_advisory_lock_shared"
	if !take {
		fn = "pg_advisory_unlock_shared"
	}
	if _, err := conn.Exec(tb.Context(), "SELECT "+fn+"($1, hashtext($2))", rsql.PGListenLockKey, channel); err != nil {
		tb.Fatal(err)
	}
}

// notificationsUntilEnd sends a marker notification on channel through
// db and returns how many notifications listener received before it:
// those sent before the marker arrive before it.
func notificationsUntilEnd(tb testing.TB, db *sql.DB, listener *pgx.Conn, channel string) int {
	tb.Helper()
	ctx := tb.Context()
	if _, err := db.ExecContext(ctx, "SELECT pg_notify($1, 'end')", channel); err != nil {
		tb.Fatal(err)
	}
	n := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, guard)
		note, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			tb.Fatalf("after %d notifications: %v", n, err)
		}
		if note.Payload == "end" {
			return n
		}
		n++
	}
}

// TestPGNotifyListenerLock: an insert's NotifyFunc sends no NOTIFY while
// no other session holds the channel's listener lock (a session that only
// LISTENs hears none), sends them once one does (within the presence
// TTL, while inserts go on), and stops again once it is released.
func TestPGNotifyListenerLock(t *testing.T) {
	db, dsn := postgres.open(t)
	ctx := t.Context()
	table := newEngineTable(t, postgres, db)
	channel := table.Channel()
	insert := func() {
		t.Helper()
		notify, err := table.Insert(ctx, db, "1", testType(1))
		if err != nil {
			t.Fatal(err)
		}
		notify()
	}
	listener := rawListener(t, dsn, channel, false)

	// Nobody holds the lock: no NOTIFY, including those Close flushes.
	for range 50 {
		insert()
	}
	table.Close()
	if n := notificationsUntilEnd(t, db, listener, channel); n != 0 {
		t.Fatalf("%d NOTIFYs without a listener, want none", n)
	}

	// A listener: the inserts' NOTIFYs reach it.
	setListenLock(t, listener, channel, true)
	table = rsql.NewEventsTable(table.Name(), rsql.WithEventsDialect(rsql.PostgreSQL))
	defer func() { table.Close() }()
	err := testguard.Poll(time.Minute, time.Millisecond, "a NOTIFY once a listener holds the lock", func() (int64, bool, error) {
		insert()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond) // a poll, not a bound
		defer cancel()
		note, err := listener.WaitForNotification(wctx)
		if err != nil {
			return 0, false, nil
		}
		return 1, note.Payload == "", nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Released: once the notify connection has seen it, no NOTIFY.
	setListenLock(t, listener, channel, false)
	err = testguard.Poll(time.Minute, time.Millisecond, "the notify connection to see the listener go", func() (int64, bool, error) {
		insert()
		return 0, rsql.PGQuiet(channel), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	notificationsUntilEnd(t, db, listener, channel) // those sent before
	for range 50 {
		insert()
	}
	table.Close()
	if n := notificationsUntilEnd(t, db, listener, channel); n != 0 {
		t.Fatalf("%d NOTIFYs after the listener released its lock, want none", n)
	}
}

// BenchmarkPGNotifyFunc measures the NotifyFunc of an insert on
// PostgreSQL called every 200µs (a writer committing 5,000 events/s),
// with a session listening on the table's channel (holding its listener
// lock). cpu-µs/op is the
// process's CPU time per call, including the notify connection's
// goroutine (waking it for every call costs several µs of CPU);
// notifies/op is the share of calls that cost the server a NOTIFY
// transaction (at most one per millisecond).
func BenchmarkPGNotifyFunc(b *testing.B) {
	db, dsn := postgres.open(b)
	table := newEngineTable(b, postgres, db)
	ctx := b.Context()
	listener := rawListener(b, dsn, table.Channel(), true)
	notify, err := table.Insert(ctx, db, "1", testType(1))
	if err != nil {
		b.Fatal(err)
	}
	const every = 200 * time.Microsecond
	cpu0 := cpuTime(b)
	next := time.Now()
	for b.Loop() {
		notify()
		// Pace the calls (not synchronisation): a writer's commits.
		next = next.Add(every)
		time.Sleep(time.Until(next))
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	table.Close() // sends what is pending
	n := notificationsUntilEnd(b, db, listener, table.Channel())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(n)/float64(b.N), "notifies/op")
}

// cpuTime returns the CPU time (user and system) of the process so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPGNotifySendGap: NOTIFY transactions are a millisecond apart while
// each answers one call, and spaced by a millisecond per call they
// answered up to 4 ms, so that a sustained rate of thousands of calls per
// second costs at most 250 NOTIFY transactions per second.
func TestPGNotifySendGap(t *testing.T) {
	for _, c := range []struct {
		asked int
		want  time.Duration
	}{
		{0, time.Millisecond}, // a send for Close or after a reconnection
		{1, time.Millisecond},
		{2, 2 * time.Millisecond},
		{3, 3 * time.Millisecond},
		{4, 4 * time.Millisecond},
		{1000, 4 * time.Millisecond},
	} {
		if got := rsql.PGSendGap(c.asked); got != c.want {
			t.Errorf("gap after a NOTIFY answering %d calls = %v, want %v", c.asked, got, c.want)
		}
	}
}

// TestPGNotifyKeepsNoConnection: what an insert records of its
// connection, to reach its database's notify connection, does not keep
// the connection alive once closed (database/sql closes and opens
// connections all the time under a burst: each kept would hold its
// buffers and statement cache, tens of MB per thousand).
func TestPGNotifyKeepsNoConnection(t *testing.T) {
	_, dsn := postgres.open(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	rsql.PGConnInfoOf(conn)
	closed := weak.Make(conn.PgConn())
	if err := conn.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	conn = nil
	for range 10 {
		runtime.GC()
		if closed.Value() == nil {
			return
		}
	}
	t.Fatal("a closed connection is still reachable after an insert through it")
}
