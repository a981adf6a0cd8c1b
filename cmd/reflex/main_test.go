package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// The tests build the command once and run the binary, as an operator
// would, against real MariaDB and SQLite databases and a gRPC server on
// loopback. -update rewrites the golden files of testdata.

var update = flag.Bool("update", false, "rewrite the golden files")

// binary is the command built by TestMain.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "reflex-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "reflex")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cliGuard bounds one run of the command: a hang guard, not a speed check.
const cliGuard = 2 * time.Minute

// result is what a run of the command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// reflexCmd returns the command running the binary with args, with an
// empty environment but for PATH and HOME (no $REFLEX_* from the
// caller).
func reflexCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	return cmd
}

// cli runs the command with args and returns its output and exit code.
func cli(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliGuard)
	defer cancel()
	cmd := reflexCmd(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run reflex %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// want runs the command and fails t unless it exits with code.
func want(t *testing.T, code int, args ...string) result {
	t.Helper()
	r := cli(t, args...)
	if r.code != code {
		t.Fatalf("reflex %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, code, r)
	}
	return r
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(b) != got {
		t.Errorf("output differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, b)
	}
}

var (
	// ages are the durations fmtAge writes.
	ages = regexp.MustCompile(`\b\d+(\.\d+)?(ms|s|m|h|d)(\d+(\.\d+)?(ms|s|m|h))*\b`)
	// nowish are times written by the database's clock during a test
	// (the fixtures' own times are on 2026-01-02).
	nowish = regexp.MustCompile(`\b(20\d\d-\d\d-\d\dT[0-9:.]+Z)`)
	spaces = regexp.MustCompile(` {2,}`)
)

// maskText replaces the durations and the times not of the fixtures in a
// text output, and the padding of its columns (which depends on them).
func maskText(s string) string {
	s = ages.ReplaceAllString(s, "<age>")
	s = nowish.ReplaceAllStringFunc(s, func(t string) string {
		if strings.HasPrefix(t, fixtureDay) {
			return t
		}
		return "<time>"
	})
	return spaces.ReplaceAllString(s, "  ")
}

// maskJSON re-encodes each JSON line with sorted keys and the values of
// keys (when not null) replaced by "<masked>".
func maskJSON(t *testing.T, s string, keys ...string) string {
	t.Helper()
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("output line is not a JSON object: %v\n%s", err, line)
		}
		maskKeys(m, keys)
		enc := json.NewEncoder(&out)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
	}
	return out.String()
}

func maskKeys(m map[string]any, keys []string) {
	for k, v := range m {
		switch v := v.(type) {
		case map[string]any:
			maskKeys(v, keys)
		case []any:
			for _, e := range v {
				if em, ok := e.(map[string]any); ok {
					maskKeys(em, keys)
				}
			}
		}
		for _, mk := range keys {
			if k == mk && v != nil {
				m[k] = "<masked>"
			}
		}
	}
}

// jsonLines decodes each line of s.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON object: %v\n%s", err, line)
		}
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool { return fmt.Sprint(out[i]["consumer"]) < fmt.Sprint(out[j]["consumer"]) })
	return out
}

// fixture is a database of one engine with the command's DSN for it.
type fixture struct {
	name string
	dsn  string // for --dsn
	db   *sql.DB
	d    rsql.Dialect
}

// mysqlFixture is a fresh MariaDB database.
func mysqlFixture(t *testing.T) fixture {
	db, dsn := dbtest.OpenDSN(t)
	return fixture{name: "mysql", dsn: "mysql://" + dsn, db: db, d: rsql.MySQL}
}

