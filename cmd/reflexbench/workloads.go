package main

import (
	"bufio"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jackc/pgx/v5"
	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/rsql"
)

type benchType int

func (t benchType) ReflexType() int { return int(t) }

func workloads() []workload {
	return []workload{
		{id: "W1", title: "insert in the caller's transaction", setup: setupW1, run: runW1},
		{id: "W2", title: "catch-up through Run", setup: setupW2, run: runW2},
		{id: "W3", title: "catch-up over gRPC on loopback", setup: setupW3, run: runW3},
		{id: "W4A", title: "tail latency, writer in this process", setup: setupW4, run: runW4a},
		{id: "W4B", title: "tail latency, writer in another process", setup: setupW4, run: runW4b},
		{id: "W4C", title: "memory of a long tail", setup: setupW4c, run: runW4c, quickRuns: 1},
		{id: "W5", title: "32 consumers tailing one table", setup: setupW5, run: runW5},
		{id: "W6", title: "SQL cursors table", setup: setupW6, run: runW6},
	}
}

// ---- W1 ---------------------------------------------------------------

const (
	w1Workers = 8
	// w1Slices is the number of turns each side of W1 takes.
	w1Slices = 8
)

func (c *config) w1Duration() time.Duration {
	if c.quick {
		return 2 * time.Second
	}
	return 8 * time.Second
}

func setupW1(c *config) string {
	how := "each sent as text in one round trip as rsql does"
	if c.eng.pg() {
		how = "the event's with its foreign ID as a parameter of a statement pgx prepares once per connection, as rsql does"
	}
	return fmt.Sprintf("%d goroutines for %s each: BEGIN; data row; event; COMMIT; then the returned notify func. Baseline: the same transaction with two plain INSERTs, %s. The sides take %d turns each, in rotating order; on PostgreSQL a third side is reflex while another session listens on the table's channel. InsertMany: 1 goroutine, 500 events per transaction.", w1Workers, c.w1Duration(), how, w1Slices)
}

func runW1(ctx context.Context, c *config, r *WorkloadReport) error {
	for _, t := range []string{"w1_data"} {
		if _, err := c.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
			return err
		}
		if _, err := c.db.ExecContext(ctx, c.eng.dataDDL(t)); err != nil {
			return err
		}
	}
	if err := createEvents(ctx, c.eng, c.db, "w1_events"); err != nil {
		return err
	}
	events := c.events("w1_events")
	defer events.Close()
	// Both sides send each statement in one round trip. On MySQL rsql
	// inlines values as literals (with "?" arguments the driver would
	// prepare, execute and close each statement, handicapping the
	// baseline); on PostgreSQL it binds them as parameters of a statement
	// that pgx prepares once per connection and caches, as the baseline
	// does.
	plain := func(ctx context.Context, tx *sql.Tx, i int) (func(), error) {
		if _, err := tx.ExecContext(ctx, "INSERT INTO w1_data (name) VALUES ('user')"); err != nil {
			return nil, err
		}
		var err error
		if c.eng.pg() {
			_, err = tx.ExecContext(ctx, "INSERT INTO w1_events (foreign_id, timestamp, type) VALUES ($1, statement_timestamp(), 1)", strconv.Itoa(i))
		} else {
			_, err = tx.ExecContext(ctx, "INSERT INTO w1_events (foreign_id, timestamp, type) VALUES ('"+strconv.Itoa(i)+"', now(6), 1)")
		}
		return nil, err
	}
	// The NotifyFunc is called after the commit (by txLoop), as documented.
	withReflex := func(ctx context.Context, tx *sql.Tx, i int) (func(), error) {
		if _, err := tx.ExecContext(ctx, "INSERT INTO w1_data (name) VALUES ('user')"); err != nil {
			return nil, err
		}
		notify, err := events.Insert(ctx, tx, strconv.Itoa(i), benchType(1))
		return notify, err
	}
	// The sides take turns in short slices, the first side of each round
	// rotating, so that drift of the server (autovacuum, checkpoints, the
	// tables' growth) falls on all alike. On PostgreSQL a third side is
	// rsql while another session listens on the table's channel (rsql
	// sends NOTIFYs only then).
	sides := []func(context.Context, *sql.Tx, int) (func(), error){plain, withReflex}
	if c.eng.pg() {
		sides = append(sides, withReflex)
	}
	var (
		txs      = make([]int64, len(sides))
		secs     = make([]float64, len(sides))
		notifies int64
		slice    = c.w1Duration() / w1Slices
	)
	for k := range w1Slices {
		for j := range sides {
			side := (j + k) % len(sides)
			var l *benchListener
			if side == 2 {
				var err error
				if l, err = listenTo(ctx, c.dsn, events, c.db); err != nil {
					return err
				}
			}
			n, d, err := txLoop(ctx, c.db, slice, sides[side])
			if l != nil {
				notifies += l.stop()
			}
			if err != nil {
				return err
			}
			txs[side] += n
			secs[side] += d.Seconds()
		}
	}
	base, refl := float64(txs[0])/secs[0], float64(txs[1])/secs[1]
	r.add("baseline tx/s", "tx/s", "", base)
	r.add("reflex tx/s", "tx/s", "", refl)
	r.add("ratio reflex/baseline", "x", ">= 0.95", refl/base)
	if len(sides) > 2 {
		listened := float64(txs[2]) / secs[2]
		r.add("reflex tx/s, a session listening", "tx/s", "", listened)
		r.add("ratio listened/baseline", "x", "", listened/base)
		r.add("NOTIFYs per 1000 tx, listened", "NOTIFYs", "", 1000*float64(notifies)/float64(txs[2]))
	}

	// InsertMany throughput.
	const per = 500
	var n int
	start := time.Now()
	deadline := start.Add(c.w1Duration())
	batch := make([]rsql.EventToInsert, per)
	for i := range batch {
		batch[i] = rsql.EventToInsert{ForeignID: strconv.Itoa(i), Type: benchType(2)}
	}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		tx, err := c.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := events.InsertMany(ctx, tx, batch); err != nil {
			tx.Rollback()
			return fmt.Errorf("InsertMany: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		n += per
	}
	r.add("InsertMany events/s", "events/s", "", float64(n)/time.Since(start).Seconds())
	return nil
}

