package rsql

import (
	"database/sql"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"

	_ "modernc.org/sqlite"
)

func TestColumnsMySQL(t *testing.T) {
	db := dbtest.Open(t)
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE lim ("+
		"v10 VARCHAR(10) NOT NULL, t TEXT, b BLOB, vb VARBINARY(4), "+
		"i INT, bi BIGINT, ti TINYINT UNSIGNED, bu BIGINT UNSIGNED, "+
		"m3 VARCHAR(5) CHARACTER SET utf8mb3, bin VARCHAR(8) COLLATE utf8mb4_bin)"); err != nil {
		t.Fatal(err)
	}
	c := newColumns(mysqlDialect{}, "`lim`")
	cols, err := c.lookup(t.Context(), db, "v10", "t", "b", "vb", "i", "bi", "ti", "bu", "m3", "`BIN`")
	if err != nil {
		t.Fatal(err)
	}
	v10, text, blob, vb, i, bi, ti, bu, m3, bin := cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9]

	for _, tc := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"varchar 10 chars", v10.checkString("v10", "0123456789"), true},
		{"varchar 10 multibyte chars", v10.checkString("v10", strings.Repeat("é", 10)), true},
		{"varchar 11 chars", v10.checkString("v10", "0123456789a"), false},
		{"varchar invalid utf8", v10.checkString("v10", "a\xffb"), false},
		{"text 65535 bytes", text.checkString("t", strings.Repeat("a", 65535)), true},
		{"text 65536 bytes", text.checkString("t", strings.Repeat("a", 65536)), false},
		{"blob 65535 bytes", blob.checkString("b", strings.Repeat("\xff", 65535)), true},
		{"blob 65536 bytes", blob.checkString("b", strings.Repeat("\xff", 65536)), false},
		{"varbinary 4", vb.checkString("vb", "\xff\xfe\xfd\xfc"), true},
		{"varbinary 5", vb.checkString("vb", "12345"), false},
		{"int max", i.checkInt("i", math.MaxInt32), true},
		{"int over", i.checkInt("i", 1<<40), false},
		{"int min", i.checkInt("i", math.MinInt32), true},
		{"int under", i.checkInt("i", math.MinInt32-1), false},
		{"bigint", bi.checkInt("bi", math.MinInt64), true},
		{"tinyint unsigned 255", ti.checkInt("ti", 255), true},
		{"tinyint unsigned -1", ti.checkInt("ti", -1), false},
		{"bigint unsigned max", bu.checkInt("bu", math.MaxInt64), true},
		{"utf8mb3 BMP", m3.checkString("m3", "ééé"), true},
		{"utf8mb3 emoji", m3.checkString("m3", "a\U0001F600"), false},
	} {
		if got := tc.err == nil; got != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, tc.err, tc.ok)
		}
		if tc.err != nil && !errors.Is(tc.err, ErrInvalidValue) {
			t.Errorf("%s: err = %v, want ErrInvalidValue", tc.name, tc.err)
		}
	}
	if v10.collation != "utf8mb4_general_ci" || bin.collation != "utf8mb4_bin" {
		t.Errorf("collations = %q, %q", v10.collation, bin.collation)
	}
	if blob.collation != "" || blob.text {
		t.Errorf("blob column reported as text: %+v", blob)
	}

	if _, err := c.lookup(t.Context(), db, "v10", "nope"); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing column: err = %v, want ErrSchema naming it", err)
	}
	if _, err := newColumns(mysqlDialect{}, "absent").get(t.Context(), db); !errors.Is(err, ErrSchema) {
		t.Errorf("missing table: err = %v, want ErrSchema", err)
	}
	var schema string
	if err := db.QueryRowContext(t.Context(), "SELECT DATABASE()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if _, err := newColumns(mysqlDialect{}, schema+".lim").lookup(t.Context(), db, "v10"); err != nil {
		t.Errorf("schema.table: %v", err)
	}
}

func TestColumnsSQLite(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "lim.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE lim (v10 VARCHAR(10) NOT NULL, i INT)"); err != nil {
		t.Fatal(err)
	}
	cols, err := newColumns(sqliteDialect{}, "lim").lookup(t.Context(), db, "V10", "i")
	if err != nil {
		t.Fatal(err)
	}
	// SQLite keeps any value whole: nothing to check.
	if err := cols[0].checkString("v10", strings.Repeat("x", 1000)); err != nil {
		t.Errorf("SQLite checkString: %v", err)
	}
	if err := cols[1].checkInt("i", math.MaxInt64); err != nil {
		t.Errorf("SQLite checkInt: %v", err)
	}
	if _, err := newColumns(sqliteDialect{}, "lim").lookup(t.Context(), db, "nope"); !errors.Is(err, ErrSchema) {
		t.Errorf("missing column: err = %v, want ErrSchema", err)
	}
	if _, err := newColumns(sqliteDialect{}, "absent").get(t.Context(), db); !errors.Is(err, ErrSchema) {
		t.Errorf("missing table: err = %v, want ErrSchema", err)
	}
}
