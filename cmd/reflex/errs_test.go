package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// errorsFixture records errors of consumer welcome for events 3 and 5
// (rows 1 and 2) and of billing for event 7 (row 3).
func errorsFixture(t *testing.T, f fixture) *rsql.ErrorsTable {
	t.Helper()
	f.seedEvents(t, 1, 10)
	f.exec(t, rsql.ErrorsSchema(f.d, "consumer_errors"))
	et := rsql.NewErrorsTable(rsql.WithErrorsDialect(f.d), rsql.WithErrorRecordOnly())
	insert := et.ToErrorInsertFunc(f.db)
	for _, e := range []struct {
		consumer string
		event    int
	}{{"welcome", 3}, {"welcome", 5}, {"billing", 7}} {
		if err := insert(t.Context(), e.consumer, strconv.Itoa(e.event), fmt.Sprintf("send welcome mail of event %d:\nSMTP 451 try again", e.event)); err != nil {
			t.Fatal(err)
		}
	}
	return et
}

// statusOf returns the status name and update time of error row id.
func statusOf(t *testing.T, f fixture, et *rsql.ErrorsTable, id int64) (string, time.Time) {
	t.Helper()
	rows, err := et.ListErrors(t.Context(), f.db, rsql.ErrorsQuery{IDs: []int64{id}})
	if err != nil || len(rows) != 1 {
		t.Fatalf("error %d: %v, %v", id, rows, err)
	}
	return rsql.ErrorStatusName(rows[0].Status), rows[0].UpdatedAt
}

// flakyConsumer fails the first delivery of each event in failFirst and
// counts the successful ones.
type flakyConsumer struct {
	mu        sync.Mutex
	failFirst map[string]bool
	ok        map[string]int
}

func (c *flakyConsumer) Name() string { return "welcome" }

func (c *flakyConsumer) Consume(_ context.Context, e *reflex.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failFirst[e.ID] {
		delete(c.failFirst, e.ID)
		return fmt.Errorf("SMTP 451 again for event %s", e.ID)
	}
	c.ok[e.ID]++
	return nil
}

func TestErrors(t *testing.T) {
	for _, f := range fixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			et := errorsFixture(t, f)
			errs := func(code int, args ...string) result {
				t.Helper()
				return want(t, code, append(append([]string{"errors"}, args...), "--dsn", f.dsn)...)
			}
			golden(t, "errors_list.golden", maskText(errs(exitOK, "list").stdout))
			golden(t, "errors_list_welcome.json.golden",
				maskJSON(t, errs(exitOK, "list", "--consumer", "welcome", "--status", "recorded", "--json").stdout, "created_at", "updated_at"))
			if r := errs(exitOK, "list", "--status", "resolved"); strings.Count(r.stdout, "\n") != 1 {
				t.Errorf("no resolved errors yet:\n%s", r.stdout)
			}
			if r := errs(exitOK, "list", "--limit", "2"); !strings.Contains(r.stdout, "next page: --after 2") {
				t.Errorf("--limit 2:\n%s", r.stdout)
			}
			golden(t, "errors_show.golden", maskText(errs(exitOK, "show", "2").stdout))
			errs(exitNotFound, "show", "99")
			errs(exitUsage, "list", "--status", "bogus")
			errs(exitNotFound, "list", "--errors", "nope")

			// Discard: once.
			if r := errs(exitOK, "discard", "3"); !strings.Contains(r.stdout, "discarded 1 errors") {
				t.Errorf("discard:\n%s", r.stdout)
			}
			_, updated := statusOf(t, f, et, 3)
			if r := errs(exitRefused, "discard", "3"); !strings.Contains(r.stderr, "already resolved or discarded: 3 (discarded)") {
				t.Errorf("discard again: %s", r.stderr)
			}
			if s, u := statusOf(t, f, et, 3); s != "discarded" || !u.Equal(updated) {
				t.Errorf("row 3 after a refused discard: %s, updated %v", s, u)
			}
			errs(exitNotFound, "discard", "1", "--consumer", "billing")

			// Redrive through the service's redriver, which fails event 5
			// once.
			c := &flakyConsumer{failFirst: map[string]bool{"5": true}, ok: map[string]int{}}
			events := rsql.NewEventsTable("events", rsql.WithEventsDialect(f.d))
			ctx, cancel := context.WithCancel(t.Context())
			redriver := make(chan error, 1)
			go func() {
				redriver <- et.RunRedriver(ctx, f.db, events.ToStream(f.db), c, rsql.WithRedriveEvery(20*time.Millisecond))
			}()
			defer func() {
				cancel()
				if err := <-redriver; !errors.Is(err, context.Canceled) {
					t.Errorf("RunRedriver = %v", err)
				}
			}()
			r := errs(exitFailure, "redrive", "1", "2", "--wait", "1m", "--poll", "20ms")
			golden(t, "errors_redrive_failed.golden", maskText(r.stdout))
			if !strings.Contains(r.stderr, "1 redrives failed") {
				t.Errorf("redrive with a failure: %s", r.stderr)
			}
			r = errs(exitOK, "redrive", "2", "--wait", "1m", "--poll", "20ms", "--json")
			if rows := jsonLines(t, r.stdout); len(rows) != 1 || rows[0]["status"] != "resolved" {
				t.Errorf("second redrive of row 2: %s", r.stdout)
			}
			c.mu.Lock()
			if got := fmt.Sprint(c.ok); got != "map[3:1 5:1]" {
				t.Errorf("successful deliveries = %s, want each event once", got)
			}
			c.mu.Unlock()
			// Resolved rows are refused, nothing changed.
			_, updated = statusOf(t, f, et, 1)
			if r := errs(exitRefused, "redrive", "1"); !strings.Contains(r.stderr, "1 (resolved)") {
				t.Errorf("redrive of a resolved row: %s", r.stderr)
			}
			if s, u := statusOf(t, f, et, 1); s != "resolved" || !u.Equal(updated) {
				t.Errorf("row 1 after a refused redrive: %s, updated %v", s, u)
			}
			if r := errs(exitOK, "redrive", "--consumer", "welcome", "--all"); !strings.Contains(r.stdout, "no recorded errors") {
				t.Errorf("redrive --all without recorded errors:\n%s", r.stdout)
			}
		})
	}
}

// TestErrorsRedriveWaitTimeout: without a redriver, --wait reports the
// rows still waiting.
func TestErrorsRedriveWaitTimeout(t *testing.T) {
	f := sqliteFixture(t, "errors")
	et := errorsFixture(t, f)
	r := want(t, exitFailure, "errors", "redrive", "--consumer", "welcome", "--all", "--wait", "50ms", "--poll", "10ms", "--dsn", f.dsn)
	if !strings.Contains(r.stderr, "2 redrives still waiting") || !strings.Contains(r.stdout, "0 resolved, 0 failed, 2 still waiting") {
		t.Errorf("redrive without a redriver:\n%s", r)
	}
	if s, _ := statusOf(t, f, et, 1); s != "redrive-requested" {
		t.Errorf("row 1 = %s, want redrive-requested", s)
	}
}
