package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// Trimming keeps an events table bounded: a Trimmer deletes the oldest
// rows, in chunks, once they are archived (rblob.Archiver) and old enough.
//
// Design: the trimmed range is always a prefix of the IDs, and the table
// records it in itself, with a marker row: the row of the last trimmed
// event is overwritten (in the transaction that deletes the rows below it)
// with a noop (foreign ID "0", type 0) whose timestamp is 1970-01-02, which
// neither Insert (it refuses noops) nor the gap filler (it writes the
// current time) can write. "Trimmed through M" means: every event with an
// ID up to M is gone from the table, M included (M's event is in the
// archive). So:
//
//   - Readers need no other state: a load after a cursor below M returns
//     the marker row among its rows, in the same snapshot as the rows (the
//     chunk's DELETE and UPDATE commit together), so a stream can never
//     mistake trimmed IDs for a gap, nor pass them silently: the load
//     fails with a *TrimmedError (ErrTrimmed) (see beforeTrimMarker for
//     rows left below the marker). A cursor at or above M never sees the
//     marker, and costs only a check of each event it loads.
//     The marker's old timestamp makes lagging loads see it too.
//     LoadEvents, the raw loader, returns the marker as the noop it is.
//   - The table is never emptied by trimming (the marker stays), so its
//     maximum ID, and with it the ID counter of engines that derive the
//     counter from it after a restart, never goes back.
//   - EventsTable.TrimmedThrough reads one row (the first), so a tiered
//     stream knows where the table starts cheaply; if it reads a stale
//     value, the table's stream fails with the *TrimmedError instead, and
//     the tiered stream goes back to the archive.
//   - The gap filler fills no ID at or below the marker.
//
// The marker always overwrites a real event (never a noop), so the archive
// must hold an event with the marker's ID: a tiered stream checks that it
// does, which tells a wrong or incomplete archive from noops.

var (
	// ErrTrimmed is wrapped by the *TrimmedError that the Recv of a table's
	// stream returns when the events after its cursor were trimmed (see
	// Trimmer): read them from the archive, with rblob's tiered stream
	// (Bucket.StreamTiered), which resumes from any cursor.
	ErrTrimmed = errors.New("rsql: events trimmed")

	// ErrTrimNeedsArchive is returned by NewTrimmer without
	// WithTrimArchive or WithTrimUnarchived: a trimmer must either respect
	// an archiver's cursor or be told explicitly that history may be lost.
	ErrTrimNeedsArchive = errors.New("rsql: trimmer needs the archiver's cursor (WithTrimArchive) or WithTrimUnarchived")

	// ErrTrimNoCursor is wrapped by the errors of a Trimmer's passes when
	// a cursor it must respect (the archiver's of WithTrimArchive, or a
	// consumer's of WithTrimConsumers) is missing from its store: nothing
	// was archived or consumed yet, or the name is wrong. Nothing is
	// trimmed.
	ErrTrimNoCursor = errors.New("rsql: a cursor the trimmer must respect is missing")
)

// TrimmedError is returned by the Recv of a stream of an EventsTable (and
// by its loads) when the events after the stream's position were trimmed:
// the table no longer holds the events with IDs after Cursor up to
// Through. It wraps ErrTrimmed. The stream does not skip them: read them
// from the archive (rblob's Bucket.StreamTiered does so and then comes
// back to the table), or, to accept their loss, resume after Through.
type TrimmedError struct {
	// Table is the table's name.
	Table string
	// Cursor is the stream's position: the ID after which it loaded.
	Cursor int64
	// Through is the table's trim marker: the events with IDs up to it
	// (and above Cursor) are gone.
	Through int64
}

// Error describes the trimmed range and what to do.
func (e *TrimmedError) Error() string {
	return fmt.Sprintf("rsql: events table %s: the events after %d up to %d were trimmed: read them from the archive (rblob tiered stream), or resume after %d to skip them: %v",
		e.Table, e.Cursor, e.Through, e.Through, ErrTrimmed)
}

