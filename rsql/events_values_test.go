package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// sessions returns pools to one database with a strict and a non-strict
// session SQL mode.
func sessions(t *testing.T) map[string]*sql.DB {
	t.Helper()
	_, dsn := dbtest.OpenDSN(t)
	out := map[string]*sql.DB{}
	for name, mode := range map[string]string{
		"strict":    "'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'",
		"nonstrict": "'NO_ENGINE_SUBSTITUTION'",
	} {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Params["sql_mode"] = mode
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var got string
		if err := db.QueryRow("SELECT @@SESSION.sql_mode").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if strict := strings.Contains(got, "STRICT"); strict != (name == "strict") {
			t.Fatalf("%s session has sql_mode %q", name, got)
		}
		out[name] = db
	}
	return out
}

func countRows(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM `" + table + "`").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInsertValuesTheColumnsCannotHold: values beyond the columns' limits
// are refused with a clear error, in strict and non-strict sessions, and
// nothing is stored cut.
func TestInsertValuesTheColumnsCannotHold(t *testing.T) {
	for mode, db := range sessions(t) {
		t.Run(mode, func(t *testing.T) {
			table := newTable(t, db)
			name := table.Name()
			for _, tc := range []struct {
				name      string
				fid       string
				typ       int
				meta      []byte
				column    string // "" if the insert is valid
				limitText string
			}{
				{name: "foreign id 255 chars", fid: strings.Repeat("a", 255), typ: 1},
				{name: "foreign id 255 2-byte chars", fid: strings.Repeat("é", 255), typ: 1},
				{name: "foreign id 4-byte chars", fid: strings.Repeat("\U0001F600", 255), typ: 1},
				{name: "foreign id 256 chars", fid: strings.Repeat("a", 256), typ: 1, column: "foreign_id", limitText: "holds 255"},
				{name: "foreign id 300 chars", fid: strings.Repeat("b", 300), typ: 1, column: "foreign_id", limitText: "holds 255"},
				{name: "foreign id 256 2-byte chars", fid: strings.Repeat("é", 256), typ: 1, column: "foreign_id", limitText: "holds 255"},
				{name: "foreign id invalid UTF-8", fid: "ab\xffcd", typ: 1, column: "foreign_id", limitText: "UTF-8"},
				{name: "metadata 65535 bytes", fid: "m", typ: 1, meta: make([]byte, 65535)},
				{name: "metadata 65536 bytes", fid: "m", typ: 1, meta: make([]byte, 65536), column: "metadata", limitText: "holds 65535"},
				{name: "type max int32", fid: "t", typ: math.MaxInt32},
				{name: "type min int32", fid: "t", typ: math.MinInt32},
				{name: "type over int32", fid: "t", typ: math.MaxInt32 + 1, column: "type", limitText: "2147483647"},
				{name: "type 1<<40", fid: "t", typ: 1 << 40, column: "type", limitText: "2147483647"},
				{name: "type under int32", fid: "t", typ: math.MinInt32 - 1, column: "type", limitText: "-2147483648"},
			} {
				before := countRows(t, db, name)
				_, err := table.InsertWithMetadata(t.Context(), db, tc.fid, testType(tc.typ), tc.meta)
				after := countRows(t, db, name)
				if tc.column == "" {
					if err != nil || after != before+1 {
						t.Errorf("%s: %v (%d rows added), want stored", tc.name, err, after-before)
					}
					continue
				}
				if !errors.Is(err, rsql.ErrInvalidValue) {
					t.Errorf("%s: error %v, want ErrInvalidValue", tc.name, err)
					continue
				}
				msg := err.Error()
				for _, want := range []string{name, "column " + tc.column, tc.limitText} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: error %q does not name %q", tc.name, msg, want)
					}
				}
				if len(msg) > 200 {
					t.Errorf("%s: error of %d bytes: %.100s...", tc.name, len(msg), msg)
				}
				if after != before {
					t.Errorf("%s: %d rows stored by a refused insert", tc.name, after-before)
				}
			}
			// The stored values are whole.
			var longest int
			if err := db.QueryRow("SELECT MAX(CHAR_LENGTH(foreign_id)) FROM `" + name + "`").Scan(&longest); err != nil || longest != 255 {
				t.Errorf("longest stored foreign id = %d chars (%v), want 255", longest, err)
			}

			// InsertMany checks every event before writing any.
			before := countRows(t, db, name)
			evs := []rsql.EventToInsert{{ForeignID: "ok", Type: testType(1)}, {ForeignID: strings.Repeat("x", 1<<20), Type: testType(1)}}
			_, err := table.InsertMany(t.Context(), db, evs)
			if !errors.Is(err, rsql.ErrInvalidValue) || !strings.Contains(err.Error(), "event 1") || len(err.Error()) > 250 {
				t.Errorf("InsertMany with a 1 MiB foreign id at 1: %.300v, want ErrInvalidValue naming event 1", err)
			}
			if after := countRows(t, db, name); after != before {
				t.Errorf("InsertMany stored %d rows of a refused batch", after-before)
			}
		})
	}
}