// benchListener is a session listening on an events table's channel, as
// documented for a session outside rsql: LISTEN and the channel's
// listener lock; it counts the notifications it receives.
type benchListener struct {
	conn   *pgx.Conn
	cancel context.CancelFunc
	done   chan struct{}
	got    atomic.Int64
}

// listenTo starts a benchListener on events' channel in the database of
// dsn and returns once it has received a notification of an insert
// through db (the inserting process looks for listeners at most every
// 250 ms).
func listenTo(ctx context.Context, dsn string, events *rsql.EventsTable, db *sql.DB) (*benchListener, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	channel := "reflex_" + events.Name()
	_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	if err == nil {
		_, err = conn.Exec(ctx, "SELECT pg_advisory_lock_shared($1, hashtext($2))", pgListenLock, channel)
	}
	if err != nil {
		conn.Close(ctx)
		return nil, err
	}
	lctx, cancel := context.WithCancel(ctx)
	l := &benchListener{conn: conn, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			if _, err := conn.WaitForNotification(lctx); err != nil {
				return
			}
			l.got.Add(1)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for l.got.Load() == 0 {
		if time.Now().After(deadline) {
			l.stop()
			return nil, errors.New("W1: a listening session received no notification in 10s")
		}
		notify, err := events.Insert(ctx, db, "prime", benchType(1))
		if err != nil {
			l.stop()
			return nil, err
		}
		notify()
		time.Sleep(time.Millisecond)
	}
	l.got.Store(0)
	return l, nil
}

// stop ends the session and returns the notifications it received since
// listenTo returned.
func (l *benchListener) stop() int64 {
	l.cancel()
	<-l.done
	l.conn.Close(context.Background())
	return l.got.Load()
}

// txLoop runs w1Workers goroutines committing transactions built by fn for
// d and returns the transactions committed and the time taken. The
// function fn returns, if not nil, is called after the commit.
func txLoop(ctx context.Context, db *sql.DB, d time.Duration, fn func(context.Context, *sql.Tx, int) (func(), error)) (int64, time.Duration, error) {
	var (
		n     atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range w1Workers {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline) && ctx.Err() == nil; i += w1Workers {
				err := func() error {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					after, err := fn(ctx, tx, i)
					if err != nil {
						tx.Rollback()
						return err
					}
					if err := tx.Commit(); err != nil {
						return err
					}
					if after != nil {
						after()
					}
					return nil
				}()
				if err != nil {
					errMu.Lock()
					first = cmp.Or(first, err)
					errMu.Unlock()
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return n.Load(), time.Since(start), first
}

// ---- W2 / W3: catch-up ------------------------------------------------

const catchupTable = "w2_events"

func (c *config) catchupN() int {
	if c.quick {
		return 100_000
	}
	return 1_000_000
}

// ensureCatchup preloads the catch-up table once per reflexbench run.
func (c *config) ensureCatchup(ctx context.Context) error {
	if c.preloaded {
		return nil
	}
	if err := createEvents(ctx, c.eng, c.db, catchupTable); err != nil {
		return err
	}
	if err := preload(ctx, c.eng, c.db, catchupTable, c.catchupN()); err != nil {
		return err
	}
	c.preloaded = true
	return nil
}

func setupW2(c *config) string {
	return fmt.Sprintf("%d pre-loaded events; a child process runs reflex.Run from the start to the head (WithStreamToHead) with a no-op consumer and an in-memory cursor store, default table options. Baseline: raw SELECT id, foreign_id, timestamp, type, metadata ... WHERE id > ? ORDER BY id LIMIT N loop in this process, best of N in {1000, 5000, 10000}. Peak RSS is the child's own peak resident set (VmHWM).", c.catchupN())
}

func runW2(ctx context.Context, c *config, r *WorkloadReport) error {
	if err := c.ensureCatchup(ctx); err != nil {
		return err
	}
	raw, bestN, err := rawLoop(ctx, c.eng, c.db, catchupTable, c.catchupN())
	if err != nil {
		return err
	}
	c.rawRate = raw
	out, err := c.runChild(ctx, "catchup", "-table", catchupTable, "-n", strconv.Itoa(c.catchupN()))
	if err != nil {
		return err
	}
	var (
		rate float64
		rss  int64
	)
	if _, err := fmt.Sscan(out, &rate, &rss); err != nil {
		return fmt.Errorf("child catchup printed %q", out)
	}
	r.add("raw loop rows/s", "rows/s", "", raw)
	r.add("raw loop best LIMIT", "rows", "", float64(bestN))
	r.add("Run events/s", "events/s", "", rate)
	r.add("ratio Run/raw", "x", ">= 0.5", rate/raw)
	r.add("peak RSS", "MB", "<= 30", float64(rss)/1024)
	return nil
}

// rawLoop reads the whole table with keyset pagination for each page size
// and returns the best rate.
func rawLoop(ctx context.Context, eng engine, db *sql.DB, table string, n int) (float64, int, error) {
	var best float64
	var bestN int
	for _, limit := range []int{1000, 5000, 10000} {
		start := time.Now()
		var (
			cursor int64
			got    int
		)
		q := eng.q("SELECT id, foreign_id, timestamp, type, metadata FROM " + table + " WHERE id > ? ORDER BY id LIMIT " + strconv.Itoa(limit))
		for {
			rows, err := db.QueryContext(ctx, q, cursor)
			if err != nil {
				return 0, 0, err
			}
			k := 0
			for rows.Next() {
				var (
					id   int64
					fid  string
					ts   time.Time
					typ  int
					meta []byte
				)
				if err := rows.Scan(&id, &fid, &ts, &typ, &meta); err != nil {
					rows.Close()
					return 0, 0, err
				}
				cursor = id
				k++
			}
			if err := rows.Close(); err != nil {
				return 0, 0, err
			}
			got += k
			if k < limit {
				break
			}
		}
		if got != n {
			return 0, 0, fmt.Errorf("raw loop read %d rows, want %d", got, n)
		}
		if rate := float64(got) / time.Since(start).Seconds(); rate > best {
			best, bestN = rate, limit
		}
	}
	return best, bestN, nil
}

func setupW3(c *config) string {
	return fmt.Sprintf("the W2 table (%d events) served by reflex.Server (ReflexServer, batched frames) on 127.0.0.1; the client runs reflex.Run via GRPCStreamFunc to the head with a no-op consumer. Baseline: W2's raw loop.", c.catchupN())
}

func runW3(ctx context.Context, c *config, r *WorkloadReport) error {
	if err := c.ensureCatchup(ctx); err != nil {
		return err
	}
	if c.rawRate == 0 {
		raw, _, err := rawLoop(ctx, c.eng, c.db, catchupTable, c.catchupN())
		if err != nil {
			return err
		}
		c.rawRate = raw
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	events := c.events(catchupTable)
	defer events.Close()
	rs := reflex.NewServer()
	gs := grpc.NewServer()
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(events.ToStream(c.db)))
	go gs.Serve(lis)
	defer func() {
		rs.Stop()
		gs.Stop()
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	n, secs, err := runCatchup(ctx, reflex.GRPCStreamFunc(conn))
	if err != nil {
		return err
	}
	if n != c.catchupN() {
		return fmt.Errorf("consumed %d events, want %d", n, c.catchupN())
	}
	rate := float64(n) / secs
	r.add("raw loop rows/s", "rows/s", "", c.rawRate)
	r.add("gRPC Run events/s", "events/s", ">= 1000000", rate)
	r.add("ratio gRPC/raw", "x", "", rate/c.rawRate)
	return nil
}

// memStore is the in-memory cursor store of the catch-up workloads.
type memStore struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memStore) GetCursor(_ context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name], nil
}

func (s *memStore) SetCursor(_ context.Context, name, cursor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = cursor
	return nil
}

func (s *memStore) Flush(context.Context) error { return nil }

// runCatchup runs one consumer from the start to the head.
func runCatchup(ctx context.Context, stream reflex.StreamFunc) (int, float64, error) {
	var n int
	consumer := reflex.NewConsumer("bench", func(context.Context, *reflex.Event) error {
		n++
		return nil
	})
	spec := reflex.NewSpec(stream, &memStore{m: map[string]string{}}, consumer, reflex.WithStreamToHead())
	start := time.Now()
	err := reflex.Run(ctx, spec)
	secs := time.Since(start).Seconds()
	if !reflex.IsHeadReachedErr(err) {
		return n, secs, err
	}
	return n, secs, nil
}

// events returns the events table name in the benchmark's dialect.
func (c *config) events(name string) *rsql.EventsTable {
	return rsql.NewEventsTable(name, rsql.WithEventsDialect(c.eng.dialect))
}

// runChild runs this executable in child mode and returns its standard
// output. A child reports its own peak RSS (VmHWM): the ru_maxrss that
// wait4 returns is no use, as Linux keeps in it the peak of the parent's
// memory that the child shared until its exec.
func (c *config) runChild(ctx context.Context, args ...string) (string, error) {
	head := []string{"child", args[0], "-engine", c.eng.name, "-dsn", c.dsn}
	if c.cpuProfile != "" {
		c.children++
		head = append(head, "-cpuprofile", fmt.Sprintf("%s.%s.%d", c.cpuProfile, args[0], c.children))
	}
	cmd := exec.CommandContext(ctx, c.self, append(head, args[1:]...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("child %s: %w", args[0], err)
	}
	return string(out), nil
}

// ---- W4: tail latency -------------------------------------------------

const tailRate = 500

func (c *config) tailDuration() time.Duration {
	if c.quick {
		return 4 * time.Second
	}
	return 20 * time.Second
}

func setupW4(c *config) string {
	return fmt.Sprintf("a writer commits %d events/s for %s (one event per transaction, foreign id = sequence number); one consumer tails from the head through reflex.Run with default table options; latency = consume time - commit time. (a) writer in this process calls the returned notify func; (b) writer is a separate process with its own table instance, calling the returned notify func (on MySQL it wakes nothing in the consumer's process, which finds the rows by polling; on PostgreSQL it sends a NOTIFY).", tailRate, c.tailDuration())
}

// tail is the shared state of a tailing workload.
type tail struct {
	commits []atomic.Int64 // by sequence: commit time in UnixNano
	seen    [][]int64      // per consumer: consume time in UnixNano by sequence, then latency in ns
}

func newTail(n, consumers int) *tail {
	t := &tail{commits: make([]atomic.Int64, n), seen: make([][]int64, consumers)}
	for i := range t.seen {
		t.seen[i] = make([]int64, n)
		for j := range t.seen[i] {
			t.seen[i][j] = -1
		}
	}
	return t
}

// consumer returns the consumer of index i; the last consumer to see all
// n events calls done.
func (t *tail) consumer(i int, remaining *atomic.Int64, done func()) reflex.Consumer {
	n := len(t.commits)
	var got int
	return reflex.NewConsumer(fmt.Sprintf("tail_%d", i), func(_ context.Context, e *reflex.Event) error {
		now := time.Now().UnixNano()
		seq, err := strconv.Atoi(e.ForeignID)
		if err != nil || seq < 0 || seq >= n {
			return fmt.Errorf("unexpected foreign id %q", e.ForeignID)
		}
		if t.seen[i][seq] >= 0 {
			return fmt.Errorf("consumer %d saw event %d twice", i, seq)
		}
		t.seen[i][seq] = now
		if got++; got == n {
			if remaining.Add(-1) == 0 {
				done()
			}
		}
		return nil
	})
}

// runTail runs consumers tailing table until each has seen n events or
// timeout, while write produces events.
func runTail(ctx context.Context, db *sql.DB, events *rsql.EventsTable, t *tail, write func(ctx context.Context) error) error {
	parent := ctx
	// The consumers' context: ended with errTailDone when every consumer
	// has seen every event, or by a failure or the timeout.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var remaining atomic.Int64
	remaining.Store(int64(len(t.seen)))
	var wg sync.WaitGroup
	errs := make([]error, len(t.seen))
	ready := make(chan struct{}, len(t.seen))
	done := func() { cancel(errTailDone) }
	for i := range t.seen {
		// Each consumer opens from the head before the writer starts.
		stream := events.ToStream(db)
		opened := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
			cl, err := stream(ctx, after, opts...)
			ready <- struct{}{}
			return cl, err
		}
		spec := reflex.NewSpec(opened, &memStore{m: map[string]string{}}, t.consumer(i, &remaining, done), reflex.WithStreamFromHead())
		wg.Go(func() {
			if errs[i] = reflex.Run(ctx, spec); errs[i] != nil {
				cancel(errs[i]) // no-op once done
			}
		})
	}
	for range t.seen {
		<-ready
	}
	// The writer's context ends at the timeout or on a failure, but not
	// when the consumers are done: a writer in another process may still
	// be closing its table then (sending its last NOTIFY), and is let
	// exit rather than killed.
	wctx, wcancel := context.WithCancel(parent)
	defer wcancel()
	defer context.AfterFunc(ctx, func() {
		if context.Cause(ctx) != errTailDone {
			wcancel()
		}
	})()
	werr := make(chan error, 1)
	go func() {
		err := write(wctx)
		if err != nil {
			cancel(err)
		}
		werr <- err
	}()
	timeout := time.NewTimer(time.Duration(len(t.commits))*time.Second/tailRate + 30*time.Second)
	defer timeout.Stop()
	select {
	case <-ctx.Done():
	case <-timeout.C:
		cancel(errTailTimeout)
	}
	wg.Wait()
	var writerErr error
	select {
	case writerErr = <-werr:
	case <-timeout.C:
		wcancel()
		writerErr = <-werr
	}
	if writerErr != nil && !errors.Is(writerErr, context.Canceled) {
		return fmt.Errorf("writer: %w", writerErr)
	}
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("consumer %d: %w", i, err)
		}
	}
	for i := range t.seen {
		for seq, at := range t.seen[i] {
			if at < 0 {
				return fmt.Errorf("consumer %d never saw event %d", i, seq)
			}
			// The commit time is taken after Commit returns, so a consumer
			// can see the row a moment earlier: clamp at zero.
			t.seen[i][seq] = max(0, at-t.commits[seq].Load())
		}
	}
	return nil
}

var (
	errTailDone    = errors.New("every consumer saw every event")
	errTailTimeout = errors.New("timed out")
)

// pace calls fn rate times per second for n events.
func pace(ctx context.Context, n, rate int, fn func(seq int) error) error {
	start := time.Now()
	for seq := range n {
		due := start.Add(time.Duration(seq) * time.Second / time.Duration(rate))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := fn(seq); err != nil {
			return err
		}
	}
	return nil
}

func writeOne(ctx context.Context, db *sql.DB, events *rsql.EventsTable, seq int) (rsql.NotifyFunc, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	notify, err := events.Insert(ctx, tx, strconv.Itoa(seq), benchType(1))
	if err != nil {
		return nil, err
	}
	return notify, tx.Commit()
}

func percentiles(r *WorkloadReport, prefix string, lat []int64, p99Target string) {
	s := slices.Clone(lat)
	slices.Sort(s)
	ms := func(q float64) float64 {
		return float64(s[min(len(s)-1, int(q*float64(len(s))))]) / 1e6
	}
	r.add(prefix+"p50", "ms", "", ms(0.50))
	r.add(prefix+"p99", "ms", p99Target, ms(0.99))
	r.add(prefix+"max", "ms", "", float64(s[len(s)-1])/1e6)
}

func runW4a(ctx context.Context, c *config, r *WorkloadReport) error {
	if err := createEvents(ctx, c.eng, c.db, "w4_events"); err != nil {
		return err
	}
	events := c.events("w4_events")
	defer events.Close()
	n := int(c.tailDuration().Seconds()) * tailRate
	t := newTail(n, 1)
	err := runTail(ctx, c.db, events, t, func(ctx context.Context) error {
		return pace(ctx, n, tailRate, func(seq int) error {
			notify, err := writeOne(ctx, c.db, events, seq)
			t.commits[seq].Store(time.Now().UnixNano())
			if err != nil {
				return err
			}
			notify()
			return nil
		})
	})
	if err != nil {
		return err
	}
	percentiles(r, "latency ", t.seen[0], "<= 1")
	return nil
}

func runW4b(ctx context.Context, c *config, r *WorkloadReport) error {
	if err := createEvents(ctx, c.eng, c.db, "w4_events"); err != nil {
		return err
	}
	events := c.events("w4_events")
	defer events.Close()
	n := int(c.tailDuration().Seconds()) * tailRate
	t := newTail(n, 1)
	err := runTail(ctx, c.db, events, t, func(ctx context.Context) error {
		if c.eng.pg() {
			// The writer's NOTIFYs go to listening sessions only: start
			// it once the consumer's notify connection listens.
			if err := awaitListener(ctx, c.db); err != nil {
				return err
			}
		}
		cmd := exec.CommandContext(ctx, c.self, "child", "writer", "-engine", c.eng.name, "-dsn", c.dsn, "-table", "w4_events", "-n", strconv.Itoa(n))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			seq, at, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			i, err1 := strconv.Atoi(seq)
			ns, err2 := strconv.ParseInt(at, 10, 64)
			if err1 != nil || err2 != nil || i < 0 || i >= n {
				return fmt.Errorf("writer printed %q", sc.Text())
			}
			t.commits[i].Store(ns)
		}
		return cmd.Wait()
	})
	if err != nil {
		return err
	}
	target := "<= 100" // the poll interval, 50 ms
	if c.eng.pg() {
		target = "<= 5" // LISTEN/NOTIFY
	}
	percentiles(r, "latency ", t.seen[0], target)
	return nil
}