// Unwrap returns ErrTrimmed.
func (e *TrimmedError) Unwrap() error { return ErrTrimmed }

// Trimmed returns Cursor and Through. rblob's tiered stream recognises a
// trimmed table by this method (it does not import rsql).
func (e *TrimmedError) Trimmed() (cursor, through int64) { return e.Cursor, e.Through }

// IsNoop reports whether e, from an events table's stream, is a noop
// event: foreign ID "0" and type 0, as written by the gap filler (and the
// trimmer's marker). Streams skip them unless WithIncludeNoopEvents; give
// it to rblob.WithTieredDense for an archive written with them.
func IsNoop(e *reflex.Event) bool { return isNoopEvent(e) }

// isTrimMarker reports whether e, loaded from a table, is its trim marker.
func isTrimMarker(e *reflex.Event) bool {
	return e.Type != nil && isNoopEvent(e) && e.Timestamp.Before(trimMarkerBefore)
}

// beforeTrimMarker checks the rows loaded after prev for the table's trim
// marker, before the gap detector. The rows below a marker are trimmed
// too: they are returned only while they follow on from prev without a
// gap (rows that MarkTrimmed left, until their partition is dropped, are
// the table's oldest and have no gaps), and the next load goes on from
// them; otherwise (a marker first, or rows that do not follow on, whose
// missing IDs may be trimmed ones) the load fails with a *TrimmedError,
// so that no trimmed ID is ever skipped or taken for a gap.
func (t *EventsTable) beforeTrimMarker(prev int64, b batch) (batch, error) {
	for i, e := range b.events {
		if !isTrimMarker(e) {
			continue
		}
		n := 0
		for n < i && b.ids[n] == prev+1+int64(n) {
			n++
		}
		if n == 0 {
			return batch{}, &TrimmedError{Table: t.name, Cursor: prev, Through: b.ids[i]}
		}
		b.events, b.ids, b.full, b.head = b.events[:n], b.ids[:n], false, false
		return b, nil
	}
	return b, nil
}

// TrimmedThrough returns the ID of the table's trim marker (see Trimmer):
// every event with an ID up to it is gone from the table, and the next
// event, if any, is the oldest the table retains. It returns 0 if the
// table was never trimmed, and also while rows below the marker remain
// (after MarkTrimmed, until their partition is dropped): it reads the
// table's first row only, with one indexed query. The database error is
// returned wrapped with the table name. It is safe for concurrent use.
func (t *EventsTable) TrimmedThrough(ctx context.Context, dbc DBC) (int64, error) {
	if isNilDBC(dbc) {
		return 0, fmt.Errorf("rsql: trimmed through of events table %s: nil DBC", t.name)
	}
	var (
		id, typ int64
		fid     string
		ts      time.Time
	)
	err := dbc.QueryRowContext(ctx, t.q.firstRowStmt()).Scan(&id, &typ, &fid, &ts)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("rsql: trimmed through of events table %s: %w", t.name, err)
	case isNoop(fid, int(typ)) && ts.Before(trimMarkerBefore):
		return id, nil
	}
	return 0, nil
}

// untrimmedFrom returns the first ID at or after id that is above the
// table's trim marker: where the gap filler may start filling.
func (t *EventsTable) untrimmedFrom(ctx context.Context, db *sql.DB, id int64) (int64, error) {
	through, err := t.TrimmedThrough(ctx, db)
	if err != nil {
		return 0, err
	}
	return max(id, through+1), nil
}

// Trimmer defaults.
const (
	// DefaultTrimChunk is the number of rows a Trimmer deletes per
	// transaction.
	DefaultTrimChunk = 500
	// DefaultTrimInterval is how long Trimmer.Run waits between passes.
	DefaultTrimInterval = time.Minute
)

// TrimOption configures a Trimmer.
type TrimOption func(*trimConfig)

type trimConfig struct {
	archive    *trimCursor
	unarchived bool
	consumers  []trimCursor
	chunk      int
	interval   time.Duration
	invalid    []string
}

