package rsql

import (
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex"
)

type codeErr int

func (e codeErr) Error() string { return fmt.Sprintf("sqlite error %d", int(e)) }
func (e codeErr) Code() int     { return int(e) }

func TestDialectDuplicateKey(t *testing.T) {
	dup := &mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}
	for _, tc := range []struct {
		d    dialect
		err  error
		want bool
	}{
		{mysqlDialect{}, dup, true},
		{mysqlDialect{}, fmt.Errorf("wrapped: %w", dup), true},
		{mysqlDialect{}, &mysql.MySQLError{Number: 1406}, false},
		{mysqlDialect{}, errors.New("1062"), false},
		{sqliteDialect{}, codeErr(1555), true},
		{sqliteDialect{}, fmt.Errorf("wrapped: %w", codeErr(2067)), true},
		{sqliteDialect{}, codeErr(19), false},
		{sqliteDialect{}, dup, false},
	} {
		if got := tc.d.isDuplicateKey(tc.err); got != tc.want {
			t.Errorf("%s.isDuplicateKey(%v) = %v, want %v", tc.d.name(), tc.err, got, tc.want)
		}
	}
}

func TestDialectLiterals(t *testing.T) {
	d := mysqlDialect{}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"", "_utf8mb4 X''"},
		{"a'b", "_utf8mb4 X'612762'"},
		{[]byte(nil), "NULL"},
		{[]byte{}, "X''"},
		{[]byte{0, 0xff}, "X'00ff'"},
	} {
		if got, ok := d.literal(tc.v); !ok || got != tc.want {
			t.Errorf("literal(%#v) = %q, %v; want %q", tc.v, got, ok, tc.want)
		}
	}
	if _, ok := d.literal(1); ok {
		t.Error("literal(int) is supported")
	}
	if _, ok := (sqliteDialect{}).literal("x"); ok {
		t.Error("SQLite uses literals")
	}
}

func TestDialectQuote(t *testing.T) {
	for _, tc := range []struct {
		d        dialect
		in, want string
	}{
		{mysqlDialect{}, "events", "`events`"},
		{mysqlDialect{}, "`events`", "`events`"},
		{mysqlDialect{}, "db.events", "`db`.`events`"},
		{sqliteDialect{}, "events", `"events"`},
		{sqliteDialect{}, "`main`.events", `"main"."events"`},
	} {
		if got := tc.d.quote(tc.in); got != tc.want {
			t.Errorf("%s.quote(%q) = %q, want %q", tc.d.name(), tc.in, got, tc.want)
		}
	}
	if MySQL.String() != "mysql" || SQLite.String() != "sqlite" || (Dialect{}).String() != "mysql" {
		t.Error("dialect names")
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"", "0", "1", "-1", "abc", "9223372036854775807", "9223372036854775808", "+5", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidIntID) {
				t.Fatalf("parseID(%q) error %v does not wrap ErrInvalidIntID", s, err)
			}
			return
		}
		if id < 0 {
			t.Fatalf("parseID(%q) = %d, negative", s, id)
		}
	})
}

// numberedDialect is MySQL with numbered placeholders and no literals, as
// PostgreSQL's: statements must number their parameters in order.
type numberedDialect struct{ mysqlDialect }

func (numberedDialect) placeholder(n int) string       { return fmt.Sprintf("$%d", n) }
func (numberedDialect) literal(any) (string, bool)     { return "", false }
func (numberedDialect) olderThan(s *sqlStmt, c string) { s.sql(c, " < now() - "); s.arg() }

