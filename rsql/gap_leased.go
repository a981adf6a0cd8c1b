package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/wait"
	"github.com/seed-e488ba2e/reflex/rpatterns"
)

const (
	// gapFillerLeasePrefix starts the lease name of FillGapsLeased, which
	// ends with the table's name without backticks.
	gapFillerLeasePrefix = "rsql_gap_filler_"

	// maxGapFillerLease is the longest lease name the rpatterns runners
	// and the leases table (name varbinary(255)) accept.
	maxGapFillerLease = 255

	// gapScanWindow is how many IDs below the head FillGapsLeased looks
	// for open gaps when it takes the lease.
	gapScanWindow = 100_000

	// gapScanRetry is how long the scan of FillGapsLeased waits after a
	// database error before it tries again.
	gapScanRetry = time.Second
)

// GapFillerLeaseName returns the name of the lease that FillGapsLeased
// holds for the table called table: "rsql_gap_filler_" followed by the
// name without backticks, such as "rsql_gap_filler_events" or
// "rsql_gap_filler_app.events". A valid table name (1-64 characters, or
// schema.name) gives at most 145 bytes, within the 255 bytes of a
// leases table's name column.
func GapFillerLeaseName(table string) string {
	return gapFillerLeasePrefix + unquote(table)
}

// FillGapsLeased fills the gaps of the table gl (as FillGaps does, with
// db) in one process at a time: every replica of a service calls it with
// the same leases, and of all of them only the one that holds the lease
// named GapFillerLeaseName(table name) fills gaps; another takes over
// when it stops or dies (see rpatterns.HoldLease, whose options opts are:
// TTL, renew interval, owner). It blocks until ctx is done and returns
// ctx.Err() once filling has stopped and the lease is released.
//
// A process with no stream of its own detects no gaps, so while it holds
// the lease FillGapsLeased scans for them itself. When it takes the
// lease it reads the head (the largest ID) and finds the first open gap
// among the last 100,000 IDs below it (one ID-only query, as
// EventsTable.OpenGaps); then it streams the table, reading and
// discarding the events, from the ID before that gap, or from the head if
// there is none. The stream stops at each gap, like every stream, and
// offers it to the table's gap filler, which this process switches on
// while it holds the lease; streams of the table in the process offer
// theirs too. So the gaps left while there was no holder (the previous
// one died, or had not yet filled them) are found if they are within
// 100,000 IDs of the head when the lease is taken, or if a stream of the
// new holder's table waits at them; a gap further below is listed by
// OpenGaps and can be filled by a FillGaps. The scan is one stream
// tailing the table, which shares the table's read-through cache with
// the process's other streams; it retries every second after a database
// error.
//
// Processes that do not hold the lease do not fill: their streams wait at
// a gap until the holder fills it. When the lease is lost (it could
// expire because renewals failed, or another process took it) or ctx
// ends, the filler is switched off and the scan stopped before the lease
// can expire, and both are waited for; a fill in progress is aborted. A
// FillGaps on the same table in the same process keeps filling every gap
// its streams detect, lease or not (the leased filler then leaves the
// gaps to it).
//
// Errors: bad input (a nil db, table or leases, a table not made by
// NewEventsTable or NewEventsTableInt, a lease name longer than 255
// bytes, invalid options) is an error wrapping rpatterns.ErrInvalidLease,
// returned at once, as are the lease store's errors wrapping it (such as
// a leases table whose name column is too short); ErrGapListenerStopped
// if the table's gap listeners are stopped (StopGapListener,
// StopFillingGaps, Close), before or while it runs. Other lease store
// errors are retried (see rpatterns.HoldLease). It is safe for concurrent
// use; each call is one member of the lease.
func FillGapsLeased(ctx context.Context, db *sql.DB, gl GapListenable, leases rpatterns.LeaseStore, opts ...rpatterns.LeaseOption) error {
	t := gapTable(gl)
	if err := checkFillGapsLeased(db, t, leases); err != nil {
		return fmt.Errorf("%w: %w", rpatterns.ErrInvalidLease, err)
	}
	if t.gaps.isStopped() {
		return ErrGapListenerStopped
	}
	return rpatterns.HoldLease(ctx, leases, GapFillerLeaseName(t.name), func(ctx context.Context, _ rpatterns.Lease) error {
		return t.fillLeased(ctx, db)
	}, opts...)
}

