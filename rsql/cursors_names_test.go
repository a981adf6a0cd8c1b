package rsql_test

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/testguard"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// curModes are the two write modes of a cursors table.
var curModes = []struct {
	name string
	opt  rsql.CursorsOption
}{
	{"Sync", rsql.WithCursorAsyncDisabled()},
	{"Async", rsql.WithCursorAsyncPeriod(time.Hour)},
}

// nonStrictDB opens a second pool on db's database (dsn) whose sessions
// are not in a strict SQL mode: MariaDB then cuts values that do not fit
// instead of refusing them.
func nonStrictDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Params["sql_mode"] = "'NO_ENGINE_SUBSTITUTION'"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var mode string
	if err := db.QueryRowContext(t.Context(), "SELECT @@SESSION.sql_mode").Scan(&mode); err != nil || strings.Contains(mode, "STRICT") {
		t.Fatalf("sql_mode = %q, %v; want a non-strict mode", mode, err)
	}
	return db
}

// TestCursorsNamesCompareBytes: names that differ only in case, accents or
// a trailing space are different consumers, with the shipped DDL of every
// dialect, in both modes.
func TestCursorsNamesCompareBytes(t *testing.T) {
	names := []string{"Orders", "orders", "ORDERS", "\u00e9", "e", "e ", "e\u0301", "ß", "ss"}
	for _, dl := range []struct {
		name string
		d    rsql.Dialect
		db   func(t *testing.T) *sql.DB
	}{
		{"MySQL", rsql.MySQL, func(t *testing.T) *sql.DB { return dbtest.Open(t) }},
		{"SQLite", rsql.SQLite, func(t *testing.T) *sql.DB { return rsqltest.OpenSQLite(t) }},
	} {
		for _, m := range curModes {
			t.Run(dl.name+"/"+m.name, func(t *testing.T) {
				db := dl.db(t)
				ct := newCursorsTable(t, db, m.opt, rsql.WithCursorsDialect(dl.d))
				for i, n := range names {
					curSet(t, ct, db, n, fmt.Sprint(100+i))
				}
				curFlush(t, ct)
				// A second table reads what is stored.
				reader := rsql.NewCursorsTable(ct.Name(), rsql.WithCursorAsyncDisabled(), rsql.WithCursorsDialect(dl.d))
				for i, n := range names {
					curWant(t, reader, db, n, fmt.Sprint(100+i))
				}
				var rows int
				if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+ct.Name()).Scan(&rows); err != nil || rows != len(names) {
					t.Errorf("%d rows, %v; want %d", rows, err, len(names))
				}
			})
		}
	}
}

