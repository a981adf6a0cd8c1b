package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// leaseDB is a database to run the lease tests on.
type leaseDB struct {
	name string
	db   *sql.DB
	d    rsql.Dialect
}

// leaseDBs returns MariaDB and PostgreSQL (each unless -short without a
// server) and SQLite.
func leaseDBs(t *testing.T) []leaseDB {
	t.Helper()
	dbs := []leaseDB{{"SQLite", rsqltest.OpenSQLite(t), rsql.SQLite}}
	if !testing.Short() || os.Getenv(dbtest.EnvPGURI) != "" {
		dbs = append([]leaseDB{{"PostgreSQL", dbtest.OpenPG(t), rsql.PostgreSQL}}, dbs...)
	}
	if !testing.Short() || os.Getenv(dbtest.EnvURI) != "" {
		dbs = append([]leaseDB{{"MariaDB", dbtest.Open(t), rsql.MySQL}}, dbs...)
	}
	return dbs
}

// leaseTables creates a leases table and a cursors table in ldb and
// returns them (the cursors table closed at the end of the test).
func leaseTables(t *testing.T, ldb leaseDB, copts ...rsql.CursorsOption) (*rsql.LeasesTable, *rsql.CursorsTable) {
	t.Helper()
	n := curSeq.Add(1)
	lname, cname := fmt.Sprintf("leases_%d", n), fmt.Sprintf("cursors_%d", n)
	if _, err := ldb.db.ExecContext(t.Context(), rsql.LeasesSchema(ldb.d, lname)); err != nil {
		t.Fatal(err)
	}
	if _, err := ldb.db.ExecContext(t.Context(), rsql.CursorsSchema(ldb.d, cname)); err != nil {
		t.Fatal(err)
	}
	ct := rsql.NewCursorsTable(cname, append([]rsql.CursorsOption{rsql.WithCursorsDialect(ldb.d)}, copts...)...)
	t.Cleanup(func() { ct.Close() })
	return rsql.NewLeasesTable(lname, rsql.WithLeasesDialect(ldb.d)), ct
}

// expire makes every lease of lt expire, as time passing would.
func expire(t *testing.T, db *sql.DB, lt *rsql.LeasesTable) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), "UPDATE "+lt.Name()+" SET expires_at = '2000-01-01 00:00:00.000'"); err != nil {
		t.Fatal(err)
	}
}

func leaseState(t *testing.T, s *rsql.LeaseStore, name string, shard int) rpatterns.LeaseState {
	t.Helper()
	states, err := s.ScanLeases(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Shard == shard {
			return st
		}
	}
	return rpatterns.LeaseState{}
}

