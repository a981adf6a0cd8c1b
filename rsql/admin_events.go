package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The functions of this file inspect an events table for operators (the
// reflex command and services' own tools): positions by time, the next
// event after cursors, counts of ranges and open gaps. Each runs a few
// statements that read the primary key's index, never the whole table.

// EventTime is the ID and timestamp of an event.
type EventTime struct {
	ID        int64
	Timestamp time.Time
}

// CheckSchema reads the table's columns from the catalog (once per
// table value) and returns an error wrapping ErrSchema if the table does
// not exist or lacks one of its ID, timestamp, type and foreign ID
// columns, or the database's error.
func (t *EventsTable) CheckSchema(ctx context.Context, dbc DBC) error {
	if isNilDBC(dbc) {
		return fmt.Errorf("rsql: events table %s: nil DBC", t.name)
	}
	c := &t.cfg
	_, err := t.cols.lookup(ctx, dbc, c.idField, c.timeField, c.typeField, c.foreignIDField)
	return err
}

// DatabaseTime returns the current time by the database's clock, as the
// driver returns the times the table's inserts write (MySQL sessions
// must use the time zone the events were written in). Lags computed from
// it do not depend on the caller's clock.
func (t *EventsTable) DatabaseTime(ctx context.Context, dbc DBC) (time.Time, error) {
	if isNilDBC(dbc) {
		return time.Time{}, fmt.Errorf("rsql: events table %s: nil DBC", t.name)
	}
	now, err := t.d.clock(ctx, dbc)
	if err != nil {
		return time.Time{}, fmt.Errorf("rsql: read the clock of the database of %s: %w", t.name, err)
	}
	return now, nil
}

// probe returns the first event whose ID is at least id, and false if
// there is none: one seek of the primary key.
func (t *EventsTable) probe(ctx context.Context, dbc DBC, id int64) (EventTime, bool, error) {
	q := t.q.stmt()
	q.sql("SELECT ", t.q.id, ", ", t.q.time, " FROM ", t.q.table, " WHERE ", t.q.id, " >= ")
	q.val(id)
	q.sql(" ORDER BY ", t.q.id, " LIMIT 1")
	var e EventTime
	err := dbc.QueryRowContext(ctx, q.String(), q.args...).Scan(&e.ID, &e.Timestamp)
	if errors.Is(err, sql.ErrNoRows) {
		return EventTime{}, false, nil
	}
	if err != nil {
		return EventTime{}, false, err
	}
	return e, true, nil
}

// CursorAt returns the cursor from which a stream delivers the events
// recorded at or after at: the ID of the last event whose timestamp is
// before at (one less than the first event's ID if none is), or the head
// if every event is before at; 0 for an empty table.
//
// It binary-searches the IDs with point lookups of the primary key
// (about log2 of the ID range, 20 for a million IDs), never a scan. The
// timestamps of events need not be strictly in ID order (transactions
// commit in any order): then the cursor is one of the positions where
// the timestamps cross at, and a stream from it may start with some
// events older than at, never skip newer ones within a run of ordered
// timestamps. Noop events written by the gap filler carry the time they
// were written, so a cursor near one may start earlier than needed.
//
// Database errors are returned wrapped with the table name. It blocks
// for the queries and is safe for concurrent use.
func (t *EventsTable) CursorAt(ctx context.Context, dbc DBC, at time.Time) (int64, error) {
	cur, err := t.cursorAt(ctx, dbc, at)
	if err != nil {
		return 0, fmt.Errorf("rsql: find the events of %s at %s: %w", t.name, at.UTC().Format(time.RFC3339Nano), err)
	}
	return cur, nil
}

func (t *EventsTable) cursorAt(ctx context.Context, dbc DBC, at time.Time) (int64, error) {
	if isNilDBC(dbc) {
		return 0, errors.New("nil DBC")
	}
	first, ok, err := t.probe(ctx, dbc, 0)
	if err != nil || !ok {
		return 0, err
	}
	if !first.Timestamp.Before(at) {
		return first.ID - 1, nil
	}
	head, err := t.Head(ctx, dbc)
	if err != nil {
		return 0, err
	}
	// lo is an event before at; every position from hi on has no event
	// or a first event at or after at.
	lo, hi := first.ID, head+1
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		e, ok, err := t.probe(ctx, dbc, mid)
		if err != nil {
			return 0, err
		}
		if !ok || !e.Timestamp.Before(at) || e.ID >= hi {
			hi = mid
			continue
		}
		lo = e.ID
	}
	return lo, nil
}

// nextEventsChunk bounds the cursors of one statement of NextEvents.
const nextEventsChunk = 500

// NextEvents returns, for each of cursors, the ID and timestamp of the
// first event after it (the next event a consumer at that cursor
// receives), or a zero EventTime if there is none. Equal cursors are
// looked up once. It reads the head, then the events just after the
// cursors in one statement per 500 cursors (seeks of the primary key),
// then, for the cursors followed by a missing ID, the first event after
// each with one scalar subquery per cursor. Database errors are returned
// wrapped with the table name. It is safe for concurrent use.
func (t *EventsTable) NextEvents(ctx context.Context, dbc DBC, cursors []int64) ([]EventTime, error) {
	out, err := t.nextEvents(ctx, dbc, cursors)
	if err != nil {
		return nil, fmt.Errorf("rsql: find the next events of %s: %w", t.name, err)
	}
	return out, nil
}