// TestCursorsFoldingKeyRefused: a table whose name column would fold names
// is refused with ErrSchema, in every mode and on every first use.
func TestCursorsFoldingKeyRefused(t *testing.T) {
	mysqlDB := dbtest.Open(t)
	// The test database's default collation is utf8mb4_general_ci.
	if _, err := mysqlDB.ExecContext(t.Context(), "CREATE TABLE folding (id VARCHAR(255) NOT NULL PRIMARY KEY, "+
		"last_event_id BIGINT NOT NULL, updated_at DATETIME(6) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	sqliteDB := rsqltest.OpenSQLite(t)
	if _, err := sqliteDB.ExecContext(t.Context(), `CREATE TABLE folding (id TEXT COLLATE NOCASE NOT NULL PRIMARY KEY, `+
		`last_event_id INTEGER NOT NULL, updated_at DATETIME NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, dl := range []struct {
		name, want string
		d          rsql.Dialect
		db         *sql.DB
	}{
		{"MySQL", "utf8mb4_general_ci", rsql.MySQL, mysqlDB},
		{"SQLite", "NOCASE", rsql.SQLite, sqliteDB},
	} {
		t.Run(dl.name, func(t *testing.T) {
			ctx := t.Context()
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, rsql.ErrSchema) || !strings.Contains(err.Error(), dl.want) || !strings.Contains(err.Error(), "folding.id") {
					t.Errorf("%s = %v, want ErrSchema naming the column and its collation %s", what, err, dl.want)
				}
			}
			sync := rsql.NewCursorsTable("folding", rsql.WithCursorAsyncDisabled(), rsql.WithCursorsDialect(dl.d))
			check("sync SetCursor", sync.SetCursor(ctx, dl.db, "Orders", "1"))
			_, err := sync.GetCursor(ctx, dl.db, "orders")
			check("sync GetCursor", err)

			async := rsql.NewCursorsTable("folding", rsql.WithCursorAsyncPeriod(time.Hour), rsql.WithCursorsDialect(dl.d))
			t.Cleanup(func() { async.Close() })
			curSet(t, async, dl.db, "Orders", "1") // no I/O: checked by the flush
			check("Flush", async.Flush(ctx))
			_, err = async.GetCursor(ctx, dl.db, "orders")
			check("async GetCursor", err)
			var rows int
			if err := dl.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM folding").Scan(&rows); err != nil || rows != 0 {
				t.Errorf("%d rows written to a folding table, %v", rows, err)
			}
		})
	}
}

// TestCursorsPadCollation: a binary collation that ignores trailing
// spaces (utf8mb4_bin) keeps case and accents apart and refuses names that
// end in a space, which it would fold.
func TestCursorsPadCollation(t *testing.T) {
	db := dbtest.Open(t)
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE padded (id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, "+
		"last_event_id BIGINT NOT NULL, updated_at DATETIME(6) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	for _, m := range curModes {
		t.Run(m.name, func(t *testing.T) {
			ct := rsql.NewCursorsTable("padded", m.opt)
			t.Cleanup(func() { ct.Close() })
			curWant(t, ct, db, "e"+m.name, "") // reads the catalog
			curSet(t, ct, db, "e"+m.name, "1")
			curSet(t, ct, db, "É"+m.name, "2")
			curSet(t, ct, db, "é"+m.name, "3")
			err := ct.SetCursor(t.Context(), db, "e"+m.name+" ", "4")
			if !errors.Is(err, rsql.ErrInvalidValue) || !strings.Contains(err.Error(), "utf8mb4_bin") {
				t.Errorf("SetCursor of a name ending in a space = %v, want ErrInvalidValue naming the collation", err)
			}
			curFlush(t, ct)
			curWant(t, ct, db, "e"+m.name, "1")
			curWant(t, ct, db, "É"+m.name, "2")
			curWant(t, ct, db, "é"+m.name, "3")
		})
	}
}

// TestCursorsBadNames: names the column cannot hold exactly are refused
// with ErrInvalidValue and a bounded message, in strict and non-strict
// sessions, and nothing is stored cut.
func TestCursorsBadNames(t *testing.T) {
	strict, dsn := dbtest.OpenDSN(t)
	loose := nonStrictDB(t, dsn)
	bad := []struct{ name, consumer string }{
		{"empty", ""},
		{"256 bytes", strings.Repeat("n", 256)},
		{"128 two-byte characters", strings.Repeat("é", 128)},
		{"1 MB", strings.Repeat("x", 1<<20)},
		{"invalid UTF-8", "orders\xff"},
		{"lone continuation byte", "\x80"},
	}
	good := []string{strings.Repeat("n", 255), strings.Repeat("é", 127) + "e", "Orders", "orders", "e ", "\u00e9", "e\u0301"}
	for _, sess := range []struct {
		name string
		db   *sql.DB
	}{{"Strict", strict}, {"NonStrict", loose}} {
		for _, m := range curModes {
			t.Run(sess.name+"/"+m.name, func(t *testing.T) {
				db, ctx := sess.db, t.Context()
				ct := newCursorsTable(t, db, m.opt)
				for _, b := range bad {
					_, gerr := ct.GetCursor(ctx, db, b.consumer)
					serr := ct.SetCursor(ctx, db, b.consumer, "1")
					for _, err := range []error{gerr, serr} {
						if !errors.Is(err, rsql.ErrInvalidValue) {
							t.Errorf("%s: %v, want ErrInvalidValue", b.name, err)
						} else if len(err.Error()) > 400 {
							t.Errorf("%s: error of %d bytes, want a bounded message", b.name, len(err.Error()))
						}
					}
				}
				for i, n := range good {
					curSet(t, ct, db, n, fmt.Sprint(i+1))
				}
				curFlush(t, ct)
				var rows int
				if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+ct.Name()).Scan(&rows); err != nil || rows != len(good) {
					t.Errorf("%d rows, %v; want %d (one per good name, none cut)", rows, err, len(good))
				}
				reader := rsql.NewCursorsTable(ct.Name(), rsql.WithCursorAsyncDisabled())
				for i, n := range good {
					curWant(t, reader, db, n, fmt.Sprint(i+1))
				}
			})
		}
	}
}

// TestCursorsBadCursorValues: string cursors longer than the column and
// int cursors outside the column's range are refused, also in a non-strict
// session that would cut or clamp them.
func TestCursorsBadCursorValues(t *testing.T) {
	strict, dsn := dbtest.OpenDSN(t)
	loose := nonStrictDB(t, dsn)
	if _, err := strict.ExecContext(t.Context(), "CREATE TABLE small_cursors (id VARBINARY(255) NOT NULL PRIMARY KEY, "+
		"last_event_id INT NOT NULL, updated_at DATETIME(6) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	for _, sess := range []struct {
		name string
		db   *sql.DB
	}{{"Strict", strict}, {"NonStrict", loose}} {
		for _, m := range curModes {
			t.Run(sess.name+"/"+m.name, func(t *testing.T) {
				db, ctx := sess.db, t.Context()
				name := fmt.Sprintf("strcursors_%d", curSeq.Add(1))
				rsqltest.CreateStringCursorsTable(t, db, name)
				st := rsql.NewCursorsTable(name, rsql.WithCursorStrings(), m.opt)
				t.Cleanup(func() { st.Close() })
				curWant(t, st, db, "c", "")
				if err := st.SetCursor(ctx, db, "c", strings.Repeat("z", 256)); !errors.Is(err, rsql.ErrInvalidValue) {
					t.Errorf("SetCursor of a 256-character string cursor = %v, want ErrInvalidValue", err)
				}
				if err := st.SetCursor(ctx, db, "c", "ok\xff"); !errors.Is(err, rsql.ErrInvalidValue) {
					t.Errorf("SetCursor of an invalid UTF-8 cursor = %v, want ErrInvalidValue", err)
				}
				curSet(t, st, db, "c", strings.Repeat("é", 255))
				curFlush(t, st)
				curWant(t, rsql.NewCursorsTable(name, rsql.WithCursorStrings(), rsql.WithCursorAsyncDisabled()), db, "c", strings.Repeat("é", 255))

				it := rsql.NewCursorsTable("small_cursors", m.opt)
				t.Cleanup(func() { it.Close() })
				consumer := sess.name + m.name
				curWant(t, it, db, consumer, "")
				if err := it.SetCursor(ctx, db, consumer, "2147483648"); !errors.Is(err, rsql.ErrInvalidValue) {
					t.Errorf("SetCursor(2^31) into an INT column = %v, want ErrInvalidValue", err)
				}
				curSet(t, it, db, consumer, "2147483647")
				curFlush(t, it)
				curWant(t, it, db, consumer, "2147483647")
			})
		}
	}
}

// TestCursorsBadNameDoesNotBlockOthers: with asynchronous cursors, a name
// the column cannot hold, set before the table has read its catalog, is
// dropped by the flush with an error, and the other consumers' cursors are
// written; the name's next SetCursor fails at once.
func TestCursorsBadNameDoesNotBlockOthers(t *testing.T) {
	db := dbtest.Open(t)
	ct := newCursorsTable(t, db, rsql.WithCursorAsyncPeriod(time.Hour))
	long := strings.Repeat("l", 300)
	curSet(t, ct, db, long, "1") // the catalog is not read yet: accepted
	curSet(t, ct, db, "first", "5")
	curSet(t, ct, db, "second", "6")
	err := ct.Flush(t.Context())
	if !errors.Is(err, rsql.ErrInvalidValue) || !strings.Contains(err.Error(), "300 bytes") {
		t.Fatalf("Flush = %v, want ErrInvalidValue for the long name", err)
	}
	reader := rsql.NewCursorsTable(ct.Name(), rsql.WithCursorAsyncDisabled())
	curWant(t, reader, db, "first", "5")
	curWant(t, reader, db, "second", "6")
	if err := ct.SetCursor(t.Context(), db, long, "2"); !errors.Is(err, rsql.ErrInvalidValue) {
		t.Errorf("SetCursor of the long name after the flush = %v, want ErrInvalidValue", err)
	}
	// Nothing is left buffered: the next flush is clean.
	curSet(t, ct, db, "first", "7")
	curFlush(t, ct)
	curWant(t, reader, db, "first", "7")
}

// TestCursorsRefusedRowDoesNotBlockOthers: a row the database refuses
// (here a CHECK constraint) among new consumers of one flush fails alone:
// the others are written, and the refused consumer's next SetCursor
// returns the error once a background flush met it.
func TestCursorsRefusedRowDoesNotBlockOthers(t *testing.T) {
	db := dbtest.Open(t)
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE checked (id VARBINARY(255) NOT NULL PRIMARY KEY, "+
		"last_event_id BIGINT NOT NULL, updated_at DATETIME(6) NOT NULL, CONSTRAINT no_poison CHECK (id <> 'poison'))"); err != nil {
		t.Fatal(err)
	}
	ct := rsql.NewCursorsTable("checked", rsql.WithCursorAsyncPeriod(time.Hour))
	t.Cleanup(func() { ct.Close() })
	names := []string{"a", "b", "c", "poison", "x", "y", "z"}
	for _, n := range names {
		curSet(t, ct, db, n, "3")
	}
	err := ct.Flush(t.Context())
	if err == nil || !strings.Contains(err.Error(), `"poison"`) || strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("Flush = %v, want an error for poison only", err)
	}
	reader := rsql.NewCursorsTable("checked", rsql.WithCursorAsyncDisabled())
	for _, n := range names {
		want := "3"
		if n == "poison" {
			want = ""
		}
		curWant(t, reader, db, n, want)
	}

	// In the background, the consumer's next SetCursor reports it.
	bg := rsql.NewCursorsTable("checked", rsql.WithCursorAsyncPeriod(time.Millisecond))
	t.Cleanup(func() { bg.Close() })
	failures := metrics.CursorsTableFlushErrors("checked")
	before := counterValue(t, failures)
	curSet(t, bg, db, "a", "4")
	curSet(t, bg, db, "poison", "4")
	err = testguard.Poll(time.Minute, time.Millisecond, "the background flush", func() (int64, bool, error) {
		return 0, counterValue(t, failures) > before, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := bg.SetCursor(t.Context(), db, "poison", "5")
	if got == nil || !strings.Contains(got.Error(), `"poison"`) || errors.Is(got, rsql.ErrCursorNotIncreasing) {
		t.Errorf("SetCursor(poison) = %v, want the flush's error", got)
	}
	curSet(t, bg, db, "poison", "5") // reported once
	curWait(t, bg, db, "a", "4")
}
