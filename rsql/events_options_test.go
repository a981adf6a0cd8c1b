package rsql_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// TestBadCursorsBounded: a cursor that is not an event ID fails the
// stream with an error wrapping both ErrInvalidIntID and
// reflex.ErrInvalidCursor, quoting at most 64 bytes of it.
func TestBadCursorsBounded(t *testing.T) {
	db := dbtest.Open(t)
	table := newTable(t, db)
	for _, c := range []string{"abc", "-1", "9223372036854775808", "99999999999999999999999", "\x00", "1\x00", " 1", strings.Repeat("7", 1<<20), strings.Repeat("x", 1<<20)} {
		name := c
		if len(name) > 30 {
			name = name[:10] + "... (1 MiB)"
		}
		check := func(how string, err error) {
			t.Helper()
			if !errors.Is(err, rsql.ErrInvalidIntID) || !errors.Is(err, reflex.ErrInvalidCursor) {
				t.Errorf("%s(%q): %.200v, want ErrInvalidIntID and reflex.ErrInvalidCursor", how, name, err)
			}
			if err != nil && len(err.Error()) > 200 {
				t.Errorf("%s(%q): error of %d bytes", how, name, len(err.Error()))
			}
		}
		_, err := table.ToStream(db)(t.Context(), c)
		check("ToStream", err)
		cl := table.Stream(t.Context(), db, c)
		_, err = cl.Recv()
		check("Stream", err)
		closeClient(cl)
	}
}

// TestStreamOptionsFields: an option written as luno/reflex users write
// them sets the table's StreamOptions, the defaults of its streams, which
// a stream's own options override; Clone keeps them.
func TestStreamOptionsFields(t *testing.T) {
	db := dbtest.Open(t)
	toHead := func(t *rsql.EventsTable) { t.StreamToHead = true }
	lag := rsql.EventsOption(func(t *rsql.EventsTable) { t.Lag = time.Hour })
	table := newTable(t, db, toHead)
	if !table.StreamToHead || table.Lag != 0 || table.StreamFromHead {
		t.Fatalf("StreamOptions = %+v, want StreamToHead only", table.StreamOptions)
	}
	insertN(t, db, table, 1, 3)
	// No WithStreamToHead: the table's default stops the stream.
	cl := openStream(t, table, db, "")
	for range 3 {
		if _, err := cl.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Recv(); !errors.Is(err, reflex.ErrHeadReached) {
		t.Fatalf("Recv at the head = %v, want ErrHeadReached from the table's StreamToHead", err)
	}
	// The lag of a clone hides the recent events; a stream's option wins.
	lagged := table.Clone(lag)
	if !lagged.StreamToHead || lagged.Lag != time.Hour {
		t.Fatalf("clone's StreamOptions = %+v", lagged.StreamOptions)
	}
	if got := drain(t, lagged.ToStream(db), ""); len(got) != 0 {
		t.Errorf("a table lag of an hour streamed %v", ids(got))
	}
	if got := drain(t, lagged.ToStream(db, reflex.WithStreamLag(time.Nanosecond)), ""); len(got) != 3 {
		t.Errorf("with a stream lag of 1ns: %d events, want 3", len(got))
	}
	intTable := rsql.NewEventsTableInt(table.Name(), func(t *rsql.EventsTable) { t.StreamFromHead = true })
	if !intTable.StreamFromHead {
		t.Error("EventsTableInt does not expose StreamFromHead")
	}
}
