package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/rsql"
)

// lagFixture is a cursors table with consumers at known positions of the
// events 1 to 10: a at the head, b at 4, c at 0, and the shard s_2_of_4
// at 7 (whose sharded consumer s holds its lease but in SQLite). args are the
// database flags; in SQLite the events are in another file
// (--events-dsn).
func lagFixture(t *testing.T, f fixture) (cursors fixture, args []string) {
	t.Helper()
	cursors = f
	args = []string{"--dsn", f.dsn}
	if f.d == rsql.SQLite {
		cursors = sqliteFixture(t, "cursors")
		args = []string{"--dsn", cursors.dsn, "--events-dsn", f.dsn}
	}
	f.seedEvents(t, 1, 10)
	cursors.seedCursors(t, map[string]int{"a": 10, "b": 4, "c": 0, "s_2_of_4": 7})
	if f.d != rsql.SQLite {
		cursors.holdLease(t, "s", 1, 4, "host-1")
	}
	return cursors, args
}

func TestConsumers(t *testing.T) {
	for _, f := range fixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			_, db := lagFixture(t, f)
			run := func(code int, args ...string) result {
				t.Helper()
				return want(t, code, append(append([]string{"consumers"}, db...), args...)...)
			}
			golden(t, "consumers_"+f.name+".golden", maskText(run(exitOK).stdout))

			before := time.Now()
			r := run(exitOK, "--json")
			after := time.Now()
			golden(t, "consumers_"+f.name+".json.golden", maskJSON(t, r.stdout, "lag_seconds", "at"))
			rows := jsonLines(t, r.stdout)
			// The lag in seconds is the database's time minus the time of
			// the first event after the cursor.
			for i, tc := range []struct {
				consumer  string
				lagEvents float64
				next      int // 0: none, lag 0
			}{{"a", 0, 0}, {"b", 6, 5}, {"c", 10, 1}, {"s_2_of_4", 3, 8}} {
				row := rows[i]
				if row["consumer"] != tc.consumer || row["lag_events"] != tc.lagEvents || row["head"] != 10.0 {
					t.Errorf("row %d = %v, want consumer %s, head 10, lag %v events", i, row, tc.consumer, tc.lagEvents)
				}
				secs, _ := row["lag_seconds"].(float64)
				if tc.next == 0 {
					if secs != 0 || row["next_event"] != nil {
						t.Errorf("%s at the head: lag %vs, next %v; want 0 and none", tc.consumer, secs, row["next_event"])
					}
					continue
				}
				lo, hi := before.Sub(eventTime(tc.next)).Seconds(), after.Sub(eventTime(tc.next)).Seconds()
				if row["next_event"] != float64(tc.next) || secs < lo-2 || secs > hi+2 {
					t.Errorf("%s: lag %vs, next %v; want the age of event %d, in [%.0f, %.0f]", tc.consumer, secs, row["next_event"], tc.next, lo, hi)
				}
			}
			// A stuck consumer's lag keeps growing.
			r2 := jsonLines(t, run(exitOK, "--json", "--consumer", "b").stdout)
			if r2[0]["lag_seconds"].(float64) < rows[1]["lag_seconds"].(float64) {
				t.Errorf("the lag of b went down: %v then %v", rows[1]["lag_seconds"], r2[0]["lag_seconds"])
			}
			if r := run(exitNotFound, "--consumer", "b", "--consumer", "nobody"); !strings.Contains(r.stderr, `unknown consumer "nobody"`) {
				t.Errorf("unknown consumer: %s", r.stderr)
			}
			if r := run(exitNotFound, "--cursors", "nope"); !strings.Contains(r.stderr, "--cursors nope") {
				t.Errorf("unknown cursors table: %s", r.stderr)
			}
			run(exitNotFound, "--events", "nope")
			run(exitNotFound, "--leases", "nope") // given explicitly: must exist
			run(exitUsage, "extra")
		})
	}
}

func TestConsumersWatch(t *testing.T) {
	f := sqliteFixture(t, "events")
	_, db := lagFixture(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), cliGuard)
	defer cancel()
	cmd := reflexCmd(ctx, append(append([]string{"consumers"}, db...), "--watch", "--interval", "10ms", "--json")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	ats := map[string]int{}
	for lines := 0; lines < 12; lines++ { // three reports of four consumers
		if !sc.Scan() {
			t.Fatalf("--watch ended after %d lines: %v", lines, sc.Err())
		}
		at := jsonLines(t, sc.Text())[0]["at"].(string)
		ats[at]++
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("--watch after an interrupt: %v, want exit 0", err)
	}
	if len(ats) < 2 {
		t.Errorf("--watch printed reports at %v, want several", ats)
	}
	for at, n := range ats {
		if n > 4 {
			t.Errorf("%d rows at %s, want 4 per report", n, at)
		}
	}
}

func TestCursorGet(t *testing.T) {
	f := mysqlFixture(t)
	_, db := lagFixture(t, f)
	get := func(code int, args ...string) result {
		t.Helper()
		return want(t, code, append(append([]string{"cursor", "get"}, args...), db...)...)
	}
	golden(t, "cursor_get.golden", maskText(get(exitOK, "b").stdout))
	golden(t, "cursor_get_running.json.golden", maskJSON(t, get(exitOK, "s_2_of_4", "--json").stdout, "lag_seconds", "at"))
	get(exitNotFound, "nobody")
	get(exitUsage)
	get(exitNotFound, "b", "--audit", "nope") // given explicitly: must exist
}

func TestLagRounding(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {1500 * time.Microsecond, "2ms"}, {12345 * time.Millisecond, "12.3s"},
		{187 * time.Second, "3m7s"}, {2*time.Hour + 5*time.Minute + 7*time.Second, "2h5m"},
		{75 * time.Hour, "3d3h"}, {time.Duration(math.MaxInt64), fmt.Sprintf("%dd%dh", math.MaxInt64/int64(24*time.Hour), 23)},
	} {
		if got := fmtAge(tc.d); got != tc.want {
			t.Errorf("fmtAge(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
