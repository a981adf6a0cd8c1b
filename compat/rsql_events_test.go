package compat_test

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// The events side of package rsql as code written against luno/reflex uses
// it. luno/reflex's loader and inserter types are unexported: its users
// pass functions of these signatures.
type (
	refLoader   = func(ctx context.Context, dbc *sql.DB, prevCursor int64, lag time.Duration) ([]*reflex.Event, error)
	refInserter = func(ctx context.Context, dbc rsql.DBC, foreignID string, typ reflex.EventType, metadata []byte) error
)

var (
	_ func(string, ...rsql.EventsOption) *rsql.EventsTable    = rsql.NewEventsTable
	_ func(string, ...rsql.EventsOption) *rsql.EventsTableInt = rsql.NewEventsTableInt

	_ func(string) rsql.EventsOption              = rsql.WithEventIDField
	_ func(string) rsql.EventsOption              = rsql.WithEventTimeField
	_ func(string) rsql.EventsOption              = rsql.WithEventTypeField
	_ func(string) rsql.EventsOption              = rsql.WithEventForeignIDField
	_ func(string) rsql.EventsOption              = rsql.WithEventMetadataField
	_ func(string) rsql.EventsOption              = rsql.WithEventTraceField
	_ func(rsql.EventsNotifier) rsql.EventsOption = rsql.WithEventsNotifier
	_ func() rsql.EventsOption                    = rsql.WithEventsInMemNotifier
	_ func() rsql.EventsOption                    = rsql.WithEventsCacheEnabled //lint:ignore SA1019 luno/reflex users call it
	_ func() rsql.EventsOption                    = rsql.WithoutEventsCache
	_ func() rsql.EventsOption                    = rsql.WithIncludeNoopEvents
	_ func(time.Duration) rsql.EventsOption       = rsql.WithEventsBackoff

	_ func(*rsql.EventsTable, context.Context, rsql.DBC, string, reflex.EventType) (rsql.NotifyFunc, error)         = (*rsql.EventsTable).Insert
	_ func(*rsql.EventsTable, context.Context, rsql.DBC, string, reflex.EventType, []byte) (rsql.NotifyFunc, error) = (*rsql.EventsTable).InsertWithMetadata
	_ func(*rsql.EventsTable, ...rsql.EventsOption) *rsql.EventsTable                                               = (*rsql.EventsTable).Clone
	_ func(*rsql.EventsTable, context.Context, *sql.DB, string, ...reflex.StreamOption) reflex.StreamClient         = (*rsql.EventsTable).Stream
	_ func(*rsql.EventsTable, *sql.DB, ...reflex.StreamOption) reflex.StreamFunc                                    = (*rsql.EventsTable).ToStream

	_ func(*rsql.EventsTableInt, context.Context, rsql.DBC, int64, reflex.EventType) (rsql.NotifyFunc, error)         = (*rsql.EventsTableInt).Insert
	_ func(*rsql.EventsTableInt, context.Context, rsql.DBC, int64, reflex.EventType, []byte) (rsql.NotifyFunc, error) = (*rsql.EventsTableInt).InsertWithMetadata
	_ func(*rsql.EventsTableInt, ...rsql.EventsOption) *rsql.EventsTableInt                                           = (*rsql.EventsTableInt).Clone

	_ rsql.DBC            = (*sql.DB)(nil)
	_ rsql.DBC            = (*sql.Tx)(nil)
	_ rsql.NotifyFunc     = func() {}
	_ rsql.GapListenFunc  = func(rsql.Gap) {}
	_ rsql.EventsNotifier = (*chanNotifier)(nil)
	_ rsql.StreamWatcher  = (*chanNotifier)(nil)
)

// chanNotifier is an EventsNotifier as a luno/reflex user writes one.
type chanNotifier struct{ ch chan struct{} }

func (n *chanNotifier) C() <-chan struct{} { return n.ch }
func (n *chanNotifier) Notify()            {}

type eventType int

func (t eventType) ReflexType() int { return int(t) }

// streamToHead is an option written outside rsql, as luno/reflex users
// write them: it sets the table's StreamOptions.
func streamToHead(t *rsql.EventsTable) { t.StreamToHead = true }