// trimCursor is a cursor a Trimmer must not trim past.
type trimCursor struct {
	store reflex.CursorStore
	name  string
	stop  TrimStop // TrimStopArchive or TrimStopConsumer
}

// WithTrimArchive makes the Trimmer trim only events that an archiver has
// written: those with IDs up to the cursor of the consumer named archiver
// (the rblob.Archiver's name) in store, the store the archiver's spec uses
// (the archiver sets that cursor itself, once an object is written). The
// trimmer reads the cursor at the start of each pass and then flushes
// store, so that it trims only up to a cursor the store has made durable:
// an archiver restarting from a cursor below the trimmed range would fail.
// A missing cursor makes each pass fail with ErrTrimNoCursor.
// WithTrimArchive or WithTrimUnarchived is required.
func WithTrimArchive(store reflex.CursorStore, archiver string) TrimOption {
	return func(c *trimConfig) {
		switch {
		case store == nil:
			c.invalid = append(c.invalid, "WithTrimArchive: nil cursor store")
		case archiver == "":
			c.invalid = append(c.invalid, "WithTrimArchive: empty archiver name")
		default:
			c.archive = &trimCursor{store: store, name: archiver, stop: TrimStopArchive}
		}
	}
}

// WithTrimUnarchived lets the Trimmer trim events that no archive holds:
// their history is lost (a tiered stream then fails where the archive
// lacks them). It excludes WithTrimArchive.
func WithTrimUnarchived() TrimOption {
	return func(c *trimConfig) { c.unarchived = true }
}

// WithTrimConsumers makes the Trimmer keep the events that the named
// consumers (their cursors in store) have not consumed yet, so that they
// can go on reading the table itself: it trims only up to the smallest of
// their cursors, read and flushed (see WithTrimArchive) at the start of
// each pass. A missing cursor makes each pass fail with ErrTrimNoCursor.
// The option may be given more than once (stores differ); the default is
// no consumers. Consumers of a tiered stream need not be listed.
func WithTrimConsumers(store reflex.CursorStore, names ...string) TrimOption {
	return func(c *trimConfig) {
		switch {
		case store == nil:
			c.invalid = append(c.invalid, "WithTrimConsumers: nil cursor store")
		case len(names) == 0:
			c.invalid = append(c.invalid, "WithTrimConsumers: no consumer names")
		}
		for _, n := range names {
			if n == "" {
				c.invalid = append(c.invalid, "WithTrimConsumers: empty consumer name")
				return
			}
		}
		if store != nil {
			for _, n := range names {
				c.consumers = append(c.consumers, trimCursor{store: store, name: n, stop: TrimStopConsumer})
			}
		}
	}
}

// WithTrimChunk sets how many rows the Trimmer deletes per transaction,
// bounding how long each statement runs and how many rows it locks. The
// default is DefaultTrimChunk (500); rows must be positive. A chunk may
// delete more rows only to pass a run of noop events (rolled-back inserts
// filled by the gap filler) longer than rows, since the marker moves only
// onto real events.
func WithTrimChunk(rows int) TrimOption {
	return func(c *trimConfig) {
		if rows <= 0 {
			c.invalid = append(c.invalid, fmt.Sprintf("WithTrimChunk(%d): must be positive", rows))
		}
		c.chunk = rows
	}
}

// WithTrimInterval sets how long Run waits after each pass. The default is
// DefaultTrimInterval (1 minute); d must be positive.
func WithTrimInterval(d time.Duration) TrimOption {
	return func(c *trimConfig) {
		if d <= 0 {
			c.invalid = append(c.invalid, fmt.Sprintf("WithTrimInterval(%v): must be positive", d))
		}
		c.interval = d
	}
}

// TrimStop says what ended a trim pass (TrimResult.Stop).
type TrimStop string