func TestLeaseStoreClaimRenewRelease(t *testing.T) {
	for _, ldb := range leaseDBs(t) {
		t.Run(ldb.name, func(t *testing.T) {
			ctx := t.Context()
			lt, _ := leaseTables(t, ldb)
			s := lt.ToStore(ldb.db)
			const ttl = time.Minute

			a, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: 0, Shards: 2, Owner: "a"}, ttl)
			if err != nil || a.Epoch != 1 {
				t.Fatalf("first claim = %+v, %v; want epoch 1", a, err)
			}
			st := leaseState(t, s, "c", 0)
			if st.Owner != "a" || st.Epoch != 1 || st.Shards != 2 || st.Left <= ttl-10*time.Second || st.Left > ttl {
				t.Fatalf("scan = %+v, want a's lease with about %v left", st, ttl)
			}
			// Held: no one else can claim it, by insert or update.
			for _, epoch := range []int64{0, 1} {
				if _, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: 0, Shards: 2, Owner: "b", Epoch: epoch}, ttl); !errors.Is(err, rpatterns.ErrLeaseTaken) {
					t.Errorf("claim of a held lease with epoch %d = %v, want ErrLeaseTaken", epoch, err)
				}
			}
			a1, _ := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: 1, Shards: 2, Owner: "a"}, ttl)
			// Renew: only what a holds with its epochs.
			if n, err := s.RenewLeases(ctx, []rpatterns.Lease{a, a1}, ttl); n != 2 || err != nil {
				t.Errorf("renew = %d, %v; want 2", n, err)
			}
			stale := a
			stale.Epoch = 7
			if n, err := s.RenewLeases(ctx, []rpatterns.Lease{stale}, ttl); n != 0 || err != nil {
				t.Errorf("renew with another epoch = %d, %v; want 0", n, err)
			}
			other := a
			other.Owner = "b"
			if n, _ := s.RenewLeases(ctx, []rpatterns.Lease{other}, ttl); n != 0 {
				t.Errorf("renew by another owner = %d, want 0", n)
			}
			if _, err := s.RenewLeases(ctx, []rpatterns.Lease{a, other}, ttl); !errors.Is(err, rpatterns.ErrInvalidLease) {
				t.Errorf("renew of two owners = %v, want ErrInvalidLease", err)
			}

			// Release: free at once, the epoch kept for the next claim.
			if err := s.ReleaseLeases(ctx, []rpatterns.Lease{a}); err != nil {
				t.Fatal(err)
			}
			if st := leaseState(t, s, "c", 0); st.Owner != "" || st.Left > 0 || st.Epoch != 1 {
				t.Fatalf("after release: %+v, want free with epoch 1", st)
			}
			if n, _ := s.RenewLeases(ctx, []rpatterns.Lease{a}, ttl); n != 0 {
				t.Errorf("renewal of a released lease = %d, want 0", n)
			}
			if _, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: 0, Shards: 2, Owner: "b", Epoch: 0}, ttl); !errors.Is(err, rpatterns.ErrLeaseTaken) {
				t.Errorf("claim with a stale epoch = %v, want ErrLeaseTaken", err)
			}
			b, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: 0, Shards: 2, Owner: "b", Epoch: 1}, ttl)
			if err != nil || b.Epoch != 2 {
				t.Fatalf("claim after release = %+v, %v; want epoch 2", b, err)
			}

			// Expiry, by the database's clock: a lease with a TTL of a
			// microsecond is free at the next statement.
			if n, _ := s.RenewLeases(ctx, []rpatterns.Lease{b}, time.Microsecond); n != 1 {
				t.Fatalf("renewal = %d", n)
			}
			if st := leaseState(t, s, "c", 0); st.Left > 0 {
				t.Fatalf("lease with a TTL of 1µs has %v left", st.Left)
			}
			if n, _ := s.RenewLeases(ctx, []rpatterns.Lease{b}, ttl); n != 0 {
				t.Errorf("renewal of an expired lease = %d, want 0", n)
			}
			c, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: 0, Shards: 2, Owner: "c", Epoch: 2}, ttl)
			if err != nil || c.Epoch != 3 {
				t.Fatalf("claim of an expired lease = %+v, %v; want epoch 3", c, err)
			}
			// Names compare bytes: "C" is another lease.
			if states, _ := s.ScanLeases(ctx, "C"); len(states) != 0 {
				t.Errorf("scan of C = %v, want none", states)
			}
			// Negative shards (members) are leases like the others.
			m, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: -1, Shards: 2, Owner: "a"}, ttl)
			if err != nil || m.Epoch != 1 {
				t.Fatalf("member claim = %+v, %v", m, err)
			}
		})
	}
}

func TestLeaseStoreBadInput(t *testing.T) {
	for _, ldb := range leaseDBs(t) {
		t.Run(ldb.name, func(t *testing.T) {
			ctx := t.Context()
			lt, _ := leaseTables(t, ldb)
			s := lt.ToStore(ldb.db)
			long := strings.Repeat("n", 256)
			if ldb.d == rsql.SQLite {
				long = "\xff" // SQLite holds names of any length
			}
			for _, tc := range []struct {
				what string
				err  error
			}{
				{"empty name", func() error { _, err := s.ScanLeases(ctx, ""); return err }()},
				{"long name", func() error { _, err := s.ScanLeases(ctx, long); return err }()},
				{"bad UTF-8", func() error { _, err := s.ScanLeases(ctx, "\xff"); return err }()},
				{"empty owner", func() error {
					_, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shards: 1}, time.Second)
					return err
				}()},
				{"long owner", func() error {
					_, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shards: 1, Owner: long}, time.Second)
					return err
				}()},
				{"zero TTL", func() error {
					_, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shards: 1, Owner: "o"}, 0)
					return err
				}()},
			} {
				if !errors.Is(tc.err, rpatterns.ErrInvalidLease) {
					t.Errorf("%s: %v, want ErrInvalidLease", tc.what, tc.err)
				}
				if tc.err != nil && len(tc.err.Error()) > 400 {
					t.Errorf("%s: error of %d bytes", tc.what, len(tc.err.Error()))
				}
			}
			if states, _ := s.ScanLeases(ctx, "c"); len(states) != 0 {
				t.Errorf("bad input stored %v", states)
			}
		})
	}
}

