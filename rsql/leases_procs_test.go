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
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// The multi-process lease test: child processes (this test binary,
// re-executed) run two consumers sharded 8 ways with leases in MariaDB,
// while the parent produces events and kills, pauses, adds and stops
// members. The database records every claim, release and cursor write
// (triggers), so the invariants are checked on what was committed.
const (
	procsChildEnv = "RSQL_LEASES_CHILD" // "<owner> <dsn>": run as a member
	procsShards   = 8
	procsTTL      = 3 * time.Second
	// procsInterval is shorter than the default third of the TTL: a
	// member that stops is replaced within an interval (the test wants
	// under a second), and a member on a busy machine keeps its leases
	// through a few late or failed renewals.
	procsInterval = 500 * time.Millisecond
	procsEvents   = 50000 // at least, produced while members come and go
	procsPlain    = "plain"
	procsOnce     = "once"
	// procsSlack is added to the bounds measured on a busy machine: the
	// time for a member's tick to run once its timer fired.
	procsSlack = time.Second
)

var procsConsumers = []string{procsPlain, procsOnce}

// TestLeasesMultiProcess: 3 members × 8 shards × 2 consumers (at-least-once
// with asynchronous cursors, and effectively-once with TxConsumer) consume
// at least 50,000 events while they are produced. One member is killed
// (its shards are taken over within the TTL plus one renew interval), a
// new one joins (it takes its share; the shards that stay keep their
// epoch), one is paused past its lease expiry and resumed (no cursor
// write with its old epochs lands), and one stops gracefully (its shards
// are taken over in under a second). Over the whole run: every event is
// consumed at least once by the first consumer and exactly once by the
// second, no cursor moves backwards, and no (shard, epoch) has two owners.
func TestLeasesMultiProcess(t *testing.T) {
	if v := os.Getenv(procsChildEnv); v != "" {
		owner, dsn, _ := strings.Cut(v, " ")
		procsChild(owner, dsn) // never returns
	}
	if testing.Short() {
		t.Skip("skipping the multi-process lease test (about a minute) in -short mode")
	}
	db, dsn := dbtest.OpenDSN(t)
	ctx := t.Context()
	procsSchema(t, db)

	// Producers: two goroutines inserting batches until told to stop and
	// at least procsEvents exist.
	prodCtx, stopProducers := context.WithCancel(ctx)
	var producers sync.WaitGroup
	var prodErr error
	var prodMu sync.Mutex
	events := rsql.NewEventsTable("events")
	for p := range 2 {
		producers.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-prodCtx.Done():
					return
				case <-tick.C:
				}
				evs := make([]rsql.EventToInsert, 20)
				for j := range evs {
					evs[j] = rsql.EventToInsert{ForeignID: fmt.Sprintf("p%d-%d", p, (i*20+j)%1000), Type: leaseEvType(1)}
				}
				if _, err := events.InsertMany(prodCtx, db, evs); err != nil {
					if prodCtx.Err() == nil {
						prodMu.Lock()
						prodErr = err
						prodMu.Unlock()
					}
					return
				}
			}
		})
	}
	defer func() { stopProducers(); producers.Wait() }()

	members := map[string]*procsMember{}
	start := func(owner string) { members[owner] = startProcsMember(t, owner, dsn) }
	for _, o := range []string{"a", "b", "c"} {
		start(o)
	}
	waitShares(t, db, members, []string{"a", "b", "c"})
	waitEvents(t, db, 5000)

	// SIGKILL a: its shards are taken over within TTL + one interval.
	aShards := holdings(t, db, "a")
	killed := dbNow(t, db)
	members["a"].signal(t, syscall.SIGKILL)
	<-members["a"].exited
	takeover := waitTakenOver(t, db, aShards, "a", killed)
	t.Logf("SIGKILL of a: its %d shards were claimed by others after %v (bound: TTL %v + interval %v)", len(aShards), takeover, procsTTL, procsInterval)
	if takeover > procsTTL+procsInterval+procsSlack {
		t.Errorf("a's shards were taken over %v after its SIGKILL, want within TTL + interval = %v (+%v slack)", takeover, procsTTL+procsInterval, procsSlack)
	}
	waitShares(t, db, members, []string{"b", "c"})

	// d joins: it takes its share, the shards that stay keep their epoch.
	before := epochs(t, db)
	start("d")
	waitShares(t, db, members, []string{"b", "c", "d"})
	after := epochs(t, db)
	moved := 0
	for k, l := range after {
		if l.owner == "d" {
			moved++
			continue
		}
		if b := before[k]; b != l {
			t.Errorf("shard %s/%d went from %s@%d to %s@%d when d joined, though it stayed", k.name, k.shard, b.owner, b.epoch, l.owner, l.epoch)
		}
	}
	t.Logf("d joined: %d shards moved to it (2 consumers × 8 shards over 3 members), the other %d kept their epoch", moved, len(after)-moved)

	// SIGSTOP b past its lease expiry, then SIGCONT: it loses its shards,
	// and no write under its old epochs lands (checked at the end).
	bShards := holdings(t, db, "b")
	stopped := dbNow(t, db)
	members["b"].signal(t, syscall.SIGSTOP)
	paused := waitTakenOver(t, db, bShards, "b", stopped)
	members["b"].signal(t, syscall.SIGCONT)
	t.Logf("SIGSTOP of b: its %d shards were claimed by others after %v; b resumed", len(bShards), paused)
	waitShares(t, db, members, []string{"b", "c", "d"})

	// c stops gracefully: its shards are claimed by others before its
	// leases could have expired (it renewed them at most an interval
	// before releasing them, so a claim of an expired lease comes at
	// least TTL - interval after the release): the release, not the
	// expiry, handed them over. Expected: the others' next renewal, about
	// an interval.
	cShards := holdings(t, db, "c")
	termed := dbNow(t, db)
	members["c"].signal(t, syscall.SIGTERM)
	<-members["c"].exited
	if members["c"].err != nil {
		t.Fatalf("c exited with %v after SIGTERM\n%s", members["c"].err, members["c"].out.String())
	}
	handover, fromTerm := waitHandedOver(t, db, cShards, "c", termed)
	t.Logf("graceful stop of c: %d shards claimed by others %v after their release at most (%v after SIGTERM)", len(cShards), handover, fromTerm)
	if bound := procsTTL - procsInterval; handover >= bound {
		t.Errorf("c's shards were claimed %v after c released them, want under TTL - interval = %v (before the leases could expire)", handover, bound)
	}
	waitShares(t, db, members, []string{"b", "d"})

	// Enough events, then every member catches up.
	waitEvents(t, db, procsEvents)
	stopProducers()
	producers.Wait()
	if prodErr != nil {
		t.Fatalf("producer: %v", prodErr)
	}
	waitCaughtUp(t, db)
	for _, o := range []string{"b", "d"} {
		members[o].signal(t, syscall.SIGTERM)
		<-members[o].exited
		if members[o].err != nil {
			t.Errorf("%s exited with %v\n%s", o, members[o].err, members[o].out.String())
		}
	}
	checkProcsInvariants(t, db)
	t.Logf("member b: %d fenced writes refused with ErrLeaseLost (after its pause)", members["b"].lost())
}