func TestRSQLEvents(t *testing.T) {
	ctx := t.Context()
	var events []*reflex.Event
	for i := 1; i <= 3; i++ {
		events = append(events, &reflex.Event{ID: strconv.Itoa(i), ForeignID: "f", Type: eventType(i), Timestamp: time.Now()})
	}
	var loader refLoader = func(_ context.Context, _ *sql.DB, prev int64, _ time.Duration) ([]*reflex.Event, error) {
		return events[min(int(prev), len(events)):], nil
	}
	var inserted []reflex.EventType
	var inserter refInserter = func(_ context.Context, _ rsql.DBC, _ string, typ reflex.EventType, _ []byte) error {
		inserted = append(inserted, typ)
		return nil
	}
	lag := rsql.EventsOption(func(t *rsql.EventsTable) { t.Lag = 0 })
	table := rsql.NewEventsTable("events",
		rsql.WithEventsLoader(loader), rsql.WithEventsInserter(inserter),
		streamToHead, lag, rsql.WithEventsNotifier(&chanNotifier{}))
	defer table.Close()

	// The StreamOptions fields are readable on the table (and promoted to
	// EventsTableInt).
	var so reflex.StreamOptions = table.StreamOptions
	if !so.StreamToHead || !table.StreamToHead || table.StreamFromHead || table.Lag != 0 {
		t.Errorf("StreamOptions = %+v, want StreamToHead", so)
	}
	it := rsql.NewEventsTableInt("int_events", streamToHead)
	if !it.StreamToHead || it.Lag != 0 || it.StreamFromHead {
		t.Errorf("EventsTableInt StreamOptions = %+v", it.StreamOptions)
	}

	// A custom inserter gets a nil type.
	notify, err := table.Insert(ctx, nil, "1", nil)
	if err != nil || len(inserted) != 1 || inserted[0] != nil {
		t.Fatalf("Insert with a nil type through a custom inserter: %v (inserter got %v)", err, inserted)
	}
	defer notify()
	if _, err := table.InsertWithMetadata(ctx, nil, "0", eventType(0), nil); err == nil || err.Error() != "inserting invalid noop event" {
		t.Errorf("noop insert: %v", err)
	}

	// The table's StreamToHead ends the stream at the head.
	cl := table.Stream(ctx, nil, "")
	for i := 1; i <= 3; i++ {
		e, err := cl.Recv()
		if err != nil || e.ID != strconv.Itoa(i) {
			t.Fatalf("Recv %d = %v, %v", i, e, err)
		}
	}
	if _, err := cl.Recv(); !errors.Is(err, reflex.ErrHeadReached) {
		t.Errorf("Recv at the head = %v, want ErrHeadReached", err)
	}

	// Gap listening, called as luno/reflex's (which return nothing).
	table.ListenGaps(func(rsql.Gap) {})
	rsql.FillGaps(nil, table)
	table.StopGapListener(ctx)
	rsql.StopFillingGaps(ctx, it)
	_ = rsql.Gap{Prev: 1, Next: 3}

	if rsql.ErrConsecEvent.Error() != "non-consecutive event ids" || rsql.ErrInvalidIntID.Error() != "invalid id, only int supported" {
		t.Error("sentinel messages changed")
	}
}

// The schema-check helpers of luno/reflex's rsql live in rsqltest; they take
// testing.TB, so a luno/reflex user's calls (with a *testing.T) compile.
var (
	_ = func(t *testing.T, db *sql.DB, table *rsql.EventsTable, it *rsql.EventsTableInt, ct *rsql.CursorsTable) {
		rsqltest.TestEventsTable(t, db, table)
		rsqltest.TestEventsTableInt(t, db, it)
		rsqltest.TestEventsTableWithID(t, db, table, "id")
		rsqltest.TestCursorsTable(t, db, ct)
	}
	_ = func(ctx context.Context, t *testing.T, db *sql.DB, table *rsql.EventsTable) ([]*reflex.Event, int64, error) {
		evs, err := rsqltest.GetNextEventsForTesting(ctx, t, db, table, 0, 0)
		if err != nil {
			return nil, 0, err
		}
		id, err := rsqltest.GetLatestIDForTesting(ctx, t, db, "events", "id")
		return evs, id, err
	}
	// As in luno/reflex's lag tests: a table's loader reading the table.
	_ = func(t *testing.T, table **rsql.EventsTable) rsql.EventsOption {
		return rsql.WithEventsLoader(func(ctx context.Context, dbc *sql.DB, prev int64, lag time.Duration) ([]*reflex.Event, error) {
			return rsqltest.GetNextEventsForTesting(ctx, t, dbc, *table, prev, lag)
		})
	}
)