// The reasons a trim pass stops.
const (
	// TrimStopHead: no row follows the last one trimmed.
	TrimStopHead TrimStop = "head"
	// TrimStopRetention: the next row is not older than the retention.
	TrimStopRetention TrimStop = "retention"
	// TrimStopBelow: the next row is at or above the ID given to
	// TrimBelow or MarkTrimmed.
	TrimStopBelow TrimStop = "below"
	// TrimStopArchive: the next row is after the archiver's cursor.
	TrimStopArchive TrimStop = "archive"
	// TrimStopConsumer: the next row is after a consumer's cursor.
	TrimStopConsumer TrimStop = "consumer"
	// TrimStopGap: the next ID is missing (a transaction may still write
	// it, or the gap filler has not filled it yet): a trimmer never
	// passes a gap, as streams do not.
	TrimStopGap TrimStop = "gap"
)

// TrimResult reports a trim pass.
type TrimResult struct {
	// Rows is the number of event rows the pass removed: deleted, or
	// overwritten by the trim marker (noops included, markers not).
	Rows int64
	// Through is the table's trim marker after the pass: the events with
	// IDs up to it are gone from the table; 0 if it was never trimmed.
	Through int64
	// Oldest is the ID of the oldest event the table retains (the first
	// row after Through), 0 if it holds none; OldestTime is its
	// timestamp.
	Oldest     int64
	OldestTime time.Time
	// Stop says what ended the pass.
	Stop TrimStop
	// Statements is the number of SQL statements the pass ran (queries,
	// DELETEs, UPDATEs, commits); Longest is the longest of them.
	Statements int
	Longest    time.Duration
}

// Trimmer deletes the oldest events of an events table, in chunks, keeping
// what consumers of the table still need: it trims only events that are
// archived (WithTrimArchive), older than the retention (Trim, Run) or
// below an ID (TrimBelow), and consumed by the consumers of
// WithTrimConsumers. A tiered stream (rblob's Bucket.StreamTiered) then
// serves the whole history, reading the trimmed events from the archive.
//
// Each chunk is one short transaction: it deletes at most the chunk's rows
// (WithTrimChunk) by ID range and overwrites the row of the last event it
// trims with the table's trim marker (a noop dated 1970-01-02), which
// tells streams and the gap filler where the table starts: a stream whose
// cursor is below it fails with a *TrimmedError (ErrTrimmed) instead of
// waiting at a gap, and the gap filler fills no ID at or below it. A pass
// never trims past a missing ID. Trimming is restart-safe: a chunk that
// did not commit changed nothing, and each pass starts again from the
// marker.
//
// Several trimmers of one table may run at once (a chunk whose marker row
// was deleted by another fails and changes nothing), but one is enough:
// run it under rpatterns.HoldLease so that one replica trims.
//
// Trimmer starts no goroutine. Its methods are safe for concurrent use;
// passes of one Trimmer run one at a time.
type Trimmer struct {
	db        *sql.DB
	t         *EventsTable
	retention time.Duration
	cfg       trimConfig
	q         trimSQL
	m         *metrics.Trim

	mu sync.Mutex // held by a pass
}

// NewTrimmer returns a Trimmer of table, through dbc, whose Trim and Run
// remove the events older than retention (by the database's clock) within
// the limits its options set; one of WithTrimArchive and
// WithTrimUnarchived is required. It does no I/O. It returns an error for
// a nil dbc or table, a retention that is not positive, a nil or invalid
// option, and ErrTrimNeedsArchive.
func NewTrimmer(dbc *sql.DB, table *EventsTable, retention time.Duration, opts ...TrimOption) (*Trimmer, error) {
	cfg := trimConfig{chunk: DefaultTrimChunk, interval: DefaultTrimInterval}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("rsql: NewTrimmer: option %d is nil", i)
		}
		o(&cfg)
	}
	switch {
	case dbc == nil:
		return nil, errors.New("rsql: NewTrimmer: nil *sql.DB")
	case table == nil:
		return nil, errors.New("rsql: NewTrimmer: nil *EventsTable")
	case retention <= 0:
		return nil, fmt.Errorf("rsql: NewTrimmer(%s): retention %v must be positive", table.name, retention)
	case len(cfg.invalid) > 0:
		return nil, fmt.Errorf("rsql: NewTrimmer(%s): %s", table.name, cfg.invalid[0])
	case cfg.archive != nil && cfg.unarchived:
		return nil, fmt.Errorf("rsql: NewTrimmer(%s): WithTrimArchive and WithTrimUnarchived exclude each other", table.name)
	case cfg.archive == nil && !cfg.unarchived:
		return nil, fmt.Errorf("rsql: NewTrimmer(%s): %w", table.name, ErrTrimNeedsArchive)
	}
	return &Trimmer{
		db: dbc, t: table, retention: retention, cfg: cfg,
		q: newTrimSQL(&table.q), m: metrics.NewTrim(unquote(table.name)),
	}, nil
}

