//go:build unix

package faulttest_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/faulttest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

const (
	// faults is how many faults each scenario injects; the i-th (from 1)
	// lasts outage(i).
	faults = 2
	// produceEvery is the producers' insert period.
	produceEvery = 5 * time.Millisecond
	// catchUpProduceEvery is the insert period while a consumer that
	// takes 1 ms per event catches up: well below what it consumes.
	catchUpProduceEvery = 20 * time.Millisecond
)

// outage returns how long the i-th fault of a scenario (from 1) keeps a
// peer down, the fault itself rather than a wait for anything: 1.5 s,
// then 4 s, long enough for a retry delay that grows with each failure to
// exceed the recovery target.
func outage(i int) time.Duration {
	if i == 1 {
		return 1500 * time.Millisecond
	}
	return 4 * time.Second
}

// skipShort skips a fault scenario in -short mode: each takes seconds to
// minutes.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping a fault scenario in -short mode")
	}
}

// dbConsumer is a consumer service reading an events table of its own
// database under RunForever, with an asynchronous cursors table.
type dbConsumer struct {
	name    string
	l       *ledger
	events  *rsql.EventsTable
	cursors *rsql.CursorsTable
	r       *runner
}

// dbSetup is the database side of a scenario: a fresh database with the
// tables, a pool for the test's own checks and a producer table.
type dbSetup struct {
	db     *sql.DB // direct, for setup, checks and producers
	dsn    string
	events *rsql.EventsTable // the producers' instance
}

func newDBSetup(t *testing.T) dbSetup {
	t.Helper()
	return newDBSetupAt(t, dbtest.URI(t))
}

// newDBSetupAt is newDBSetup on the server of uri.
func newDBSetupAt(t *testing.T, uri string) dbSetup {
	t.Helper()
	db, dsn := dbtest.OpenDSNAt(t, uri)
	rsqltest.CreateEventsTable(t, db, "events")
	rsqltest.CreateCursorsTable(t, db, "cursors")
	return dbSetup{db: db, dsn: dsn, events: rsql.NewEventsTable("events", rsql.WithEventMetadataField("metadata"))}
}

// consumerConfig configures a dbConsumer; the zero value means no work
// per event and the default tables.
type consumerConfig struct {
	work    time.Duration // simulated time each event takes
	events  []rsql.EventsOption
	cursors []rsql.CursorsOption
}

// startDBConsumer starts a consumer whose stream reads through streamDB and
// whose cursors are written through cursorsDB, with gap filling on
// streamDB.
func startDBConsumer(t *testing.T, l *ledger, streamDB, cursorsDB *sql.DB, cfg consumerConfig) *dbConsumer {
	t.Helper()
	c := &dbConsumer{
		name:    uniqueName("consumer"),
		l:       l,
		events:  rsql.NewEventsTable("events", cfg.events...),
		cursors: rsql.NewCursorsTable("cursors", cfg.cursors...),
	}
	t.Cleanup(func() { _ = c.cursors.Close() }) // after the runner's cleanup
	if err := rsql.FillGaps(streamDB, c.events); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rsql.StopFillingGaps(context.Background(), c.events) })
	spec := reflex.NewSpec(
		spyStream(l, c.events.ToStream(streamDB)),
		spyStore{CursorStore: c.cursors.ToStore(cursorsDB), l: l},
		&consumer{name: c.name, l: l, work: cfg.work},
	)
	c.r = startRunner(t, spec)
	return c
}

// checkStored checks the stored cursor of c against what it consumed.
func (c *dbConsumer) checkStored(t *testing.T, db *sql.DB, what string) string {
	t.Helper()
	cur := storedCursor(t, db, "cursors", c.name)
	c.l.checkCursor(t, what, cur)
	return cur
}

// waitStoredAtLeast waits until the stored cursor of c is at least id: a
// cursor whose flush failed is written later, not lost.
func (c *dbConsumer) waitStoredAtLeast(t *testing.T, db *sql.DB, id int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("cursor stored up to %d", id), func() (int64, bool) {
		n, _ := strconv.ParseInt(storedCursor(t, db, "cursors", c.name), 10, 64)
		return n, n >= id
	})
}

// backlogLeft returns how many committed events the consumer has not yet
// consumed.
func backlogLeft(l *ledger) int {
	_, seen, all := l.counts()
	return all - seen
}