func TestLeasesTableSchemaChecked(t *testing.T) {
	db := dbtest.Open(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name, ddl, want string
	}{
		{"no epoch", "CREATE TABLE %s (name VARBINARY(255) NOT NULL, shard INT NOT NULL, shards INT NOT NULL, owner VARBINARY(255) NOT NULL, " +
			"expires_at DATETIME(6) NOT NULL, PRIMARY KEY (name, shard))", "has no column epoch"},
		{"folding name", "CREATE TABLE %s (name VARCHAR(255) COLLATE utf8mb4_general_ci NOT NULL, shard INT NOT NULL, shards INT NOT NULL, " +
			"owner VARBINARY(255) NOT NULL, epoch BIGINT NOT NULL, expires_at DATETIME(6) NOT NULL, PRIMARY KEY (name, shard))", ".name has collation utf8mb4_general_ci"},
		{"folding owner", "CREATE TABLE %s (name VARBINARY(255) NOT NULL, shard INT NOT NULL, shards INT NOT NULL, " +
			"owner VARCHAR(255) COLLATE utf8mb4_general_ci NOT NULL, epoch BIGINT NOT NULL, expires_at DATETIME(6) NOT NULL, PRIMARY KEY (name, shard))", ".owner has collation"},
		{"missing table", "", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("badleases_%d", curSeq.Add(1))
			if tc.ddl != "" {
				if _, err := db.ExecContext(ctx, fmt.Sprintf(tc.ddl, name)); err != nil {
					t.Fatal(err)
				}
			}
			s := rsql.NewLeasesTable(name).ToStore(db)
			_, err := s.ScanLeases(ctx, "c")
			if !errors.Is(err, rsql.ErrSchema) || !errors.Is(err, rpatterns.ErrInvalidLease) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ScanLeases = %v, want ErrSchema and ErrInvalidLease saying %q", err, tc.want)
			}
			// RunSharded returns it at once instead of retrying.
			err = rpatterns.RunSharded(ctx, s, "c", 2, nil, nil, nil)
			if !errors.Is(err, rpatterns.ErrInvalidLease) {
				t.Fatalf("RunSharded = %v, want ErrInvalidLease", err)
			}
		})
	}
}

func TestLeasesTableSetupPanics(t *testing.T) {
	db := rsqltest.OpenSQLite(t)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"bad table name", func() { rsql.NewLeasesTable("leases; DROP") }},
		{"nil option", func() { rsql.NewLeasesTable("leases", nil) }},
		{"tx", func() { rsql.NewLeasesTable("leases").ToStore(tx) }},
		{"nil dbc", func() { rsql.NewLeasesTable("leases").ToStore(nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "rsql: ") {
					t.Errorf("panic %v, want an rsql: panic", r)
				}
			}()
			tc.f()
		})
	}
}

func TestFenceCursorStoreRefuses(t *testing.T) {
	db := rsqltest.OpenSQLite(t)
	lt, ct := leaseTables(t, leaseDB{"SQLite", db, rsql.SQLite})
	s := lt.ToStore(db)
	l := rpatterns.Lease{Name: "c", Shards: 1, Owner: "o", Epoch: 1}
	mysqlCursors := rsql.NewCursorsTable("cursors").ToStore(db)
	for _, tc := range []struct {
		name  string
		store any
		l     rpatterns.Lease
		want  string
	}{
		{"other kind", rpatterns.MemCursorStore(), l, "not *rpatterns.MemCursors"},
		{"other dialect", mysqlCursors, l, "use one dialect"},
		{"no epoch", ct.ToStore(db), rpatterns.Lease{Name: "c", Owner: "o"}, "need a name, an owner and an epoch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, _ := tc.store.(interface {
				GetCursor(context.Context, string) (string, error)
				SetCursor(context.Context, string, string) error
				Flush(context.Context) error
			})
			_, err := s.FenceCursorStore(cs, tc.l, nil)
			if !errors.Is(err, rpatterns.ErrInvalidLease) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("FenceCursorStore = %v, want ErrInvalidLease saying %q", err, tc.want)
			}
		})
	}
}