func (t *EventsTable) nextEvents(ctx context.Context, dbc DBC, cursors []int64) ([]EventTime, error) {
	if isNilDBC(dbc) {
		return nil, errors.New("nil DBC")
	}
	head, err := t.Head(ctx, dbc)
	if err != nil {
		return nil, err
	}
	// The cursors with events after them; most are followed by the next
	// ID.
	var distinct, succ []int64
	seen := make(map[int64]bool, len(cursors))
	for _, c := range cursors {
		if !seen[c] && c < head {
			seen[c] = true
			distinct = append(distinct, c)
			succ = append(succ, c+1)
		}
	}
	next := make(map[int64]EventTime, len(distinct))
	var missed []int64
	for i := 0; i < len(distinct); i += nextEventsChunk {
		end := min(i+nextEventsChunk, len(distinct))
		times, err := t.timesOf(ctx, dbc, succ[i:end])
		if err != nil {
			return nil, err
		}
		for _, c := range distinct[i:end] {
			if ts, ok := times[c+1]; ok {
				next[c] = EventTime{ID: c + 1, Timestamp: ts}
			} else {
				missed = append(missed, c)
			}
		}
	}
	for len(missed) > 0 {
		chunk := missed[:min(len(missed), nextEventsChunk)]
		missed = missed[len(chunk):]
		if err := t.nextChunk(ctx, dbc, chunk, next); err != nil {
			return nil, err
		}
	}
	out := make([]EventTime, len(cursors))
	for i, c := range cursors {
		out[i] = next[c]
	}
	return out, nil
}

// nextChunk adds the next events of cursors to next: one statement for
// the IDs, one for their timestamps (read from the column, so that the
// driver parses them as it parses the table's other times).
func (t *EventsTable) nextChunk(ctx context.Context, dbc DBC, cursors []int64, next map[int64]EventTime) error {
	q := t.q.stmt()
	q.grow(len(cursors) * 96)
	for i, c := range cursors {
		if i > 0 {
			q.sql(" UNION ALL ")
		}
		q.sql("SELECT ")
		q.val(int64(i))
		q.sql(", (SELECT ", t.q.id, " FROM ", t.q.table, " WHERE ", t.q.id, " > ")
		q.val(c)
		q.sql(" ORDER BY ", t.q.id, " LIMIT 1)")
	}
	ids := make([]int64, len(cursors))
	err := scanRows(ctx, dbc, q, func(rows *sql.Rows) error {
		var (
			i  int64
			id sql.NullInt64
		)
		if err := rows.Scan(&i, &id); err != nil {
			return err
		}
		if i < 0 || i >= int64(len(ids)) {
			return fmt.Errorf("row %d of %d", i, len(ids))
		}
		ids[i] = id.Int64
		return nil
	})
	if err != nil {
		return err
	}
	times, err := t.timesOf(ctx, dbc, ids)
	if err != nil {
		return err
	}
	for i, c := range cursors {
		if ids[i] != 0 {
			next[c] = EventTime{ID: ids[i], Timestamp: times[ids[i]]}
		}
	}
	return nil
}

// timesOf returns the timestamps of the events with ids (0s are
// skipped), by ID.
func (t *EventsTable) timesOf(ctx context.Context, dbc DBC, ids []int64) (map[int64]time.Time, error) {
	times := make(map[int64]time.Time, len(ids))
	q := t.q.stmt()
	q.sql("SELECT ", t.q.id, ", ", t.q.time, " FROM ", t.q.table, " WHERE ", t.q.id, " IN (")
	n := 0
	for _, id := range ids {
		if id == 0 {
			continue
		}
		if n > 0 {
			q.sql(", ")
		}
		q.val(id)
		n++
	}
	if n == 0 {
		return times, nil
	}
	q.sql(")")
	err := scanRows(ctx, dbc, q, func(rows *sql.Rows) error {
		var e EventTime
		if err := rows.Scan(&e.ID, &e.Timestamp); err != nil {
			return err
		}
		times[e.ID] = e.Timestamp
		return nil
	})
	return times, err
}

// CountEvents returns the number of events (rows, noop events included)
// whose IDs are in (after, upTo]: how many events a consumer replays
// when its cursor moves back from upTo to after, or skips when it moves
// forward from after to upTo. It counts through the primary key's index.
// Database errors are returned wrapped with the table name.
func (t *EventsTable) CountEvents(ctx context.Context, dbc DBC, after, upTo int64) (int64, error) {
	if isNilDBC(dbc) {
		return 0, fmt.Errorf("rsql: count the events of %s: nil DBC", t.name)
	}
	if upTo <= after {
		return 0, nil
	}
	q := t.q.stmt()
	q.sql("SELECT COUNT(*) FROM ", t.q.table, " WHERE ", t.q.id, " > ")
	q.val(after)
	q.sql(" AND ", t.q.id, " <= ")
	q.val(upTo)
	var n int64
	if err := dbc.QueryRowContext(ctx, q.String(), q.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("rsql: count the events of %s: %w", t.name, err)
	}
	return n, nil
}

