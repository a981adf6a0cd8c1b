package main

import (
	"strings"
	"testing"

	"github.com/seed-e488ba2e/reflex/rsql"
)

// moves returns the rows of the audit table, oldest first.
func moves(t *testing.T, f fixture) []rsql.CursorAudit {
	t.Helper()
	ms, err := rsql.NewCursorAuditTable("cursor_audit", rsql.WithCursorAuditDialect(f.d)).List(t.Context(), f.db, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	return ms
}

func TestCursorMove(t *testing.T) {
	for _, f := range fixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			cursors, db := lagFixture(t, f)
			cursors.exec(t, rsql.CursorAuditSchema(cursors.d, "cursor_audit"))
			move := func(code int, args ...string) result {
				t.Helper()
				return want(t, code, append(append([]string{"cursor"}, args...), db...)...)
			}
			unchanged := func(what, consumer, cursor string) {
				t.Helper()
				if got, updated := cursors.cursor(t, consumer); got != cursor || !updated.Equal(base.Add(1*60*60*1e9)) {
					t.Errorf("%s: cursor of %s = %s (updated %v), want %s, untouched", what, consumer, got, updated, cursor)
				}
			}

			// A dry run prints the plan and changes nothing.
			dry := move(exitOK, "reset", "b", "--to", "2")
			golden(t, "cursor_reset_dry_"+f.name+".golden", dry.stdout)
			unchanged("dry run", "b", "4")
			if ms := moves(t, cursors); len(ms) != 0 {
				t.Fatalf("audit rows after a dry run: %+v", ms)
			}
			golden(t, "cursor_reset_dry_"+f.name+".json.golden", move(exitOK, "reset", "b", "--to", "2", "--json").stdout)

			// --execute does what the dry run said, and records it.
			done := move(exitOK, "reset", "b", "--to", "2", "--execute", "--reason", "alice: replay after the fix")
			planned := strings.TrimSuffix(dry.stdout, lastLine(dry.stdout))
			if !strings.HasPrefix(done.stdout, planned) || !strings.HasPrefix(lastLine(done.stdout), "applied: audit row ") {
				t.Errorf("--execute printed:\n%s\nwant the dry run's plan:\n%s", done.stdout, planned)
			}
			if got, _ := cursors.cursor(t, "b"); got != "2" {
				t.Errorf("cursor of b after --execute = %s, want 2", got)
			}
			ms := moves(t, cursors)
			if len(ms) != 1 || ms[0].Consumer != "b" || ms[0].From != "4" || ms[0].To != "2" || ms[0].Reason != "alice: replay after the fix" || ms[0].Forced {
				t.Fatalf("audit rows = %+v, want one move of b from 4 to 2", ms)
			}

			// set moves forward only, dry run or not.
			for _, args := range [][]string{{"set", "b", "--to", "1"}, {"set", "b", "--to", "1", "--execute", "--reason", "x"}} {
				r := move(exitRefused, args...)
				if !strings.Contains(r.stderr, "forward only") || !strings.Contains(r.stderr, "would replay 1 events") {
					t.Errorf("set backwards: %s", r.stderr)
				}
			}
			if got, _ := cursors.cursor(t, "b"); got != "2" || len(moves(t, cursors)) != 1 {
				t.Errorf("a refused set changed the cursor (%s) or the audit table", got)
			}
			if r := move(exitOK, "set", "b", "--to", "head", "--execute", "--reason", "bob"); !strings.Contains(r.stdout, "skips 8 events (IDs 3 to 10)") {
				t.Errorf("set to the head:\n%s", r.stdout)
			}
			if got, _ := cursors.cursor(t, "b"); got != "10" || len(moves(t, cursors)) != 2 {
				t.Errorf("cursor of b after set --to head = %s", got)
			}
			if r := move(exitOK, "set", "b", "--to", "head"); !strings.Contains(r.stdout, "nothing to do") {
				t.Errorf("set to where it is:\n%s", r.stdout)
			}

			// Targets by time; bad targets.
			if r := move(exitOK, "set", "c", "--to", "2026-01-02T03:05:00Z"); !strings.Contains(r.stdout, "0 -> 5") || !strings.Contains(r.stdout, "skips 5 events") {
				t.Errorf("set --to a time:\n%s", r.stdout)
			}
			for _, to := range []string{"2100-01-01T00:00:00Z", "yesterday", "99", "-1", "1h-"} {
				if r := move(exitUsage, "set", "c", "--to", to); !strings.Contains(r.stderr, "--to") {
					t.Errorf("--to %s: %s", to, r.stderr)
				}
			}
			unchanged("bad targets", "c", "0")
			move(exitNotFound, "reset", "nobody", "--to", "1")
			if r := move(exitNotFound, "reset", "c", "--to", "1", "--execute", "--reason", "x", "--audit", "nope"); !strings.Contains(r.stderr, "cursor_audit.sql") {
				t.Errorf("missing audit table: %s", r.stderr)
			}
			unchanged("missing audit table", "c", "0")

			// A running consumer (but in SQLite: s holds the lease of shard 2 of 4).
			if f.d == rsql.SQLite {
				if r := move(exitOK, "reset", "s_2_of_4", "--to", "1"); !strings.Contains(r.stdout, "unknown: no leases table") {
					t.Errorf("without a leases table:\n%s", r.stdout)
				}
				return
			}
			for _, args := range [][]string{{"reset", "s_2_of_4", "--to", "1"}, {"reset", "s_2_of_4", "--to", "1", "--execute", "--reason", "x"}} {
				r := move(exitRefused, args...)
				if !strings.Contains(r.stderr, "is running") || !strings.Contains(r.stdout, "yes: lease s shard 1 of 4 held by host-1") {
					t.Errorf("move of a running consumer:\n%s", r)
				}
			}
			unchanged("running", "s_2_of_4", "7")
			r := move(exitOK, "reset", "s_2_of_4", "--to", "1", "--execute", "--reason", "carol: forced", "--force")
			if !strings.Contains(r.stdout, "(forced)") {
				t.Errorf("forced move:\n%s", r.stdout)
			}
			if ms := moves(t, cursors); len(ms) != 3 || !ms[2].Forced || ms[2].To != "1" {
				t.Errorf("audit rows after a forced move: %+v", ms)
			}
		})
	}
}

// lastLine returns the last line of s, with its newline.
func lastLine(s string) string {
	i := strings.LastIndexByte(strings.TrimSuffix(s, "\n"), '\n')
	return s[i+1:]
}