// TestFencedCursorWrites: a cursor write through a store fenced by a lease
// takes effect while the lease is held and changes nothing once another
// member claimed it, in synchronous mode and for a delayed asynchronous
// flush, for a new row (insert) and an existing one (update).
func TestFencedCursorWrites(t *testing.T) {
	for _, ldb := range leaseDBs(t) {
		for _, mode := range []struct {
			name string
			opt  rsql.CursorsOption
		}{
			{"Sync", rsql.WithCursorAsyncDisabled()},
			{"Async", rsql.WithCursorAsyncPeriod(time.Hour)},
		} {
			t.Run(ldb.name+"/"+mode.name, func(t *testing.T) {
				ctx := t.Context()
				lt, ct := leaseTables(t, ldb, mode.opt)
				s := lt.ToStore(ldb.db)
				async := mode.name == "Async"
				flush := func() error {
					if async {
						return ct.Flush(ctx)
					}
					return nil
				}
				a, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: 0, Shards: 1, Owner: "a"}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				var lost atomic.Int32
				fa, err := s.FenceCursorStore(ct.ToStore(ldb.db), a, func() { lost.Add(1) })
				if err != nil {
					t.Fatal(err)
				}
				// Held: a new row, then an update.
				for _, cur := range []string{"5", "8"} {
					if err := fa.SetCursor(ctx, "c_1_of_1", cur); err != nil {
						t.Fatalf("SetCursor(%s) while held: %v", cur, err)
					}
					if err := flush(); err != nil {
						t.Fatalf("Flush while held: %v", err)
					}
					curWant(t, ct, ldb.db, "c_1_of_1", cur)
				}

				// b claims the lease after it expired.
				if err := fa.SetCursor(ctx, "c_1_of_1", "9"); err != nil {
					t.Fatal(err) // async: buffered; sync: written
				}
				expire(t, ldb.db, lt)
				b, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shard: 0, Shards: 1, Owner: "b", Epoch: a.Epoch}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				want := "9"
				if async {
					want = "8"
					err := flush()
					if !errors.Is(err, rsql.ErrLeaseLost) || !strings.Contains(err.Error(), `"a"`) {
						t.Fatalf("delayed Flush after the lease was lost = %v, want ErrLeaseLost naming the owner", err)
					}
				}
				stored, _ := rsql.NewCursorsTable(ct.Name(), rsql.WithCursorsDialect(ldb.d)).GetCursor(ctx, ldb.db, "c_1_of_1")
				if stored != want {
					t.Fatalf("stored cursor %q after the stale write, want %q", stored, want)
				}
				err = fa.SetCursor(ctx, "c_1_of_1", "10")
				if !errors.Is(err, rsql.ErrLeaseLost) {
					t.Fatalf("SetCursor by the old holder = %v, want ErrLeaseLost", err)
				}
				if err := flush(); err != nil {
					t.Fatalf("Flush with nothing left to write: %v", err)
				}
				if lost.Load() < 1 {
					t.Errorf("lost was not called")
				}
				// A new row is fenced too.
				if err := fa.SetCursor(ctx, "other", "1"); err != nil && !errors.Is(err, rsql.ErrLeaseLost) {
					t.Fatal(err)
				}
				_ = flush()
				curWant(t, ct, ldb.db, "other", "")

				// The new holder goes on from the stored cursor.
				fb, _ := s.FenceCursorStore(ct.ToStore(ldb.db), b, nil)
				if got, err := fb.GetCursor(ctx, "c_1_of_1"); err != nil || got != want {
					t.Fatalf("new holder's GetCursor = %q, %v; want %q", got, err, want)
				}
				if err := fb.SetCursor(ctx, "c_1_of_1", "12"); err != nil {
					t.Fatal(err)
				}
				if err := flush(); err != nil {
					t.Fatal(err)
				}
				curWant(t, ct, ldb.db, "c_1_of_1", "12")
			})
		}
	}
}