// Trim runs one pass: it removes, chunk by chunk, the oldest events up to
// the first that is not older than the retention, not archived, not
// consumed, or after a missing ID, and returns what it did. It blocks
// until the pass ends or ctx is done. Errors: ErrTrimNoCursor (wrapped),
// the cursor stores' and the database's errors, and ctx.Err(); the chunks
// committed before an error stay trimmed (see TrimResult).
func (tr *Trimmer) Trim(ctx context.Context) (TrimResult, error) {
	return tr.pass(ctx, math.MaxInt64, true, true)
}

// TrimBelow is Trim for the events with IDs below id, whatever their age
// (the retention does not apply); the archive and consumer limits do. An
// id that is not positive is an error.
func (tr *Trimmer) TrimBelow(ctx context.Context, id int64) (TrimResult, error) {
	if id <= 0 {
		return TrimResult{}, fmt.Errorf("rsql: TrimBelow(%d) on %s: the id must be positive", id, tr.t.name)
	}
	return tr.pass(ctx, id, false, true)
}

// MarkTrimmed moves the trim marker onto the event with ID first (or, if
// first is a noop, the next event), within the archive and consumer limits
// (the retention aside), without deleting the rows below it: for tables
// trimmed by dropping partitions (see the partitioned schema files). Give
// it the first ID of the oldest partition to keep, check that the result's
// Through lies in that partition, then drop the partitions below it. Until
// they are dropped, streams read the rows below the marker (they follow on
// without gaps) and fail with ErrTrimmed when they reach it, and
// TrimmedThrough returns 0. It returns the result unchanged (Stop says
// why) if the event is past a limit or the marker is already past it. It
// runs one query and one UPDATE; with WithTrimUnarchived and no consumers
// it returns an error, since it does not read the rows below first to
// check that no ID is missing. Do not run Trim or Run on such a table:
// they would delete the partitions' rows in chunks. A first that is not
// positive is an error; other errors are as for TrimBelow.
func (tr *Trimmer) MarkTrimmed(ctx context.Context, first int64) (TrimResult, error) {
	if first <= 0 {
		return TrimResult{}, fmt.Errorf("rsql: MarkTrimmed(%d) on %s: the id must be positive", first, tr.t.name)
	}
	if tr.cfg.archive == nil && len(tr.cfg.consumers) == 0 {
		return TrimResult{}, fmt.Errorf("rsql: MarkTrimmed on %s: needs WithTrimArchive or WithTrimConsumers, whose cursors never pass a missing ID", tr.t.name)
	}
	return tr.pass(ctx, first, false, false)
}

// Run runs Trim, then waits the interval (WithTrimInterval), until ctx is
// done or a pass fails: it blocks and returns ctx.Err() or the pass's
// error. Compose it with rpatterns.HoldLease so that one process trims:
//
//	rpatterns.HoldLease(ctx, leases, "events-trimmer", func(ctx context.Context, _ rpatterns.Lease) error {
//		return trimmer.Run(ctx)
//	})
func (tr *Trimmer) Run(ctx context.Context) error {
	var w wait.Timer
	defer w.Stop()
	for {
		if _, err := tr.Trim(ctx); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			return err
		}
		if err := w.Sleep(ctx, tr.cfg.interval); err != nil {
			return err
		}
	}
}