// procsSchema creates the tables and the triggers that record claims,
// releases and cursor writes.
func procsSchema(t *testing.T, db *sql.DB) {
	t.Helper()
	rsqltest.CreateEventsTable(t, db, "events")
	rsqltest.CreateCursorsTable(t, db, "cursors")
	for _, ddl := range []string{
		rsql.LeasesSchema(rsql.MySQL, "leases"),
		"CREATE TABLE consumed (event_id BIGINT NOT NULL PRIMARY KEY, n INT NOT NULL)",
		"CREATE TABLE effects (event_id BIGINT NOT NULL PRIMARY KEY, shard INT NOT NULL, owner VARBINARY(255) NOT NULL, epoch BIGINT NOT NULL)",
		"CREATE TABLE claims (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARBINARY(255) NOT NULL, shard INT NOT NULL, owner VARBINARY(255) NOT NULL, " +
			"epoch BIGINT NOT NULL, released BOOL NOT NULL, at DATETIME(6) NOT NULL)",
		"CREATE TABLE cursor_history (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARBINARY(255) NOT NULL, old BIGINT NULL, new BIGINT NOT NULL, at DATETIME(6) NOT NULL)",
		"CREATE TRIGGER lease_claimed AFTER INSERT ON leases FOR EACH ROW " +
			"INSERT INTO claims (name, shard, owner, epoch, released, at) VALUES (NEW.name, NEW.shard, NEW.owner, NEW.epoch, FALSE, now(6))",
		"CREATE TRIGGER lease_changed AFTER UPDATE ON leases FOR EACH ROW BEGIN " +
			"IF NEW.epoch <> OLD.epoch THEN INSERT INTO claims (name, shard, owner, epoch, released, at) VALUES (NEW.name, NEW.shard, NEW.owner, NEW.epoch, FALSE, now(6)); END IF; " +
			"IF NEW.owner = '' AND OLD.owner <> '' THEN INSERT INTO claims (name, shard, owner, epoch, released, at) VALUES (NEW.name, NEW.shard, OLD.owner, NEW.epoch, TRUE, now(6)); END IF; END",
		"CREATE TRIGGER cursor_inserted AFTER INSERT ON cursors FOR EACH ROW " +
			"INSERT INTO cursor_history (name, old, new, at) VALUES (NEW.id, NULL, NEW.last_event_id, now(6))",
		"CREATE TRIGGER cursor_updated AFTER UPDATE ON cursors FOR EACH ROW " +
			"INSERT INTO cursor_history (name, old, new, at) VALUES (NEW.id, OLD.last_event_id, NEW.last_event_id, now(6))",
	} {
		if _, err := db.ExecContext(t.Context(), ddl); err != nil {
			t.Fatalf("%v\n%s", err, ddl)
		}
	}
}