// TestFencedAsyncHandOver: a cursor buffered under one lease of this
// process is adopted by the store of the next lease that reads it, and
// written under that lease.
func TestFencedAsyncHandOver(t *testing.T) {
	db := dbtest.Open(t)
	ctx := t.Context()
	lt, ct := leaseTables(t, leaseDB{"MariaDB", db, rsql.MySQL}, rsql.WithCursorAsyncPeriod(time.Hour))
	s := lt.ToStore(db)
	a, _ := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shards: 1, Owner: "a"}, time.Hour)
	fa, _ := s.FenceCursorStore(ct.ToStore(db), a, nil)
	if err := fa.SetCursor(ctx, "c", "3"); err != nil {
		t.Fatal(err)
	}
	// The lease is released and claimed again in this process (a new
	// epoch) before the buffer was flushed.
	if err := s.ReleaseLeases(ctx, []rpatterns.Lease{a}); err != nil {
		t.Fatal(err)
	}
	a2, err := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shards: 1, Owner: "a", Epoch: a.Epoch}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fa2, _ := s.FenceCursorStore(ct.ToStore(db), a2, nil)
	if got, _ := fa2.GetCursor(ctx, "c"); got != "3" {
		t.Fatalf("GetCursor = %q, want the buffered 3", got)
	}
	if err := ct.Flush(ctx); err != nil {
		t.Fatalf("Flush of the adopted cursor: %v", err)
	}
	curWant(t, ct, db, "c", "3")
	// The old store's lost lease does not fail the new one's writes.
	if err := fa.SetCursor(ctx, "c", "4"); err != nil {
		t.Fatal(err) // buffered under the old lease
	}
	if err := ct.Flush(ctx); !errors.Is(err, rsql.ErrLeaseLost) {
		t.Fatalf("Flush = %v, want ErrLeaseLost for the old lease", err)
	}
	if err := fa2.SetCursor(ctx, "c", "5"); err != nil {
		t.Fatalf("SetCursor under the new lease: %v", err)
	}
	if err := ct.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	curWant(t, ct, db, "c", "5")
}

// TestFencedWriteLocksLease: a fenced cursor write in an open transaction
// (as TxConsumer writes it) locks the lease row, so that a claim of the
// lease, once expired, waits until the transaction ends (here it times
// out), at REPEATABLE READ and at READ COMMITTED, for an update and an
// insert of the cursor row; the claim then succeeds and the claimer reads
// the cursor the transaction committed.
func TestFencedWriteLocksLease(t *testing.T) {
	for _, e := range serverEngines() {
		t.Run(e.name, func(t *testing.T) { fencedWriteLocksLease(t, e) })
	}
}

