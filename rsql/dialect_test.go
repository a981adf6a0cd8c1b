package rsql

import (
	"errors"
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"
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