// testHookTrimChunk, if set, is called inside each chunk's transaction,
// after its DELETE and before the marker's UPDATE and the commit.
var testHookTrimChunk atomic.Pointer[func()]

// trimRow is a row a pass scanned.
type trimRow struct {
	id     int64
	noop   bool // a noop event (or the marker)
	marker bool
	old    bool // older than the retention (true without one)
}

// pass trims the events up to the limits; below is the first ID not to
// trim (math.MaxInt64 for none), retention whether the retention applies,
// del whether the rows below the marker are deleted (else only the marker
// moves).
func (tr *Trimmer) pass(ctx context.Context, below int64, retention, del bool) (TrimResult, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	p := trimPass{tr: tr, retention: retention}
	err := p.run(ctx, below, del)
	if err == nil {
		err = p.oldest(ctx)
	}
	r := p.res
	tr.m.Rows.Add(float64(r.Rows))
	if err != nil {
		tr.m.PassErrors.Inc()
		return r, err
	}
	tr.m.PassesOK.Inc()
	tr.m.Through.Set(float64(r.Through))
	tr.m.OldestID.Set(float64(r.Oldest))
	if r.Oldest > 0 {
		tr.m.OldestTime.Set(float64(r.OldestTime.UnixNano()) / 1e9)
	} else {
		tr.m.OldestTime.Set(0)
	}
	return r, nil
}

// trimPass is the state of one pass.
type trimPass struct {
	tr        *Trimmer
	retention bool
	res       TrimResult
	rows      []trimRow
}

// limit returns the largest ID the pass may trim and the stop it means.
func (p *trimPass) limit(ctx context.Context, below int64) (int64, TrimStop, error) {
	limit, why := int64(math.MaxInt64), TrimStopHead
	if below != math.MaxInt64 {
		limit, why = below-1, TrimStopBelow
	}
	cursors := p.tr.cfg.consumers
	if a := p.tr.cfg.archive; a != nil {
		cursors = append([]trimCursor{*a}, cursors...)
	}
	for _, c := range cursors {
		id, err := c.read(ctx, p.tr.t.name)
		if err != nil {
			return 0, "", err
		}
		if id < limit {
			limit, why = id, c.stop
		}
	}
	return limit, why, nil
}

// read returns the cursor, once the store has made it durable.
func (c trimCursor) read(ctx context.Context, table string) (int64, error) {
	what := "archiver"
	if c.stop == TrimStopConsumer {
		what = "consumer"
	}
	s, err := c.store.GetCursor(ctx, c.name)
	if err != nil {
		return 0, fmt.Errorf("rsql: trim %s: cursor of %s %s: %w", table, what, bounded.Quote(c.name), err)
	}
	if s == "" {
		return 0, fmt.Errorf("rsql: trim %s: %s %s has no cursor: %w", table, what, bounded.Quote(c.name), ErrTrimNoCursor)
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("rsql: trim %s: cursor %s of %s %s is not an event ID", table, bounded.Quote(s), what, bounded.Quote(c.name))
	}
	// The cursor read may be buffered: make it durable before trimming up
	// to it. Cursors only move forward, so the stored one is then at
	// least id.
	if err := c.store.Flush(ctx); err != nil {
		return 0, fmt.Errorf("rsql: trim %s: flush the cursor of %s %s: %w", table, what, bounded.Quote(c.name), err)
	}
	return id, nil
}