func TestEventsStatements(t *testing.T) {
	cfg := defaultEventsConfig()
	cfg.metadataField = "meta"
	q := newEventsSQL(mysqlDialect{}, "db.events", &cfg)
	for _, tc := range []struct{ got, want string }{
		{q.head, "SELECT MAX(`id`) FROM `db`.`events`"},
		{q.load, "SELECT `id`, `foreign_id`, `timestamp`, `type`, `meta`, NULL FROM `db`.`events` WHERE `id` > ? ORDER BY `id` LIMIT ?"},
		{q.loadLag, "SELECT `id`, `foreign_id`, `timestamp`, `type`, `meta`, NULL FROM `db`.`events` WHERE `id` > ? AND `timestamp` < now(6) - INTERVAL ? MICROSECOND ORDER BY `id` LIMIT ?"},
		{q.below(7).String(), "SELECT `id` FROM `db`.`events` WHERE `id` < 7 LIMIT 1"},
		{q.idsIn(3, 9).String(), "SELECT `id` FROM `db`.`events` WHERE `id` >= 3 AND `id` < 9 ORDER BY `id`"},
		{q.insertNoops([]int64{4, 5}).String(), "INSERT INTO `db`.`events` (`id`, `foreign_id`, `timestamp`, `type`) VALUES (4, _utf8mb4 X'30', now(6), 0), (5, _utf8mb4 X'30', now(6), 0)"},
		{insertText(&q, []EventToInsert{{ForeignID: "a", Type: eventtype.Type(2)}, {ForeignID: "b", Type: eventtype.Type(3), MetaData: []byte{1}}}, nil).String(),
			"INSERT INTO `db`.`events` (`foreign_id`, `timestamp`, `type`, `meta`) VALUES (_utf8mb4 X'61', now(6), 2, NULL), (_utf8mb4 X'62', now(6), 3, X'01')"},
	} {
		if tc.got != tc.want {
			t.Errorf("statement\n%s\nwant\n%s", tc.got, tc.want)
		}
	}

	cfg.traceField = "trace"
	n := newEventsSQL(numberedDialect{}, "events", &cfg)
	if want := "SELECT `id`, `foreign_id`, `timestamp`, `type`, `meta`, `trace` FROM `events` WHERE `id` > $1 AND `timestamp` < now() - $2 ORDER BY `id` LIMIT $3"; n.loadLag != want {
		t.Errorf("numbered load statement\n%s\nwant\n%s", n.loadLag, want)
	}
	st := insertText(&n, []EventToInsert{{ForeignID: "a", Type: eventtype.Type(1), MetaData: []byte("m")}, {ForeignID: "b", Type: eventtype.Type(2)}}, []byte("t"))
	if len(st.args) != 6 || st.args[3] != "b" ||
		st.String() != "INSERT INTO `events` (`foreign_id`, `timestamp`, `type`, `meta`, `trace`) VALUES ($1, now(6), 1, $2, $3), ($4, now(6), 2, $5, $6)" {
		t.Errorf("numbered insert: %s %q", st.String(), st.args)
	}
}

// insertText returns the statement of q.insertRows, which must hold all
// events.
func insertText(q *eventsSQL, events []EventToInsert, trace []byte) *sqlStmt {
	s := &sqlStmt{d: q.d}
	if n := q.insertRows(s, events, trace); n != len(events) {
		panic(fmt.Sprintf("insertRows took %d of %d events", n, len(events)))
	}
	return s
}

func FuzzParseStreamCursor(f *testing.F) {
	for _, s := range []string{"", "0", "1", "-1", "abc", "9223372036854775808", "\x00", "1\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseStreamCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidIntID) || !errors.Is(err, reflex.ErrInvalidCursor) {
				t.Fatalf("parseStreamCursor(%q) error %v does not wrap both sentinels", s, err)
			}
			if len(err.Error()) > 400 { // 64 bytes quoted, at most 4 bytes each
				t.Fatalf("parseStreamCursor: error of %d bytes", len(err.Error()))
			}
			return
		}
		if id < 0 || s == "" && id != 0 {
			t.Fatalf("parseStreamCursor(%q) = %d", s, id)
		}
	})
}

// TestDialectZeroIsMySQL: the zero Dialect is MySQL, and compares equal
// to it, as the Dialect doc says.
func TestDialectZeroIsMySQL(t *testing.T) {
	var d Dialect
	if d != MySQL || d.String() != "mysql" || MySQL.String() != "mysql" {
		t.Errorf("zero Dialect = %v (%q), MySQL = %q: want equal, both mysql", d, d.String(), MySQL.String())
	}
	if SQLite == MySQL {
		t.Error("SQLite == MySQL")
	}
}