// pgListenLock is the first key of the advisory lock that a session
// listening on an rsql events table's channel holds (rsql's package doc).
const pgListenLock = 0x72666c78

// awaitListener waits until a session of db's PostgreSQL server listens
// on an events table's channel.
func awaitListener(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var n int
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND mode = 'ShareLock' AND granted", pgListenLock).Scan(&n)
		if err != nil {
			return fmt.Errorf("waiting for the consumer to listen: %w", err)
		}
		if n > 0 {
			return nil
		}
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the consumer to listen: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// ---- W5: many consumers -----------------------------------------------

const w5Consumers = 32

func setupW5(c *config) string {
	selects := "the server's Com_select delta"
	if c.eng.pg() {
		selects = "the index and sequential scans of the events table (pg_stat_user_tables), read once the run's pool is closed"
	}
	return fmt.Sprintf("%d consumers (one EventsTable, one *sql.DB) tail from the head while a writer in this process commits %d events/s for %s; then a single consumer over the same period. SELECTs are %s.", w5Consumers, tailRate, c.tailDuration(), selects)
}

func runW5(ctx context.Context, c *config, r *WorkloadReport) error {
	n := int(c.tailDuration().Seconds()) * tailRate
	measure := func(consumers int) (*tail, int64, float64, error) {
		if err := createEvents(ctx, c.eng, c.db, "w5_events"); err != nil {
			return nil, 0, 0, err
		}
		// A pool of the run's own: PostgreSQL counts a session's scans
		// when it ends.
		db, err := c.open()
		if err != nil {
			return nil, 0, 0, err
		}
		defer db.Close()
		db.SetMaxOpenConns(64)
		db.SetMaxIdleConns(64)
		events := c.events("w5_events")
		defer events.Close()
		t := newTail(n, consumers)
		before, err := c.eng.selects(ctx, c.db, "w5_events")
		if err != nil {
			return nil, 0, 0, err
		}
		start := time.Now()
		err = runTail(ctx, db, events, t, func(ctx context.Context) error {
			return pace(ctx, n, tailRate, func(seq int) error {
				notify, err := writeOne(ctx, db, events, seq)
				t.commits[seq].Store(time.Now().UnixNano())
				if err != nil {
					return err
				}
				notify()
				return nil
			})
		})
		secs := time.Since(start).Seconds()
		events.Close()
		db.Close()
		after, err2 := c.eng.selects(ctx, c.db, "w5_events")
		selects := after - before
		if !c.eng.pg() {
			selects-- // the Com_select of the read
		}
		return t, selects, float64(n) / secs, cmp.Or(err, err2)
	}
	_, singleSelects, _, err := measure(1)
	if err != nil {
		return err
	}
	many, manySelects, rate, err := measure(w5Consumers)
	if err != nil {
		return err
	}
	var p99s []float64
	for i := range many.seen {
		s := slices.Clone(many.seen[i])
		slices.Sort(s)
		p99s = append(p99s, float64(s[int(0.99*float64(len(s)))])/1e6)
	}
	slices.Sort(p99s)
	r.add("rate held (per consumer)", "events/s", ">= 490", rate)
	r.add("worst consumer p99", "ms", "<= 5", p99s[len(p99s)-1])
	r.add("median consumer p99", "ms", "", p99s[len(p99s)/2])
	r.add("SELECTs, 1 consumer", "queries", "", float64(singleSelects))
	r.add("SELECTs, 32 consumers", "queries", "", float64(manySelects))
	r.add("ratio SELECTs 32/1", "x", "<= 2", float64(manySelects)/float64(max(1, singleSelects)))
	return nil
}

// ---- W6: cursors table -------------------------------------------------

func (c *config) w6N() int {
	if c.quick {
		return 100_000
	}
	return 500_000
}

func setupW6(c *config) string {
	writes := "the server's Com_update+Com_insert delta"
	if c.eng.pg() {
		writes = "the rows inserted and updated in the cursors table (pg_stat_user_tables; one per statement), read once the run's pool is closed"
	}
	return fmt.Sprintf("reflex.Run over the first %d events of the W2 table (WithStreamToHead; no-op consumer) with: an rsql CursorsTable in async mode (default period) and a baseline store (alternating base, async, async, base; each rate the mean of two runs), then the CursorsTable in sync mode over the first 20,000 events. The baseline store keeps the cursor in memory and writes it with one plain UPDATE per flush period and at exit. Cursor writes are %s.", c.w6N(), writes)
}

func runW6(ctx context.Context, c *config, r *WorkloadReport) error {
	if err := c.ensureCatchup(ctx); err != nil {
		return err
	}
	if _, err := c.db.ExecContext(ctx, "DROP TABLE IF EXISTS w6_cursors"); err != nil {
		return err
	}
	if _, err := c.db.ExecContext(ctx, rsql.CursorsSchema(c.eng.dialect, "w6_cursors")); err != nil {
		return err
	}
	events := c.events(catchupTable)
	defer events.Close()
	// Bound the stream at event w6N by reading a view: a to-head run over
	// the whole table, counted up to w6N, would measure more than asked;
	// instead stop the consumer at w6N with a sentinel.
	stopAt := c.w6N()
	errEnough := errors.New("enough")
	// measure runs the consumer with the store that mk makes on a pool of
	// the run's own (PostgreSQL counts a session's writes when it ends).
	measure := func(name string, mk func(db *sql.DB) (reflex.CursorStore, error)) (float64, int64, error) {
		var n int
		consumer := reflex.NewConsumer(name, func(context.Context, *reflex.Event) error {
			if n++; n > stopAt {
				return errEnough
			}
			return nil
		})
		db, err := c.open()
		if err != nil {
			return 0, 0, err
		}
		defer db.Close()
		store, err := mk(db)
		if err != nil {
			return 0, 0, err
		}
		before, err := c.eng.writes(ctx, c.db, "w6_cursors")
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		err = reflex.Run(ctx, reflex.NewSpec(events.ToStream(c.db), store, consumer, reflex.WithStreamToHead()))
		secs := time.Since(start).Seconds()
		if !errors.Is(err, errEnough) && !reflex.IsHeadReachedErr(err) {
			return 0, 0, err
		}
		if cl, ok := store.(interface{ Close() error }); ok {
			if err := cl.Close(); err != nil {
				return 0, 0, err
			}
		}
		db.Close()
		after, err := c.eng.writes(ctx, c.db, "w6_cursors")
		return float64(stopAt) / secs, after - before, err
	}
	// Consumer names are unique per run: cursors only move forward.
	w6Run++
	name := func(kind string, i int) string { return fmt.Sprintf("%s_%d_%d", kind, w6Run, i) }
	asyncTable := rsql.NewCursorsTable("w6_cursors", rsql.WithCursorsDialect(c.eng.dialect))
	defer asyncTable.Close()
	// Baseline and async alternate (ABBA) so that neither profits from a
	// warmer server or page cache; each rate is the mean of its two runs.
	var baseRate, asyncRate float64
	var baseWrites, asyncWrites int64
	for i, kind := range []string{"base", "async", "async", "base"} {
		mk := func(db *sql.DB) (reflex.CursorStore, error) { return asyncTable.ToStore(db), nil }
		if kind == "base" {
			mk = func(db *sql.DB) (reflex.CursorStore, error) {
				b := newUpdateStore(c.eng, db, name(kind, i))
				_, err := c.db.ExecContext(ctx, c.eng.q("INSERT INTO w6_cursors (id, last_event_id, updated_at) VALUES (?, 0, "+c.eng.now()+")"), b.name)
				return b, err
			}
		}
		rate, w, err := measure(name(kind, i), mk)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		if kind == "async" {
			asyncRate += rate / 2
			asyncWrites += w
		} else {
			baseRate += rate / 2
			baseWrites += w
		}
	}
	// Sync mode writes once per event: 20,000 events are enough.
	stopAt = min(stopAt, 20_000)
	syncTable := rsql.NewCursorsTable("w6_cursors", rsql.WithCursorsDialect(c.eng.dialect), rsql.WithCursorAsyncDisabled())
	defer syncTable.Close()
	syncRate, syncWrites, err := measure(name("sync", 0), func(db *sql.DB) (reflex.CursorStore, error) { return syncTable.ToStore(db), nil })
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	r.add("baseline events/s", "events/s", "", baseRate)
	r.add("async events/s", "events/s", "", asyncRate)
	r.add("sync events/s", "events/s", "", syncRate)
	r.add("ratio async/baseline", "x", ">= 0.9", asyncRate/baseRate)
	r.add("baseline cursor writes (2 runs)", "statements", "", float64(baseWrites))
	r.add("async cursor writes (2 runs)", "statements", "", float64(asyncWrites))
	r.add("sync cursor writes", "statements", "", float64(syncWrites))
	return nil
}

// w6Run numbers W6's runs, to give each run its own consumer names.
var w6Run int

// updateStore is W6's baseline: the cursor lives in memory and one plain
// UPDATE writes it per period (5 s, rsql's async default) and on Close.
type updateStore struct {
	eng    engine
	db     *sql.DB
	name   string
	mu     sync.Mutex
	cursor string
	last   time.Time
}

func newUpdateStore(eng engine, db *sql.DB, name string) *updateStore {
	return &updateStore{eng: eng, db: db, name: name, last: time.Now()}
}

func (s *updateStore) GetCursor(context.Context, string) (string, error) { return "", nil }

func (s *updateStore) SetCursor(ctx context.Context, _ string, cursor string) error {
	s.mu.Lock()
	s.cursor = cursor
	due := time.Since(s.last) >= 5*time.Second
	s.mu.Unlock()
	if due {
		return s.Flush(ctx)
	}
	return nil
}

func (s *updateStore) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = time.Now()
	_, err := s.db.ExecContext(ctx, s.eng.q("UPDATE w6_cursors SET last_event_id = ?, updated_at = "+s.eng.now()+" WHERE id = ?"), s.cursor, s.name)
	return err
}