// gapTable returns the table of gl, nil for a nil table.
func gapTable(gl GapListenable) *EventsTable {
	switch v := gl.(type) {
	case nil:
		return nil
	case *EventsTable:
		return v
	case *EventsTableInt:
		if v == nil {
			return nil
		}
		return v.EventsTable
	}
	return gl.eventsTable()
}

// checkFillGapsLeased checks the arguments of FillGapsLeased.
func checkFillGapsLeased(db *sql.DB, t *EventsTable, leases rpatterns.LeaseStore) error {
	switch {
	case t == nil:
		return errors.New("rsql: FillGapsLeased: nil events table")
	case t.gaps == nil || t.name == "":
		return errors.New("rsql: FillGapsLeased: events table not made by NewEventsTable")
	case db == nil:
		return fmt.Errorf("rsql: FillGapsLeased on %s: nil *sql.DB", t.name)
	case leases == nil:
		return fmt.Errorf("rsql: FillGapsLeased on %s: nil lease store", t.name)
	}
	if name := GapFillerLeaseName(t.name); len(name) > maxGapFillerLease {
		return fmt.Errorf("rsql: FillGapsLeased on %.64s...: lease name is %d bytes, longer than %d", t.name, len(name), maxGapFillerLease)
	}
	return nil
}

// fillLeased fills the table's gaps until ctx is done: it switches the
// leased filler on and scans for gaps. It returns ErrGapListenerStopped
// if the table's listeners are stopped, else ctx.Err().
func (t *EventsTable) fillLeased(ctx context.Context, db *sql.DB) error {
	// The table's listeners being stopped cancels ctx too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := &gapListener{ctx: ctx, cancel: cancel, f: func(ctx context.Context, g Gap) {
		if t.gaps.fillDB() == nil { // else FillGaps fills it
			t.fillGap(ctx, db, g)
		}
	}}
	if err := t.gaps.add(l); err != nil {
		return err
	}
	t.scanGaps(ctx, db)
	cancel()
	t.gaps.remove(l) // waits for a fill in progress
	if t.gaps.isStopped() {
		return ErrGapListenerStopped
	}
	return ctx.Err()
}

// scanGaps streams the table, discarding the events, so that its loads
// offer the gaps to the table's gap listeners, until ctx is done. It
// starts at the first open gap within gapScanWindow IDs of the head (see
// FillGapsLeased) and, after an error, goes on from the last event it
// read, or from the trim marker if the events there were trimmed.
func (t *EventsTable) scanGaps(ctx context.Context, db *sql.DB) {
	var timer wait.Timer
	defer timer.Stop()
	from := int64(-1) // not known yet
	for ctx.Err() == nil {
		var err error
		if from < 0 {
			from, err = t.scanStart(ctx, db)
		} else {
			from, err = t.scanFrom(ctx, db, from)
		}
		if err == nil || ctx.Err() != nil {
			continue
		}
		if te, ok := errors.AsType[*TrimmedError](err); ok {
			_, through := te.Trimmed()
			from = max(from, through)
			continue
		}
		_ = timer.Sleep(ctx, gapScanRetry) // ends the loop once ctx is done
	}
}

// scanStart returns where the scan of FillGapsLeased starts: before the
// first open gap within gapScanWindow IDs below the head, or at the head;
// -1 with an error.
func (t *EventsTable) scanStart(ctx context.Context, db *sql.DB) (int64, error) {
	head, err := t.Head(ctx, db)
	if err != nil {
		return -1, err
	}
	gaps, err := t.openGaps(ctx, db, max(head-gapScanWindow, 0), 1)
	if err != nil {
		return -1, err
	}
	if len(gaps) > 0 {
		return gaps[0].Prev, nil
	}
	return head, nil
}

// scanFrom streams the events after from, discarding them, until ctx is
// done or Recv fails; it returns the ID of the last event read (from if
// none) with the error.
func (t *EventsTable) scanFrom(ctx context.Context, db *sql.DB, from int64) (int64, error) {
	cl := t.newClient(ctx, db, strconv.FormatInt(from, 10), nil)
	defer cl.Close()
	for {
		e, err := cl.Recv()
		if err != nil {
			return from, err
		}
		if id, err := strconv.ParseInt(e.ID, 10, 64); err == nil && id > from {
			from = id
		}
	}
}