// OpenGap is a range of missing event IDs with a committed event after
// it, as OpenGaps found it.
type OpenGap struct {
	// Gap is the range: the IDs strictly between Prev and Next are
	// missing.
	Gap
	// NextTime is the timestamp of the event with ID Next: streams have
	// waited at the gap since about then.
	NextTime time.Time
	// InFlight is the number of the missing IDs written by transactions
	// that have not committed yet, which the gap filler leaves alone
	// (MySQL and MariaDB; always 0 with SQLite, whose writers are
	// serialised: its gaps are rolled-back or deleted rows).
	InFlight int64
}

// Missing returns the number of missing IDs.
func (g OpenGap) Missing() int64 { return g.Next - g.Prev - 1 }

// OpenGaps returns the first limit gaps (in ID order) between the events
// whose IDs are at least from: IDs missing below a committed event, at
// which every stream of the table waits until they are committed or
// filled (see FillGaps). It reads the IDs from from to the head in one
// statement (the LEAD window function over the primary key: MySQL 8,
// MariaDB 10.2 and SQLite 3.25 or later), then the next events' times,
// then for each gap the uncommitted rows in a read-uncommitted
// transaction. Give from near the slowest consumer's cursor, or the head
// minus a window, rather than 0 on a large table. limit < 1 means 100.
// Database errors are returned wrapped with the table name.
func (t *EventsTable) OpenGaps(ctx context.Context, db *sql.DB, from int64, limit int) ([]OpenGap, error) {
	gaps, err := t.openGaps(ctx, db, from, limit)
	if err != nil {
		return nil, fmt.Errorf("rsql: find the gaps of %s: %w", t.name, err)
	}
	return gaps, nil
}

// defaultGapsLimit is the number of gaps OpenGaps returns by default.
const defaultGapsLimit = 100

func (t *EventsTable) openGaps(ctx context.Context, db *sql.DB, from int64, limit int) ([]OpenGap, error) {
	if db == nil {
		return nil, errors.New("nil *sql.DB")
	}
	if limit < 1 {
		limit = defaultGapsLimit
	}
	q := t.q.stmt()
	q.sql("SELECT g.prev_id, g.next_id FROM (SELECT ", t.q.id, " AS prev_id, LEAD(", t.q.id, ") OVER (ORDER BY ", t.q.id,
		") AS next_id FROM ", t.q.table, " WHERE ", t.q.id, " >= ")
	q.val(from)
	q.sql(") g WHERE g.next_id > g.prev_id + 1 ORDER BY g.prev_id LIMIT ")
	q.val(limit)
	var (
		gaps  []OpenGap
		nexts []int64
	)
	err := scanRows(ctx, db, q, func(rows *sql.Rows) error {
		var g OpenGap
		if err := rows.Scan(&g.Prev, &g.Next); err != nil {
			return err
		}
		gaps = append(gaps, g)
		nexts = append(nexts, g.Next)
		return nil
	})
	if err != nil || len(gaps) == 0 {
		return nil, err
	}
	times, err := t.timesOf(ctx, db, nexts)
	if err != nil {
		return nil, err
	}
	for i := range gaps {
		g := &gaps[i]
		g.NextTime = times[g.Next]
		if g.InFlight, err = t.uncommittedIn(ctx, db, g.Prev, g.Next); err != nil {
			return nil, err
		}
	}
	return gaps, nil
}

// uncommittedIn returns the number of rows with IDs strictly between prev
// and next that a read-uncommitted transaction sees (0 where the dialect
// has no such level); called for a range without committed rows.
func (t *EventsTable) uncommittedIn(ctx context.Context, db *sql.DB, prev, next int64) (int64, error) {
	opts := t.d.uncommittedTx()
	if opts == nil {
		return 0, nil
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	q := t.q.stmt()
	q.sql("SELECT COUNT(*) FROM ", t.q.table, " WHERE ", t.q.id, " > ")
	q.val(prev)
	q.sql(" AND ", t.q.id, " < ")
	q.val(next)
	var n int64
	err = tx.QueryRowContext(ctx, q.String(), q.args...).Scan(&n)
	return n, err
}

// scanRows runs q through dbc and calls scan for each row.
func scanRows(ctx context.Context, dbc DBC, q *sqlStmt, scan func(*sql.Rows) error) error {
	rows, err := dbc.QueryContext(ctx, q.String(), q.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ColumnNames returns the names of the table's columns (lower case, in
// no particular order) as the catalog lists them, read once per table
// value; an error wrapping ErrSchema if the table does not exist.
func (t *EventsTable) ColumnNames(ctx context.Context, dbc DBC) ([]string, error) {
	if isNilDBC(dbc) {
		return nil, fmt.Errorf("rsql: events table %s: nil DBC", t.name)
	}
	cols, err := t.cols.get(ctx, dbc)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(cols))
	for n := range cols {
		names = append(names, n)
	}
	return names, nil
}