// ---- child processes ----------------------------------------------------

// child runs a child mode: "catchup" prints events/s and its peak RSS
// in KiB; "writer" prints
// "seq commitUnixNano" lines; "tailmem" prints W4C's RSS figures and
// "idle" its RSS once connected.
func child(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "reflexbench child: mode required")
		return 2
	}
	var dsn, table, cpuProfile string
	var n, consumers int
	eng := mysqlEngine
	for i := 1; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-engine":
			var err error
			if eng, err = engineNamed(args[i+1]); err != nil {
				fmt.Fprintln(os.Stderr, "reflexbench child:", err)
				return 2
			}
		case "-dsn":
			dsn = args[i+1]
		case "-cpuprofile":
			cpuProfile = args[i+1]
		case "-table":
			table = args[i+1]
		case "-n":
			n, _ = strconv.Atoi(args[i+1])
		case "-consumers":
			consumers, _ = strconv.Atoi(args[i+1])
		}
	}
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopProfile()
	db, err := sql.Open(eng.driver, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	ctx := context.Background()
	events := rsql.NewEventsTable(table, rsql.WithEventsDialect(eng.dialect))
	defer events.Close()
	switch args[0] {
	case "catchup":
		got, secs, err := runCatchup(ctx, events.ToStream(db))
		if err != nil {
			fmt.Fprintln(os.Stderr, "catchup:", err)
			return 1
		}
		if got != n {
			fmt.Fprintf(os.Stderr, "catchup: consumed %d events, want %d\n", got, n)
			return 1
		}
		fmt.Println(float64(got)/secs, procStatusKB("VmHWM"))
	case "writer":
		w := bufio.NewWriter(os.Stdout)
		err := pace(ctx, n, tailRate, func(seq int) error {
			notify, err := writeOne(ctx, db, events, seq)
			fmt.Fprintf(w, "%d %d\n", seq, time.Now().UnixNano())
			w.Flush()
			if err == nil {
				notify() // wakes other processes' streams on PostgreSQL
			}
			return err
		})
		w.Flush()
		if err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			return 1
		}
	case "idle":
		if err := db.PingContext(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "idle:", err)
			return 1
		}
		fmt.Println(procStatusKB("VmRSS"))
	case "tailmem":
		ctx, cancel := context.WithTimeout(ctx, tailMemDeadline(n))
		defer cancel()
		if err := childTailMem(ctx, eng, db, table, n, consumers); err != nil {
			fmt.Fprintln(os.Stderr, "tailmem:", err)
			return 1
		}
	default:
		fmt.Fprintf(os.Stderr, "reflexbench child: unknown mode %q\n", args[0])
		return 2
	}
	return 0
}