// run scans the rows from the start of the table in chunks and trims the
// events up to the limits: per chunk, one transaction deletes the rows
// from the first one scanned (or the previous marker) up to the last
// trimmable event and turns that event's row into the marker.
func (p *trimPass) run(ctx context.Context, below int64, del bool) error {
	if !del {
		limit, why, err := p.limit(ctx, math.MaxInt64)
		if err != nil {
			return err
		}
		return p.mark(ctx, below, limit, why)
	}
	limit, why, err := p.limit(ctx, below)
	if err != nil {
		return err
	}
	chunk := p.tr.cfg.chunk
	var (
		from    int64      // the next scan reads IDs from here
		delFrom int64 = -1 // the pending range to delete starts here; -1 before the first row
		prev    int64      // the last row walked past, 0 before any
		cand    int64      // the last event that may become the marker, 0 if none
		markers int64      // marker rows in [delFrom, cand)
	)
	for p.res.Stop == "" {
		rows, err := p.scan(ctx, from)
		if err != nil {
			return err
		}
		if delFrom < 0 && len(rows) > 0 {
			delFrom = rows[0].id
		}
	walk:
		for _, r := range rows {
			switch {
			case r.marker:
				// Everything up to here is trimmed already.
				p.res.Through, prev, cand = r.id, r.id, 0
				markers++
				continue
			case r.id > limit:
				p.res.Stop = why
			case !r.old:
				p.res.Stop = TrimStopRetention
			case prev != 0 && r.id != prev+1:
				p.res.Stop = TrimStopGap
			}
			if p.res.Stop != "" {
				break walk
			}
			prev = r.id
			if !r.noop {
				cand = r.id
			}
		}
		if len(rows) < chunk && p.res.Stop == "" {
			p.res.Stop = TrimStopHead
		}
		if cand == 0 {
			// Nothing to mark yet (noops only): read on, keeping the
			// pending range.
			if len(rows) > 0 {
				from = rows[len(rows)-1].id + 1
			}
			continue
		}
		if err := p.chunk(ctx, delFrom, cand, markers); err != nil {
			return err
		}
		// The next scan starts at the new marker.
		from, delFrom, prev, cand, markers = cand, cand, 0, 0, 0
	}
	return nil
}