// TestInsertValuesCustomColumns: the limits are those of the table's own
// columns.
func TestInsertValuesCustomColumns(t *testing.T) {
	db := sessions(t)["nonstrict"]
	if _, err := db.Exec("CREATE TABLE small (id BIGINT AUTO_INCREMENT PRIMARY KEY, foreign_id BIGINT NOT NULL, timestamp DATETIME(6) NOT NULL, type TINYINT UNSIGNED NOT NULL, metadata VARBINARY(4) NULL)"); err != nil {
		t.Fatal(err)
	}
	table := rsql.NewEventsTable("small", rsql.WithEventMetadataField("metadata"))
	for _, tc := range []struct {
		fid  string
		typ  int
		meta []byte
		bad  string // the column named by the error, "" if valid
	}{
		{"-12", 255, []byte("abcd"), ""},
		{"abc", 1, nil, "foreign_id"}, // MySQL would store 0
		{"1", 256, nil, "type"},
		{"1", -1, nil, "type"},
		{"1", 1, []byte("abcde"), "metadata"},
	} {
		_, err := table.InsertWithMetadata(t.Context(), db, tc.fid, testType(tc.typ), tc.meta)
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("insert (%q, %d, %q): %v", tc.fid, tc.typ, tc.meta, err)
		case tc.bad != "" && (!errors.Is(err, rsql.ErrInvalidValue) || !strings.Contains(err.Error(), "column "+tc.bad)):
			t.Errorf("insert (%q, %d, %q): error %v, want ErrInvalidValue naming %s", tc.fid, tc.typ, tc.meta, err, tc.bad)
		}
	}
	if n := countRows(t, db, "small"); n != 1 {
		t.Errorf("%d rows stored, want 1", n)
	}
	if _, err := rsql.NewEventsTableInt("small").Insert(t.Context(), db, math.MaxInt64, testType(1)); err != nil {
		t.Errorf("EventsTableInt insert of MaxInt64: %v", err)
	}
}

// TestInsertMissingColumn: a table without a configured column is refused
// with ErrSchema naming the column.
func TestInsertMissingColumn(t *testing.T) {
	db := dbtest.Open(t)
	if _, err := db.Exec("CREATE TABLE no_trace (id BIGINT AUTO_INCREMENT PRIMARY KEY, foreign_id VARCHAR(255) NOT NULL, timestamp DATETIME(6) NOT NULL, type INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	for _, opt := range []rsql.EventsOption{rsql.WithEventTraceField("trace"), rsql.WithEventMetadataField("meta")} {
		_, err := rsql.NewEventsTable("no_trace", opt).Insert(t.Context(), db, "1", testType(1))
		if !errors.Is(err, rsql.ErrSchema) || !strings.Contains(err.Error(), "no_trace") {
			t.Errorf("insert into a table without the column: %v, want ErrSchema naming the table", err)
		}
	}
	if _, err := rsql.NewEventsTable("absent").Insert(t.Context(), db, "1", testType(1)); !errors.Is(err, rsql.ErrSchema) {
		t.Errorf("insert into a missing table: %v, want ErrSchema", err)
	}
}

// countingDBC counts the queries (not the execs) run through a DBC.
type countingDBC struct {
	rsql.DBC
	queries atomic.Int64
}

func (c *countingDBC) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.queries.Add(1)
	return c.DBC.QueryContext(ctx, q, args...)
}

func (c *countingDBC) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	c.queries.Add(1)
	return c.DBC.QueryRowContext(ctx, q, args...)
}

// TestInsertReadsColumnsOnce: the catalog is read at the first insert of a
// table object, not at every insert.
func TestInsertReadsColumnsOnce(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	dbc := &countingDBC{DBC: db}
	for i := range 5 {
		if _, err := table.Insert(t.Context(), dbc, strconv.Itoa(i), testType(1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := table.InsertMany(t.Context(), dbc, []rsql.EventToInsert{{ForeignID: "m", Type: testType(1)}}); err != nil {
		t.Fatal(err)
	}
	if n := dbc.queries.Load(); n != 1 {
		t.Errorf("6 inserts ran %d queries, want 1 (the catalog read)", n)
	}
	// A clone reads it again, once.
	clone := table.Clone()
	for range 2 {
		if _, err := clone.Insert(t.Context(), dbc, "c", testType(1)); err != nil {
			t.Fatal(err)
		}
	}
	if n := dbc.queries.Load(); n != 2 {
		t.Errorf("after 2 inserts through a clone: %d queries, want 2", n)
	}
}

// TestCustomInserterGetsEverything: a WithEventsInserter inserter gets a
// nil event type and values the table's columns could not hold, as with
// luno/reflex; only noops are refused before it.
func TestCustomInserterGetsEverything(t *testing.T) {
	var got []reflex.EventType
	inserter := func(_ context.Context, _ rsql.DBC, fid string, typ reflex.EventType, _ []byte) error {
		got = append(got, typ)
		return nil
	}
	table := rsql.NewEventsTable("custom_inserter", rsql.WithEventsInserter(inserter))
	if _, err := table.Insert(t.Context(), nil, "1", nil); err != nil {
		t.Fatalf("Insert with a nil type: %v, want it passed to the inserter", err)
	}
	if _, err := table.Insert(t.Context(), nil, "0", nil); err != nil {
		t.Fatalf("Insert(\"0\", nil): %v, want it passed to the inserter", err)
	}
	if _, err := table.InsertMany(t.Context(), nil, []rsql.EventToInsert{{ForeignID: strings.Repeat("x", 300)}}); err != nil {
		t.Fatalf("InsertMany with a nil type: %v", err)
	}
	if len(got) != 3 || got[0] != nil {
		t.Fatalf("the inserter got %v, want 3 nil types", got)
	}
	if _, err := table.Insert(t.Context(), nil, "0", testType(0)); !errors.Is(err, rsql.ErrInvalidNoop) || len(got) != 3 {
		t.Errorf("Insert(noop) = %v (inserter called %d times), want ErrInvalidNoop before the inserter", err, len(got))
	}
	// The SQL inserter refuses a nil type.
	db := dbtest.Open(t)
	rsqltest.CreateEventsTable(t, db, "sql_inserter")
	if _, err := rsql.NewEventsTable("sql_inserter").Insert(t.Context(), db, "1", nil); err == nil {
		t.Error("SQL Insert with a nil type succeeded")
	}
}