// procsMember is a member process.
type procsMember struct {
	owner  string
	cmd    *exec.Cmd
	stdin  io.Closer
	out    *syncBuffer
	exited chan struct{} // closed when the process has exited; err is set
	err    error
}

func startProcsMember(t *testing.T, owner, dsn string) *procsMember {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeasesMultiProcess$", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), procsChildEnv+"="+owner+" "+dsn)
	m := &procsMember{owner: owner, cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = m.out, m.out
	stdin, err := cmd.StdinPipe() // the child exits when the parent goes away
	if err != nil {
		t.Fatal(err)
	}
	m.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatalf("start member %s: %v", owner, err)
	}
	go func() {
		m.err = cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-m.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Kill()
			<-m.exited
		}
		_ = stdin.Close()
		if t.Failed() {
			t.Logf("member %s output:\n%s", owner, lastLines(m.out.String(), 40))
		}
	})
	return m
}

func (m *procsMember) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, m.owner, err)
	}
}

// lost counts the refused fenced writes the member reported.
func (m *procsMember) lost() int {
	return strings.Count(m.out.String(), "\nlost ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// leaseKey names a shard lease.
type leaseKey struct {
	name  string
	shard int
}

type leaseHolder struct {
	owner string
	epoch int64
}

// epochs returns the live holder of every shard lease.
func epochs(t *testing.T, db *sql.DB) map[leaseKey]leaseHolder {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT name, shard, owner, epoch FROM leases WHERE shard >= 0 AND owner <> '' AND expires_at > now(6)")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[leaseKey]leaseHolder{}
	for rows.Next() {
		var k leaseKey
		var h leaseHolder
		if err := rows.Scan(&k.name, &k.shard, &h.owner, &h.epoch); err != nil {
			t.Fatal(err)
		}
		out[k] = h
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dumpLeases returns the leases table as text, for failures.
func dumpLeases(t *testing.T, db *sql.DB) string {
	rows, err := db.QueryContext(context.Background(), "SELECT name, shard, shards, owner, epoch, TIMESTAMPDIFF(MICROSECOND, now(6), expires_at) FROM leases ORDER BY name, shard")
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var name, owner string
		var shard, shards int
		var epoch, left int64
		if err := rows.Scan(&name, &shard, &shards, &owner, &epoch, &left); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&b, "%s/%d of %d: %q@%d left %v\n", name, shard, shards, owner, epoch, time.Duration(left)*time.Microsecond)
	}
	return b.String()
}

// holdings returns the shard leases owner holds.
func holdings(t *testing.T, db *sql.DB, owner string) []leaseKey {
	t.Helper()
	var out []leaseKey
	for k, h := range epochs(t, db) {
		if h.owner == owner {
			out = append(out, k)
		}
	}
	return out
}

func dbNow(t *testing.T, db *sql.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := db.QueryRowContext(t.Context(), "SELECT now(6)").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// consumedCount returns the events produced, consumed by the plain
// consumer and by the once consumer.
func consumedCount(t *testing.T, db *sql.DB) (events, plain, once int64) {
	t.Helper()
	err := db.QueryRowContext(t.Context(), "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM consumed), (SELECT COUNT(*) FROM effects)").
		Scan(&events, &plain, &once)
	if err != nil {
		t.Fatal(err)
	}
	return events, plain, once
}

// waitShares waits until the members in live hold a fair share of the
// shards of each consumer (between n/m and n/m+1 each, all shards held),
// failing if a member exits or the shares stop changing for a minute.
func waitShares(t *testing.T, db *sql.DB, members map[string]*procsMember, live []string) {
	t.Helper()
	lo := procsShards / len(live)
	hi := lo
	if procsShards%len(live) != 0 {
		hi++
	}
	var last string
	err := testguard.Poll(time.Minute, 50*time.Millisecond, fmt.Sprintf("the shares of %v", live), func() (int64, bool, error) {
		for _, o := range live {
			select {
			case <-members[o].exited:
				return 0, false, fmt.Errorf("member %s exited: %v", o, members[o].err)
			default:
			}
		}
		held := epochs(t, db)
		count := map[string]map[string]int{}
		for k, h := range held {
			if count[k.name] == nil {
				count[k.name] = map[string]int{}
			}
			count[k.name][h.owner]++
		}
		last = fmt.Sprint(count)
		for _, name := range procsConsumers {
			total := 0
			for _, o := range live {
				c := count[name][o]
				if c < lo || c > hi {
					return int64(len(held)), false, nil
				}
				total += c
			}
			if total != procsShards {
				return int64(len(held)), false, nil
			}
		}
		return 0, true, nil
	})
	if err != nil {
		t.Fatalf("%v (last: %s)", err, last)
	}
}

// waitEvents waits until n events were produced and the consumers keep
// up.
func waitEvents(t *testing.T, db *sql.DB, n int64) {
	t.Helper()
	err := testguard.Poll(time.Minute, 100*time.Millisecond, fmt.Sprintf("producing %d events", n), func() (int64, bool, error) {
		ev, plain, once := consumedCount(t, db)
		return ev + plain + once, ev >= n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitCaughtUp waits until both consumers consumed every event.
func waitCaughtUp(t *testing.T, db *sql.DB) {
	t.Helper()
	err := testguard.Poll(time.Minute, 100*time.Millisecond, "the catch-up", func() (int64, bool, error) {
		ev, plain, once := consumedCount(t, db)
		return plain + once, plain == ev && once == ev, nil
	})
	if err != nil {
		ev, plain, once := consumedCount(t, db)
		t.Fatalf("%v: %d events, %d consumed, %d effects", err, ev, plain, once)
	}
}

// waitTakenOver waits until each of shards was claimed by another member
// than owner after since, and returns the latest delay.
func waitTakenOver(t *testing.T, db *sql.DB, shards []leaseKey, owner string, since time.Time) time.Duration {
	t.Helper()
	var worst time.Duration
	err := testguard.Poll(time.Minute, 20*time.Millisecond, "the takeover of "+owner+"'s shards", func() (int64, bool, error) {
		worst = 0
		done := 0
		for _, k := range shards {
			var at sql.NullTime
			err := db.QueryRowContext(t.Context(), "SELECT MIN(at) FROM claims WHERE name = ? AND shard = ? AND owner <> ? AND NOT released AND at > ?",
				k.name, k.shard, owner, since).Scan(&at)
			if err != nil {
				return 0, false, err
			}
			if at.Valid {
				done++
				worst = max(worst, at.Time.Sub(since))
			}
		}
		return int64(done), done == len(shards), nil
	})
	if err != nil {
		t.Fatalf("%v: waiting for %v; leases:\n%s", err, shards, dumpLeases(t, db))
	}
	return worst
}

// waitHandedOver waits until each of shards, released by owner after
// since, was claimed by another member, and returns the latest delay from
// the release and from since.
func waitHandedOver(t *testing.T, db *sql.DB, shards []leaseKey, owner string, since time.Time) (fromRelease, fromSince time.Duration) {
	t.Helper()
	fromSince = waitTakenOver(t, db, shards, owner, since)
	for _, k := range shards {
		var released, claimed sql.NullTime
		err := db.QueryRowContext(t.Context(),
			"SELECT (SELECT MIN(at) FROM claims WHERE name = ? AND shard = ? AND owner = ? AND released AND at > ?), "+
				"(SELECT MIN(at) FROM claims WHERE name = ? AND shard = ? AND owner <> ? AND NOT released AND at > ?)",
			k.name, k.shard, owner, since, k.name, k.shard, owner, since).Scan(&released, &claimed)
		if err != nil {
			t.Fatal(err)
		}
		if !released.Valid {
			t.Errorf("%s did not release shard %s/%d when it stopped", owner, k.name, k.shard)
			continue
		}
		fromRelease = max(fromRelease, claimed.Time.Sub(released.Time))
	}
	return fromRelease, fromSince
}

// checkProcsInvariants checks what the database recorded over the run.
func checkProcsInvariants(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx := t.Context()
	q := func(query string) int64 {
		var n int64
		if err := db.QueryRowContext(ctx, query).Scan(&n); err != nil {
			t.Fatalf("%v\n%s", err, query)
		}
		return n
	}
	events := q("SELECT COUNT(*) FROM events")
	t.Logf("%d events; %d claims, %d releases; %d cursor writes; plain consumer consumed %d events more than once",
		events, q("SELECT COUNT(*) FROM claims WHERE NOT released"), q("SELECT COUNT(*) FROM claims WHERE released"),
		q("SELECT COUNT(*) FROM cursor_history"), q("SELECT COUNT(*) FROM consumed WHERE n > 1"))
	if events < procsEvents {
		t.Errorf("%d events, want at least %d", events, procsEvents)
	}
	// At least once: every event consumed by the plain consumer.
	if n := q("SELECT COUNT(*) FROM events e LEFT JOIN consumed c ON c.event_id = e.id WHERE c.event_id IS NULL"); n != 0 {
		t.Errorf("%d events never consumed by the plain consumer", n)
	}
	// Exactly once: one effect per event (effects has a unique key, and
	// the consumer's plain INSERT fails its transaction on a duplicate).
	if n := q("SELECT COUNT(*) FROM events e LEFT JOIN effects f ON f.event_id = e.id WHERE f.event_id IS NULL"); n != 0 {
		t.Errorf("%d events without their effect", n)
	}
	if n := q("SELECT COUNT(*) FROM effects"); n != events {
		t.Errorf("%d effects for %d events, want exactly one each", n, events)
	}
	// No cursor moves backwards.
	if n := q("SELECT COUNT(*) FROM cursor_history WHERE old IS NOT NULL AND new < old"); n != 0 {
		t.Errorf("%d cursor writes moved a cursor backwards", n)
	}
	// No (shard, epoch) with two owners.
	if n := q("SELECT COUNT(*) FROM (SELECT name, shard, epoch FROM claims WHERE NOT released GROUP BY name, shard, epoch HAVING COUNT(DISTINCT owner) > 1) x"); n != 0 {
		t.Errorf("%d (shard, epoch) pairs claimed by two owners", n)
	}
	checkFencedHistory(t, db)
}

// checkFencedHistory checks that every cursor write of the once consumer
// was made under a lease that was current when it was written: the
// effects it committed carry the writer's (owner, epoch), and the write
// came after that epoch's claim and before the next claim of the shard.
func checkFencedHistory(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx := t.Context()
	type claim struct {
		epoch int64
		owner string
		at    time.Time
	}
	claims := map[int][]claim{} // shard -> claims in epoch order
	rows, err := db.QueryContext(ctx, "SELECT shard, epoch, owner, at FROM claims WHERE name = ? AND shard >= 0 AND NOT released ORDER BY shard, epoch", procsOnce)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s int
		var c claim
		if err := rows.Scan(&s, &c.epoch, &c.owner, &c.at); err != nil {
			t.Fatal(err)
		}
		claims[s] = append(claims[s], c)
	}
	rows.Close()

	type effect struct {
		id    int64
		owner string
		epoch int64
	}
	effects := map[int][]effect{} // shard -> effects by event ID
	rows, err = db.QueryContext(ctx, "SELECT shard, event_id, owner, epoch FROM effects ORDER BY shard, event_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s int
		var e effect
		if err := rows.Scan(&s, &e.id, &e.owner, &e.epoch); err != nil {
			t.Fatal(err)
		}
		effects[s] = append(effects[s], e)
	}
	rows.Close()

	rows, err = db.QueryContext(ctx, "SELECT name, COALESCE(old, 0), new, at FROM cursor_history WHERE name LIKE 'once%' ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	checked, bad := 0, 0
	for rows.Next() {
		var (
			name     string
			old, new int64
			at       time.Time
		)
		if err := rows.Scan(&name, &old, &new, &at); err != nil {
			t.Fatal(err)
		}
		s := shardOf(name)
		es := effects[s]
		i, _ := slices.BinarySearchFunc(es, old+1, func(e effect, id int64) int { return int(e.id - id) })
		var writer *effect
		for ; i < len(es) && es[i].id <= new; i++ {
			if writer == nil {
				writer = &es[i]
			} else if es[i].owner != writer.owner || es[i].epoch != writer.epoch {
				t.Errorf("cursor write %s %d→%d committed effects of two leases: %s@%d and %s@%d", name, old, new, writer.owner, writer.epoch, es[i].owner, es[i].epoch)
				break
			}
		}
		if writer == nil {
			continue // a transaction of skipped events only
		}
		checked++
		cs := claims[s]
		j := slices.IndexFunc(cs, func(c claim) bool { return c.epoch == writer.epoch })
		switch {
		case j < 0 || cs[j].owner != writer.owner:
			t.Errorf("cursor write %s %d→%d by %s@%d: no such claim", name, old, new, writer.owner, writer.epoch)
			bad++
		case at.Before(cs[j].at) || (j+1 < len(cs) && !at.Before(cs[j+1].at)):
			next := "none"
			if j+1 < len(cs) {
				next = cs[j+1].at.Format(time.RFC3339Nano)
			}
			t.Errorf("cursor write %s %d→%d at %v by %s@%d outside its lease (claimed at %v, next claim %s)",
				name, old, new, at.Format(time.RFC3339Nano), writer.owner, writer.epoch, cs[j].at.Format(time.RFC3339Nano), next)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many bad writes")
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d transactional cursor writes checked against the claims: each within its lease", checked)
	if checked == 0 {
		t.Error("no transactional cursor write to check")
	}
}

// shardOf returns the 0-based shard of a shard consumer name
// ("<base>_<m+1>_of_<n>").
func shardOf(name string) int {
	parts := strings.Split(name, "_")
	m, _ := strconv.Atoi(parts[len(parts)-3])
	return m - 1
}

// procsLeases is a member's lease store: it remembers the lease of each
// shard it fences (for the effects it records) and reports refused fenced
// writes on stdout.
type procsLeases struct {
	*rsql.LeaseStore
	out *bufio.Writer
	mu  sync.Mutex // protects held and out
	// held is the latest lease fenced for each (name, shard).
	held map[leaseKey]rpatterns.Lease
}

func (p *procsLeases) FenceCursorStore(store reflex.CursorStore, l rpatterns.Lease, lost func()) (reflex.CursorStore, error) {
	p.mu.Lock()
	p.held[leaseKey{l.Name, l.Shard}] = l
	p.mu.Unlock()
	return p.LeaseStore.FenceCursorStore(store, l, func() {
		p.mu.Lock()
		fmt.Fprintf(p.out, "lost %s %d %d\n", l.Name, l.Shard, l.Epoch)
		p.out.Flush()
		p.mu.Unlock()
		if lost != nil {
			lost()
		}
	})
}

func (p *procsLeases) lease(name string, shard int) rpatterns.Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[leaseKey{name, shard}]
}

// procsChild is a member process: it runs the two consumers until SIGTERM
// (exit 0) or until its parent goes away.
func procsChild(owner, dsn string) {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3) // the parent closed stdin or died
	}()
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "member %s: %v\n", owner, err)
		os.Exit(2)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		fail(err)
	}
	db.SetMaxOpenConns(40)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()

	events := rsql.NewEventsTable("events", rsql.WithEventsBackoff(10*time.Millisecond))
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncPeriod(50*time.Millisecond))
	leases := &procsLeases{LeaseStore: rsql.NewLeasesTable("leases").ToStore(db), out: bufio.NewWriter(os.Stdout), held: map[leaseKey]rpatterns.Lease{}}
	opts := []rpatterns.LeaseOption{rpatterns.WithLeaseOwner(owner), rpatterns.WithLeaseTTL(procsTTL), rpatterns.WithLeaseRenewInterval(procsInterval)}
	store := cursors.ToStore(db)

	plain := func(ctx context.Context, e *reflex.Event) error {
		_, err := db.ExecContext(ctx, "INSERT INTO consumed (event_id, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1", e.IDInt())
		return err
	}
	once := func(shard rpatterns.ConsumerShard, store reflex.CursorStore) reflex.Spec {
		s := shardOf(shard.Name)
		l := leases.lease(procsOnce, s)
		fn := func(ctx context.Context, tx *sql.Tx, e *reflex.Event) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO effects (event_id, shard, owner, epoch) VALUES (?, ?, ?, ?)", e.IDInt(), s, l.Owner, l.Epoch)
			return err
		}
		tc := rsql.NewTxConsumer(shard.Name, db, store, fn, rsql.WithTxBatch(50, 50*time.Millisecond), rsql.WithTxIdleTimeout(procsTTL),
			rsql.WithTxConsumerOptions(reflex.WithEventFilter(shard.GetFilter())))
		return rsql.NewTxSpec(events.ToStream(db), tc)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() {
		errs[0] = rpatterns.RunSharded(ctx, leases, procsPlain, procsShards, events.ToStream(db), store, plain, opts...)
	})
	wg.Go(func() {
		errs[1] = rpatterns.RunShardedSpecs(ctx, leases, procsOnce, procsShards, store, once, opts...)
	})
	wg.Wait()
	if err := cursors.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "member %s: close cursors: %v\n", owner, err)
	}
	for _, err := range errs {
		if !errors.Is(err, context.Canceled) {
			fail(err)
		}
	}
	os.Exit(0)
}