// TestDatabaseOutage stops the database of a consumer twice, mid catch-up
// (a backlog of 3000 events, 1 ms of work each, read 100 at a time so that
// what the stream has read ahead does not last through the outage, and
// events produced every 20 ms) and mid tail (events produced every 5 ms), with SIGTERM, SIGKILL or SIGSTOP
// (frozen), for 1.5 s then 4 s, then starts (or thaws) it again. Mid
// cursor flush: the same with a flush statement held in flight when the
// server stops. After each fault: the first new event
// within recoveryTarget of the server answering a ping, and the stored
// cursor not ahead of consumption; at the end: every committed event
// consumed, in order within each run, no noop, a bounded shutdown.
func TestDatabaseOutage(t *testing.T) {
	skipShort(t)
	m := faulttest.StartMariaDB(t)
	stop := func(sig syscall.Signal) func(t *testing.T, i int) time.Time {
		return func(t *testing.T, i int) time.Time {
			if err := m.Stop(t.Context(), sig); err != nil {
				t.Fatal(err)
			}
			time.Sleep(outage(i)) // the outage itself
			reachable, err := m.Start(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return reachable
		}
	}
	freeze := func(t *testing.T, i int) time.Time {
		if err := m.Freeze(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(outage(i)) // the outage itself
		if err := m.Thaw(); err != nil {
			t.Fatal(err)
		}
		// Reachable once it answers again.
		var reachable time.Time
		waitFor(t, "the thawed server answering", func() (int64, bool) {
			if err := m.Ping(t.Context()); err != nil {
				return 0, false
			}
			reachable = time.Now()
			return 0, true
		})
		return reachable
	}

	catchUp := consumerConfig{work: time.Millisecond, events: []rsql.EventsOption{rsql.WithEventLookupLimit(100)}}
	for _, tc := range []struct {
		name    string
		backlog int
		cfg     consumerConfig
		fault   func(t *testing.T, i int) time.Time
	}{
		{"catch-up/SIGTERM", 3000, catchUp, stop(syscall.SIGTERM)},
		{"catch-up/SIGKILL", 3000, catchUp, stop(syscall.SIGKILL)},
		{"tail/SIGTERM", 0, consumerConfig{}, stop(syscall.SIGTERM)},
		{"tail/SIGKILL", 0, consumerConfig{}, stop(syscall.SIGKILL)},
		{"tail/SIGSTOP", 0, consumerConfig{}, freeze},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newDBSetupAt(t, m.URI())
			l := newLedger()
			if tc.backlog > 0 {
				insertBacklog(t, l, s.db, s.events, tc.backlog, 0)
			}
			c := startDBConsumer(t, l, openDB(t, s.dsn), openDB(t, s.dsn), tc.cfg)
			every := produceEvery
			if tc.backlog > 0 {
				every = catchUpProduceEvery
			}
			p := startProducer(t, l, s.db, s.events, every)
			t.Cleanup(func() { // before the consumer's cleanup: end any fault
				_ = m.Thaw()
				if m.PID() == 0 {
					_, _ = m.Start(context.Background())
				}
			})

			for i := 1; i <= faults; i++ {
				waitDelivered(t, l, l.delivered(), 500)
				if tc.backlog > 0 {
					left := backlogLeft(l)
					t.Logf("fault %d with %d committed events left to consume", i, left)
					if left < 100 {
						t.Errorf("fault %d: only %d events left to consume: not mid catch-up", i, left)
					}
				}
				start := time.Now()
				reachable := tc.fault(t, i)
				recovery(t, l, fmt.Sprintf("fault %d", i), start, reachable)
				c.checkStored(t, s.db, fmt.Sprintf("after fault %d", i))
			}
			p.stop()
			waitAllConsumed(t, l)
			shutdown(t, c.r, c.cursors, nil)
			c.checkStored(t, s.db, "after shutdown")
			l.checkFinal(t)
		})
	}

	// Mid cursor flush: the cursors table writes through a proxy that is
	// black-holed until a flush statement is in flight; then the server
	// stops (with the statement unanswered), and restarts.
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run("flush/"+strings.ToUpper(unix(sig)), func(t *testing.T) {
			s := newDBSetupAt(t, m.URI())
			l := newLedger()
			px := faulttest.NewProxy(t, m.Addr())
			c := startDBConsumer(t, l, openDB(t, s.dsn), openDB(t, viaAddr(t, s.dsn, px.Addr())),
				consumerConfig{cursors: []rsql.CursorsOption{rsql.WithCursorAsyncPeriod(250 * time.Millisecond)}})
			p := startProducer(t, l, s.db, s.events, produceEvery)
			t.Cleanup(func() {
				px.Heal()
				if m.PID() == 0 {
					_, _ = m.Start(context.Background())
				}
			})

			for i := 1; i <= faults; i++ {
				waitDelivered(t, l, l.delivered(), 300)
				px.Blackhole()
				// A flush connects, or sends its statement, or waits for
				// the answer, and hangs.
				waitFor(t, "a cursor flush in flight", func() (int64, bool) {
					st := px.Stats()
					held := st.HeldToTarget + st.HeldToClient
					return held, held > 0 || st.Waiting > 0
				})
				consumed := l.maxConsumed()
				start := time.Now()
				if err := m.Stop(t.Context(), sig); err != nil {
					t.Fatal(err)
				}
				px.Heal() // the held statement meets a dead server
				time.Sleep(outage(i))
				reachable, err := m.Start(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				recovery(t, l, fmt.Sprintf("fault %d", i), start, reachable)
				c.checkStored(t, s.db, fmt.Sprintf("after fault %d", i))
				// The cursor of the failed flush is written later.
				c.waitStoredAtLeast(t, s.db, consumed)
				c.checkStored(t, s.db, fmt.Sprintf("after the flush following fault %d", i))
			}
			p.stop()
			waitAllConsumed(t, l)
			shutdown(t, c.r, c.cursors, nil)
			c.checkStored(t, s.db, "after shutdown")
			l.checkFinal(t)
		})
	}
}