// sqliteFixture is a fresh SQLite file named name.
func sqliteFixture(t *testing.T, name string) fixture {
	path := filepath.Join(t.TempDir(), name+".db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	return fixture{name: "sqlite", dsn: "sqlite:" + path, db: db, d: rsql.SQLite}
}

// pgFixture is a fresh PostgreSQL database.
func pgFixture(t *testing.T) fixture {
	db, dsn := dbtest.OpenPGDSN(t)
	return fixture{name: "postgres", dsn: dsn, db: db, d: rsql.PostgreSQL}
}

// fixtures returns a MariaDB, a PostgreSQL and a SQLite fixture.
func fixtures(t *testing.T) []fixture {
	return []fixture{mysqlFixture(t), pgFixture(t), sqliteFixture(t, "reflex")}
}

// exec runs a statement written with ? markers; on PostgreSQL the markers
// become $1, $2, ... and an insert of explicit event IDs overrides the
// identity column.
func (f fixture) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	query := q
	if f.d == rsql.PostgreSQL {
		var b strings.Builder
		n := 0
		for _, r := range q {
			if r == '?' {
				n++
				fmt.Fprintf(&b, "$%d", n)
				continue
			}
			b.WriteRune(r)
		}
		query = strings.Replace(b.String(), "metadata) VALUES", "metadata) OVERRIDING SYSTEM VALUE VALUES", 1)
	}
	if _, err := f.db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// dbTime is ts as the driver takes it for a DATETIME column (SQLite gets
// the text rsql's now() writes).
func (f fixture) dbTime(ts time.Time) any {
	if f.d == rsql.SQLite {
		return ts.UTC().Format("2006-01-02 15:04:05.000")
	}
	return ts.UTC()
}

// The fixtures' events: IDs 1 to 10, one minute apart from base, type 1
// for odd IDs and 2 for even ones, foreign ID user-<(id+1)/2>, metadata
// "m<id>" for multiples of 3.
var base = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

const fixtureDay = "2026-01-02T"

func eventTime(id int) time.Time { return base.Add(time.Duration(id-1) * time.Minute) }

// seedEvents creates the events table "events" with events first to
// last.
func (f fixture) seedEvents(t *testing.T, first, last int) {
	t.Helper()
	f.exec(t, rsql.EventsSchema(f.d, "events"))
	f.addEvents(t, first, last)
}

// addEvents inserts events first to last with explicit IDs.
func (f fixture) addEvents(t *testing.T, first, last int) {
	t.Helper()
	for id := first; id <= last; id++ {
		var meta any
		if id%3 == 0 {
			meta = []byte(fmt.Sprintf("m%d", id))
		}
		typ := 2 - id%2
		f.exec(t, "INSERT INTO events (id, foreign_id, timestamp, type, metadata) VALUES (?, ?, ?, ?, ?)",
			id, fmt.Sprintf("user-%d", (id+1)/2), f.dbTime(eventTime(id)), typ, meta)
	}
	if f.d == rsql.PostgreSQL { // the identity continues after the explicit IDs
		f.exec(t, "SELECT setval(pg_get_serial_sequence('events', 'id'), (SELECT max(id) FROM events))")
	}
}

// seedCursors creates the cursors table "cursors" with the given cursors,
// each last written at base + 1h.
func (f fixture) seedCursors(t *testing.T, cursors map[string]int) {
	t.Helper()
	f.exec(t, rsql.CursorsSchema(f.d, "cursors"))
	for name, c := range cursors {
		f.exec(t, "INSERT INTO cursors (id, last_event_id, updated_at) VALUES (?, ?, ?)", name, c, f.dbTime(base.Add(time.Hour)))
	}
}

// holdLease creates the leases table if needed and a lease held by owner
// until 2100.
func (f fixture) holdLease(t *testing.T, name string, shard, shards int, owner string) {
	t.Helper()
	f.exec(t, rsql.LeasesSchema(f.d, "leases"))
	f.exec(t, "INSERT INTO leases (name, shard, shards, owner, epoch, expires_at) VALUES (?, ?, ?, ?, 1, ?)",
		name, shard, shards, owner, f.dbTime(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)))
}

// cursor returns the stored cursor and update time of consumer name.
func (f fixture) cursor(t *testing.T, name string) (string, time.Time) {
	t.Helper()
	rows, err := rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(f.d)).ListCursors(t.Context(), f.db, name)
	if err != nil || len(rows) != 1 {
		t.Fatalf("cursor of %s: %v, %v", name, rows, err)
	}
	return rows[0].Cursor, rows[0].UpdatedAt
}

func TestHelp(t *testing.T) {
	r := want(t, exitOK, "help")
	golden(t, "help.golden", r.stdout)
	for _, c := range commands {
		args := append(strings.Fields(c.name), "--help")
		r := want(t, exitOK, args...)
		if !strings.HasPrefix(r.stdout, "Usage: reflex "+c.name) || !strings.Contains(r.stdout, "Flags:") {
			t.Errorf("reflex %s --help:\n%s", c.name, r.stdout)
		}
	}
	for _, g := range []string{"cursor", "errors"} {
		if r := want(t, exitOK, g, "--help"); !strings.Contains(r.stdout, "Subcommands:") {
			t.Errorf("reflex %s --help:\n%s", g, r.stdout)
		}
	}
}

func TestBadCommandLine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.db")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, exitUsage, "no command"},
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
		{[]string{"cursor"}, exitUsage, "needs a subcommand"},
		{[]string{"cursor", "move"}, exitUsage, "unknown command"},
		{[]string{"tail", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"tail"}, exitUsage, "no source"},
		{[]string{"consumers"}, exitUsage, "no database"},
		{[]string{"consumers", "--dsn", "bogus://user:secret@host/db"}, exitUsage, "bad DSN"},
		{[]string{"consumers", "--dsn", "sqlite:" + missing}, exitUsage, "no SQLite database file"},
		{[]string{"consumers", "--dsn", "mysql://user:secret@tcp(127.0.0.1:1)/db"}, exitFailure, "cannot connect to mysql at 127.0.0.1:1/db"},
		{[]string{"consumers", "--dsn", "mysql://user:secret@tcp(127.0.0.1"}, exitUsage, "bad MySQL DSN"},
		{[]string{"consumers", "--dsn", "sqlite:x.db", "--cursors", "x; DROP TABLE y"}, exitUsage, "--cursors"},
		{[]string{"tail", "--dsn", "sqlite:x.db", "--grpc", "localhost:1"}, exitUsage, "not both"},
		{[]string{"tail", "--grpc", "localhost:1", "--since", "1h"}, exitUsage, "--since needs the events table"},
		{[]string{"tail", "--grpc", "localhost:1", "--insecure", "--token", "t"}, exitUsage, "needs TLS"},
		{[]string{"tail", "--from", "1", "--head", "--grpc", "localhost:1"}, exitUsage, "one of --from"},
		{[]string{"cursor", "set", "c", "--dsn", "sqlite:x.db"}, exitUsage, "needs --to"},
		{[]string{"cursor", "set", "c", "--to", "1", "--execute", "--dsn", "sqlite:x.db"}, exitUsage, "needs --reason"},
		{[]string{"errors", "redrive", "--dsn", "sqlite:x.db"}, exitUsage, "takes error IDs"},
		{[]string{"errors", "show", "x", "--dsn", "sqlite:x.db"}, exitUsage, "bad error id"},
	} {
		r := cli(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("reflex %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.msg)
		}
		if strings.Contains(r.stderr, "secret") {
			t.Errorf("reflex %s printed the DSN's password: %q", strings.Join(tc.args, " "), r.stderr)
		}
	}
}