// scan reads the rows from the ID from on, at most a chunk of them.
func (p *trimPass) scan(ctx context.Context, from int64) ([]trimRow, error) {
	tr := p.tr
	q, args := tr.q.scan, []any{from, tr.cfg.chunk}
	if p.retention {
		q, args = tr.q.scanOld, []any{tr.retention.Microseconds(), from, tr.cfg.chunk}
	}
	p.rows = p.rows[:0]
	err := p.timed(func() error {
		rows, err := tr.t.stmts.query(ctx, tr.db, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			r        trimRow
			typ, old int64
			fid      sql.RawBytes
			ts       time.Time
		)
		for rows.Next() {
			if err := rows.Scan(&r.id, &typ, &fid, &ts, &old); err != nil {
				return err
			}
			r.noop = isNoop(string(fid), int(typ))
			r.marker = r.noop && ts.Before(trimMarkerBefore)
			r.old = old != 0
			p.rows = append(p.rows, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("rsql: trim %s: scan: %w", tr.t.name, err)
	}
	return p.rows, nil
}

// chunk deletes the rows in [lo, id) and turns id's row into the marker,
// in one transaction; markers is the number of marker rows in the range.
func (p *trimPass) chunk(ctx context.Context, lo, id, markers int64) error {
	tr := p.tr
	tx, err := tr.db.BeginTx(ctx, tr.t.d.trimTx())
	if err != nil {
		return fmt.Errorf("rsql: trim %s: begin: %w", tr.t.name, err)
	}
	defer tx.Rollback()
	var deleted int64
	if lo < id {
		s := tr.q.q.trimDelete(lo, id)
		err := p.timed(func() error {
			res, err := tx.ExecContext(ctx, s.String(), s.args...)
			if err == nil {
				deleted, err = res.RowsAffected()
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("rsql: trim %s: delete [%d, %d): %w", tr.t.name, lo, id, err)
		}
	}
	if h := testHookTrimChunk.Load(); h != nil {
		(*h)()
	}
	if err := p.markRow(ctx, tx, id); err != nil {
		return err
	}
	if err := p.timed(tx.Commit); err != nil {
		return fmt.Errorf("rsql: trim %s: commit: %w", tr.t.name, err)
	}
	p.res.Rows += max(deleted-markers, 0) + 1
	p.res.Through = id
	return nil
}

// markRow turns the row id, an event, into the marker.
func (p *trimPass) markRow(ctx context.Context, dbc DBC, id int64) error {
	tr := p.tr
	s := tr.q.q.trimMark(id)
	var n int64
	err := p.timed(func() error {
		res, err := dbc.ExecContext(ctx, s.String(), s.args...)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("rsql: trim %s: mark %d: %w", tr.t.name, id, err)
	}
	if n != 1 {
		return fmt.Errorf("rsql: trim %s: mark %d: the row changed during the pass (another trimmer?); nothing was trimmed by this chunk", tr.t.name, id)
	}
	return nil
}

// mark is the pass of MarkTrimmed: it moves the marker onto the first
// event at or after first, if that is within limit.
func (p *trimPass) mark(ctx context.Context, first, limit int64, why TrimStop) error {
	tr := p.tr
	through, err := tr.t.TrimmedThrough(ctx, tr.db)
	if err != nil {
		return err
	}
	p.res.Through = through
	q := tr.q.q
	if through == 0 {
		// Rows may be left below the marker: look for it under first.
		s := q.stmt()
		s.sql("SELECT ", q.id, ", ", q.typ, ", ", q.foreignID, ", ", q.time, " FROM ", q.table, " WHERE ", q.id, " < ")
		s.val(first)
		s.sql(" ORDER BY ", q.id, " DESC LIMIT ")
		s.val(tr.cfg.chunk)
		if _, err := p.markScan(ctx, s, true); err != nil {
			return err
		}
	}
	s := q.stmt()
	s.sql("SELECT ", q.id, ", ", q.typ, ", ", q.foreignID, ", ", q.time, " FROM ", q.table, " WHERE ", q.id, " >= ")
	s.val(first)
	s.sql(" ORDER BY ", q.id, " LIMIT ")
	s.val(tr.cfg.chunk)
	cand, err := p.markScan(ctx, s, false)
	if err != nil {
		return err
	}
	switch {
	case cand == 0 || cand <= p.res.Through:
		p.res.Stop = TrimStopHead
		return nil
	case cand > limit:
		p.res.Stop = why
		return nil
	}
	if err := p.markRow(ctx, tr.db, cand); err != nil {
		return err
	}
	p.res.Rows, p.res.Through, p.res.Stop = 1, cand, TrimStopBelow
	return nil
}

// markScan reads the rows of s (ID, type, foreign ID, time) up to the
// first event or marker: it returns the event's ID (unless markerOnly),
// and raises the result's Through to the marker's.
func (p *trimPass) markScan(ctx context.Context, s *sqlStmt, markerOnly bool) (int64, error) {
	tr := p.tr
	var cand int64
	err := p.timed(func() error {
		rows, err := tr.db.QueryContext(ctx, s.String(), s.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			id, typ int64
			fid     sql.RawBytes
			ts      time.Time
		)
		for rows.Next() {
			if err := rows.Scan(&id, &typ, &fid, &ts); err != nil {
				return err
			}
			if ts.Before(trimMarkerBefore) && isNoop(string(fid), int(typ)) {
				p.res.Through = max(p.res.Through, id)
				break
			}
			if !markerOnly && !isNoop(string(fid), int(typ)) {
				cand = id
				break
			}
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("rsql: trim %s: scan: %w", tr.t.name, err)
	}
	return cand, nil
}

// oldest sets the oldest retained event of the result.
func (p *trimPass) oldest(ctx context.Context) error {
	tr := p.tr
	err := p.timed(func() error {
		err := tr.db.QueryRowContext(ctx, tr.q.oldest, p.res.Through).Scan(&p.res.Oldest, &p.res.OldestTime)
		if errors.Is(err, sql.ErrNoRows) {
			p.res.Oldest, p.res.OldestTime = 0, time.Time{}
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("rsql: trim %s: oldest event: %w", tr.t.name, err)
	}
	return nil
}

// timed runs a statement, recording its duration.
func (p *trimPass) timed(f func() error) error {
	start := time.Now()
	err := f()
	d := time.Since(start)
	p.res.Statements++
	p.res.Longest = max(p.res.Longest, d)
	p.tr.m.Statement.Observe(d.Seconds())
	return err
}