func unix(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "sigkill"
	case syscall.SIGTERM:
		return "sigterm"
	}
	return sig.String()
}

// stmt is a statement in flight.
type stmt struct {
	id   int64
	info string
}

// inFlight returns the statements in flight on the connections behind px
// whose text starts with prefix and mentions table.
func inFlight(t *testing.T, db *sql.DB, px *faulttest.Proxy, prefix, table string) []stmt {
	t.Helper()
	ports := map[string]bool{}
	for _, a := range px.OutboundAddrs() {
		if _, port, err := net.SplitHostPort(a); err == nil {
			ports[port] = true
		}
	}
	rows, err := db.QueryContext(t.Context(),
		"SELECT ID, HOST, COALESCE(INFO, '') FROM information_schema.PROCESSLIST WHERE COMMAND IN ('Query', 'Execute') AND ID <> CONNECTION_ID()")
	if err != nil {
		t.Fatalf("processlist: %v", err)
	}
	defer rows.Close()
	var out []stmt
	for rows.Next() {
		var (
			s    stmt
			host string
		)
		if err := rows.Scan(&s.id, &host, &s.info); err != nil {
			t.Fatal(err)
		}
		i := strings.LastIndexByte(host, ':')
		if i < 0 || !ports[host[i+1:]] {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(s.info)), prefix) && strings.Contains(s.info, table) {
			out = append(out, s)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStatementKills kills the consumer's statements from another session
// while they are in flight, held there by a lock: event reads (the events
// table locked for writing: the head watcher's query, then, once its
// failure wakes the stream, the stream's load) and cursor flushes (the
// consumer's cursor row locked), with KILL QUERY and KILL CONNECTION.
// After each: the first new event within recoveryTarget of the lock's
// release, the stored cursor not ahead of consumption, and a killed flush
// written later.
func TestStatementKills(t *testing.T) {
	skipShort(t)
	s := newDBSetup(t)
	l := newLedger()
	px := faulttest.NewProxy(t, dbAddr(t, s.dsn))
	consumerDB := openDB(t, viaAddr(t, s.dsn, px.Addr()))
	c := startDBConsumer(t, l, consumerDB, consumerDB,
		consumerConfig{cursors: []rsql.CursorsOption{rsql.WithCursorAsyncPeriod(250 * time.Millisecond)}})
	p := startProducer(t, l, s.db, s.events, produceEvery)

	lockConn, err := s.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := lockConn.ExecContext(t.Context(), q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	lockEvents := func() { exec("LOCK TABLES events WRITE") }
	unlockEvents := func() { exec("UNLOCK TABLES") }
	lockCursor := func() {
		exec("BEGIN")
		exec("SELECT id FROM cursors WHERE id = ? FOR UPDATE", c.name)
	}
	unlockCursor := func() { exec("ROLLBACK") }
	isLoad := func(info string) bool { return strings.Contains(info, "foreign_id") }
	isAny := func(string) bool { return true }
	waitDelivered(t, l, 0, 200)
	c.waitStoredAtLeast(t, s.db, 1) // the cursor row exists

	for _, k := range []struct {
		name          string
		kill          string
		lock, unlock  func()
		prefix, table string
		until         func(info string) bool // kill until a statement like this is killed
	}{
		{"read/KILL QUERY", "KILL QUERY", lockEvents, unlockEvents, "SELECT", "events", isLoad},
		{"read/KILL CONNECTION", "KILL CONNECTION", lockEvents, unlockEvents, "SELECT", "events", isLoad},
		{"flush/KILL QUERY", "KILL QUERY", lockCursor, unlockCursor, "UPDATE", "cursors", isAny},
		{"flush/KILL CONNECTION", "KILL CONNECTION", lockCursor, unlockCursor, "UPDATE", "cursors", isAny},
	} {
		t.Run(k.name, func(t *testing.T) {
			waitDelivered(t, l, l.delivered(), 100)
			runs := l.runCount()
			start := time.Now()
			k.lock()
			t.Cleanup(func() { // if the test fails while locked; the unlocks are idempotent
				q := "UNLOCK TABLES"
				if k.table == "cursors" {
					q = "ROLLBACK"
				}
				_, _ = lockConn.ExecContext(context.Background(), q)
			})
			var killed []string
			waitFor(t, "a consumer statement held by the lock", func() (int64, bool) {
				done := false
				for _, st := range inFlight(t, s.db, px, k.prefix, k.table) {
					if _, err := s.db.ExecContext(t.Context(), k.kill+" "+strconv.FormatInt(st.id, 10)); err != nil {
						t.Logf("%s %d: %v", k.kill, st.id, err) // it may have ended meanwhile
						continue
					}
					killed = append(killed, st.info[:min(len(st.info), 60)])
					done = done || k.until(st.info)
				}
				return int64(len(killed)), done
			})
			consumed := l.maxConsumed()
			k.unlock()
			reachable := time.Now()
			t.Logf("%s killed %d statements: %q", k.kill, len(killed), killed)
			recovery(t, l, k.name, start, reachable)
			t.Logf("runs started since the kill: %d", l.runCount()-runs)
			c.checkStored(t, s.db, "after "+k.name)
			c.waitStoredAtLeast(t, s.db, consumed)
		})
	}
	p.stop()
	waitAllConsumed(t, l)
	shutdown(t, c.r, c.cursors, nil)
	c.checkStored(t, s.db, "after shutdown")
	l.checkFinal(t)
}

// dbAddr returns the address (host:port) of dsn.
func dbAddr(t *testing.T, dsn string) string {
	t.Helper()
	return mustParseDSN(t, dsn).Addr
}

// TestPartitionDuringShutdown cancels a consumer's run while its database
// is behind a partition (the proxy in front of it black-holes traffic),
// with a cursor buffered (a flush period of an hour, so that the final
// flush has a cursor to write): RunForever must return within
// shutdownBound. Then CursorsTable.Close, with a buffered cursor, under a
// partition: within shutdownBound too. After the partition heals, the
// stored cursors are checked.
func TestPartitionDuringShutdown(t *testing.T) {
	skipShort(t)
	s := newDBSetup(t)
	l := newLedger()
	px := faulttest.NewProxy(t, dbAddr(t, s.dsn))
	consumerDB := openDB(t, viaAddr(t, s.dsn, px.Addr()))
	c := startDBConsumer(t, l, consumerDB, consumerDB,
		consumerConfig{cursors: []rsql.CursorsOption{rsql.WithCursorAsyncPeriod(time.Hour)}})
	p := startProducer(t, l, s.db, s.events, produceEvery)
	t.Cleanup(px.Heal)

	waitDelivered(t, l, 0, 200)
	p.stop()
	waitAllConsumed(t, l)
	px.Blackhole()
	stopRunner(t, c.r, px.Heal)
	px.Heal()
	cur := c.checkStored(t, s.db, "after the run stopped")
	t.Logf("stored cursor %s, consumed up to %d (a cursor not flushed is replayed)", cur, l.maxConsumed())

	// Close with a buffered cursor, under a partition.
	if err := c.cursors.SetCursor(t.Context(), consumerDB, "close-probe", "1"); err != nil {
		t.Fatal(err)
	}
	px.Blackhole()
	closeCursors(t, c.cursors, px.Heal)
	px.Heal()
	if got := storedCursor(t, s.db, "cursors", "close-probe"); got != "1" && got != "" {
		t.Errorf("close-probe cursor = %q, want \"1\" or none", got)
	}
	l.checkFinal(t)
}