func fencedWriteLocksLease(t *testing.T, e engine) {
	db := e.openDB(t)
	ctx := t.Context()
	lockTimeout, lockErr := "SET SESSION innodb_lock_wait_timeout = 1", "Lock wait timeout"
	if e.d == rsql.PostgreSQL {
		lockTimeout, lockErr = "SET lock_timeout = '1s'", "lock timeout"
	}
	for _, iso := range []sql.IsolationLevel{sql.LevelRepeatableRead, sql.LevelReadCommitted} {
		for _, existing := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/existing=%v", iso, existing), func(t *testing.T) {
				lt, ct := leaseTables(t, leaseDB{e.name, db, e.d}, rsql.WithCursorAsyncDisabled())
				s := lt.ToStore(db)
				a, _ := s.ClaimLease(ctx, rpatterns.Lease{Name: "c", Shards: 1, Owner: "a"}, 300*time.Millisecond)
				fa, _ := s.FenceCursorStore(ct.ToStore(db), a, nil)
				if existing {
					if err := fa.SetCursor(ctx, "c", "1"); err != nil {
						t.Fatal(err)
					}
				}
				tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: iso})
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				ftx, _ := s.FenceCursorStore(ct.ToStore(tx), a, nil)
				if err := ftx.SetCursor(ctx, "c", "2"); err != nil {
					t.Fatalf("fenced write in a transaction: %v", err)
				}
				// Wait (by the database's clock) for the lease to expire.
				err = testguardPoll(func() (bool, error) {
					var expired bool
					err := db.QueryRowContext(ctx, "SELECT expires_at <= "+e.now()+" FROM "+lt.Name()).Scan(&expired)
					return expired, err
				})
				if err != nil {
					t.Fatal(err)
				}
				conn, err := db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if _, err := conn.ExecContext(ctx, lockTimeout); err != nil {
					t.Fatal(err)
				}
				claim := rpatterns.Lease{Name: "c", Shards: 1, Owner: "b", Epoch: a.Epoch}
				_, err = lt.ToStore(conn).ClaimLease(ctx, claim, time.Hour)
				if err == nil || !strings.Contains(err.Error(), lockErr) {
					t.Fatalf("claim while the fenced write's transaction is open = %v, want a lock wait timeout", err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				b, err := lt.ToStore(conn).ClaimLease(ctx, claim, time.Hour)
				if err != nil {
					t.Fatalf("claim after the commit: %v", err)
				}
				fb, _ := s.FenceCursorStore(ct.ToStore(db), b, nil)
				if got, _ := fb.GetCursor(ctx, "c"); got != "2" {
					t.Errorf("new holder reads %q, want the committed 2", got)
				}
			})
		}
	}
}

// testguardPoll polls check every 10 ms until it reports done, failing
// after a minute (a hang guard: the wait takes a fraction of a second).
func testguardPoll(check func() (bool, error)) error {
	return testguard.Poll(time.Minute, 10*time.Millisecond, "lease expiry", func() (int64, bool, error) {
		done, err := check()
		return 0, done, err
	})
}

// TestLeasesShardCountMismatch: with the leases table, a member started
// with another shard count while one runs gets ErrShardCount and claims
// nothing; the running member keeps its shards.
func TestLeasesShardCountMismatch(t *testing.T) {
	for _, ldb := range leaseDBs(t) {
		t.Run(ldb.name, func(t *testing.T) {
			lt, ct := leaseTables(t, ldb)
			s := lt.ToStore(ldb.db)
			ctx, cancel := context.WithCancel(t.Context())
			stream := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
				return blockingClient{ctx}, nil
			}
			nop := func(context.Context, *reflex.Event) error { return nil }
			opts := []rpatterns.LeaseOption{rpatterns.WithLeaseTTL(time.Minute), rpatterns.WithLeaseRenewInterval(50 * time.Millisecond)}
			done := make(chan error, 1)
			go func() {
				done <- rpatterns.RunSharded(ctx, s, "c", 4, stream, ct.ToStore(ldb.db), nop, append(opts, rpatterns.WithLeaseOwner("a"))...)
			}()
			defer func() { cancel(); <-done }()
			err := testguardPoll(func() (bool, error) {
				states, err := s.ScanLeases(ctx, "c")
				held := 0
				for _, st := range states {
					if st.Shard >= 0 && st.Owner == "a" {
						held++
					}
				}
				return held == 4, err
			})
			if err != nil {
				t.Fatal(err)
			}
			err = rpatterns.RunSharded(ctx, s, "c", 8, stream, ct.ToStore(ldb.db), nop, append(opts, rpatterns.WithLeaseOwner("b"))...)
			if !errors.Is(err, rpatterns.ErrShardCount) || !strings.Contains(err.Error(), "4 shards") || !strings.Contains(err.Error(), "with 8") {
				t.Fatalf("RunSharded with 8 shards = %v, want ErrShardCount naming 4 and 8", err)
			}
			states, _ := s.ScanLeases(ctx, "c")
			for _, st := range states {
				if st.Owner != "a" {
					t.Errorf("lease %+v: want every lease held by a", st)
				}
			}
		})
	}
}

// blockingClient is a stream client without events.
type blockingClient struct{ ctx context.Context }

func (c blockingClient) Recv() (*reflex.Event, error) {
	<-c.ctx.Done()
	return nil, c.ctx.Err()
}
