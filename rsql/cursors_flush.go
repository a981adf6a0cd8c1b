package rsql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"slices"
	"strconv"

	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// startLocked starts the flush loop, owned by t and stopped by Close.
func (t *CursorsTable) startLocked() {
	t.started = true
	ctx, cancel := context.WithCancel(context.Background()) // the table's lifetime
	t.stop = cancel
	t.wg.Go(func() { t.flushLoop(ctx) })
}

// flushLoop flushes every period until ctx is done, each flush bounded by
// the flush timeout. Failed flushes are counted in
// reflex_cursors_table_flush_errors_total; their cursors stay buffered for
// the next flush, and errors that concern one consumer are kept for its
// next SetCursor.
func (t *CursorsTable) flushLoop(ctx context.Context) {
	var w wait.Timer
	defer w.Stop()
	for w.Sleep(ctx, t.cfg.period) == nil {
		fctx, cancel := context.WithTimeout(ctx, t.cfg.flushTimeout)
		_ = t.Flush(fctx)
		cancel()
	}
}

// acquire takes sem, or returns ctx's error.
func (t *CursorsTable) acquire(ctx context.Context) error {
	select {
	case t.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives sem back.
func (t *CursorsTable) release() { <-t.sem }

// rowOutcome is what a flush did with one buffered cursor.
type rowOutcome uint8

const (
	outPending   rowOutcome = iota // not decided yet
	outRetry                       // not written: buffer it again
	outWritten                     // stored as it was
	outUpserted                    // stored, or a greater stored cursor kept
	outSkipped                     // a greater stored cursor kept
	outConflict                    // another writer changed the row
	outFailed                      // refused for good (err)
	outLeaseLost                   // the fencing lease is no longer held
)

// flushRow is one buffered cursor in a flush.
type flushRow struct {
	e *cursorEntry
	v cursorVal // the cursor to write
	// state and stored are what the table knew of the row when the flush
	// took the cursor (nothing else changes them during the flush).
	state  storedState
	stored cursorVal
	fence  *fence // the lease that fences the write, or nil
	out    rowOutcome
	// read is the row as read back (outSkipped, outConflict).
	read  sql.NullString
	found bool
	err   error // outFailed
}

// Flush writes the buffered cursors (asynchronous mode) to the database in
// as few statements as possible, using the handle of the latest buffered
// SetCursor: per 1000 consumers, one UPDATE of those the table has seen
// stored (the steady state) and one INSERT of those it has seen absent,
// plus a read and an upsert when some of them did not go as expected. A
// buffered cursor not greater than the stored one is skipped: a flush
// never moves a cursor backwards. It returns nil at once in synchronous
// mode or when nothing is buffered. It blocks until done or ctx ends, and
// its only bound is ctx.
//
// Flushes are serialised. If a statement fails (a connection error, a
// timeout), Flush returns its error and keeps the cursors it did not write
// buffered (unless newer ones were set meanwhile), so the next flush
// retries them; nothing is lost. A cursor that cannot be written for good
// does not hold back the others: a consumer whose name or cursor the
// table refuses (ErrInvalidValue), whose row the database refuses, or
// whose row another writer changed (ErrConcurrentWriter) has its
// buffered cursor dropped and the error returned, joined with the others;
// the consumer's next SetCursor returns it too, unless GetCursor is called
// first. It is safe for concurrent use, also after Close.
func (t *CursorsTable) Flush(ctx context.Context) error {
	if t.cfg.period <= 0 {
		return nil
	}
	if err := t.acquire(ctx); err != nil {
		return fmt.Errorf("rsql: flush cursors table %s: %w", t.name, err)
	}
	defer t.release()

	t.mu.Lock()
	rows := t.batch[:0]
	for _, e := range t.dirty {
		if e.dirty {
			rows = append(rows, flushRow{e: e, v: e.pending, state: e.state, stored: e.stored, fence: e.fence})
			e.dirty = false
		}
	}
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	dbc := t.dbc
	t.mu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	defer func() {
		clear(rows)
		t.batch = rows[:0]
	}()

	err := t.flushRows(ctx, dbc, rows)
	if err != nil {
		err = fmt.Errorf("rsql: flush cursors table %s: %w", t.name, err)
	}
	errs := t.settle(rows)
	if err != nil || len(errs) > 0 {
		if ctx.Err() == nil {
			t.flushError()
		}
		return errors.Join(append([]error{err}, errs...)...)
	}
	return nil
}

// flushRows writes rows, setting each row's outcome. It returns the error
// that stopped it (the undecided rows are to be retried).
func (t *CursorsTable) flushRows(ctx context.Context, dbc DBC, rows []flushRow) error {
	m, err := t.loadMeta(ctx, dbc)
	if err != nil {
		return err
	}
	todo := make([]*flushRow, 0, len(rows))
	var fenced []*flushRow
	for i := range rows {
		r := &rows[i]
		// Names buffered before the catalog was read are checked here.
		if err := m.key.check(r.e.name); err != nil {
			r.out, r.err = outFailed, err
			continue
		}
		if err := m.checkCursor(r.v); err != nil {
			r.out, r.err = outFailed, err
			continue
		}
		if r.fence != nil {
			fenced = append(fenced, r)
		} else {
			todo = append(todo, r)
		}
	}
	// A fixed row order keeps concurrent flushes of several processes from
	// deadlocking on each other's row locks.
	byName := func(a, b *flushRow) int { return cmp.Compare(a.e.name, b.e.name) }
	slices.SortFunc(todo, byName)
	slices.SortFunc(fenced, byName)
	// Fenced rows are written one statement each: each joins its own
	// lease row.
	for _, r := range fenced {
		if err := t.writeFenced(ctx, dbc, r); err != nil {
			if !t.d.dataError(err) {
				return err
			}
			r.out, r.err = outFailed, err
		}
	}
	for len(todo) > 0 {
		// An UPDATE binds up to five values per row where the dialect binds
		// strings as parameters.
		n := min(len(todo), cursorsPerStatement, t.d.maxParams()/5)
		if err := t.writeChunk(ctx, dbc, todo[:n]); err != nil {
			return err
		}
		todo = todo[n:]
	}
	return nil
}

// writeChunk writes rows. A statement that the database refuses for its
// data is retried on each half of the rows, down to the row that it
// refuses, so that one bad row never holds back the others. It returns
// other errors.
func (t *CursorsTable) writeChunk(ctx context.Context, dbc DBC, rows []*flushRow) error {
	err := t.writeRows(ctx, dbc, rows)
	if err == nil || !t.d.dataError(err) {
		return err
	}
	if len(rows) == 1 {
		rows[0].out, rows[0].err = outFailed, err
		return nil
	}
	for _, r := range rows {
		r.out = outPending
	}
	mid := len(rows) / 2
	if err := t.writeChunk(ctx, dbc, rows[:mid]); err != nil {
		return err
	}
	return t.writeChunk(ctx, dbc, rows[mid:])
}

// writeRows writes rows: those known stored with an UPDATE conditioned on
// the stored cursor being the one the table knows (or, if unknown, less
// than the new one), those known absent with an INSERT that leaves
// existing rows alone. Rows for which that did not go as expected are read
// back when the table knew their row (to tell another writer's changes
// from a race), and the unknown ones upserted.
func (t *CursorsTable) writeRows(ctx context.Context, dbc DBC, rows []*flushRow) error {
	upd := make([]*flushRow, 0, len(rows))
	var abs, check []*flushRow
	for _, r := range rows {
		if r.state == stateAbsent {
			abs = append(abs, r)
		} else {
			upd = append(upd, r)
		}
	}
	if len(upd) > 0 {
		n, err := t.update(ctx, dbc, upd)
		if err != nil {
			return err
		}
		if n == len(upd) {
			setOut(upd, outWritten)
		} else {
			check = append(check, upd...)
		}
	}
	if len(abs) > 0 {
		n, err := t.insert(ctx, dbc, abs, false)
		if err != nil {
			return err
		}
		if n == len(abs) {
			setOut(abs, outWritten)
		} else {
			check = append(check, abs...)
		}
	}
	if len(check) == 0 {
		return nil
	}

	ins := check
	if slices.ContainsFunc(check, func(r *flushRow) bool { return r.state != stateUnknown }) {
		stored, err := t.readRows(ctx, dbc, check)
		if err != nil {
			return err
		}
		ins = ins[:0:0]
		for _, r := range check {
			r.read, r.found = stored[r.e.name]
			switch v, ok := t.parseStored(r.read.String); {
			case r.found && ok && v == r.v:
				r.out = outWritten
			case r.state == stateUnknown && r.found && ok && t.less(r.v, v):
				r.out = outSkipped
			case r.state == stateUnknown:
				ins = append(ins, r)
			case r.state == stateKnown && r.found && ok && v == r.stored:
				r.out = outRetry // changed and changed back meanwhile
			case r.state == stateAbsent && !r.found:
				r.out = outRetry // inserted and deleted meanwhile
			default:
				r.out = outConflict
			}
		}
	}
	if len(ins) > 0 {
		if _, err := t.insert(ctx, dbc, ins, true); err != nil {
			return err
		}
		setOut(ins, outUpserted)
	}
	return nil
}

func setOut(rows []*flushRow, out rowOutcome) {
	for _, r := range rows {
		r.out = out
	}
}

// update runs the UPDATE of writeRows and returns the rows it changed.
func (t *CursorsTable) update(ctx context.Context, dbc DBC, rows []*flushRow) (int, error) {
	numeric := !t.cfg.strings
	q := t.stmt()
	var rhs cursorVal
	rhsFunc := func() { t.cursorVal(q, rhs) }
	cond := func(r *flushRow) {
		if r.state == stateKnown {
			rhs = r.stored
			t.d.cursorCmp(q, t.curCol, "=", numeric, rhsFunc)
		} else {
			rhs = r.v
			t.d.cursorCmp(q, t.curCol, "<", numeric, rhsFunc)
		}
	}
	q.sql("UPDATE ", t.table, " SET ", t.curCol, " = ")
	if len(rows) == 1 {
		r := rows[0]
		t.cursorVal(q, r.v)
		q.sql(", ", t.timeCol, " = ", t.d.now(), " WHERE ", t.idCol, " = ")
		q.val(r.e.name)
		q.sql(" AND ")
		cond(r)
	} else {
		q.sql("CASE ", t.idCol)
		for _, r := range rows {
			q.sql(" WHEN ")
			q.val(r.e.name)
			q.sql(" THEN ")
			t.cursorVal(q, r.v)
		}
		q.sql(" END, ", t.timeCol, " = ", t.d.now(), " WHERE ")
		t.inNames(q, rows)
		q.sql(" AND CASE ", t.idCol)
		for _, r := range rows {
			q.sql(" WHEN ")
			q.val(r.e.name)
			q.sql(" THEN ")
			cond(r)
		}
		q.sql(" END")
	}
	res, err := dbc.ExecContext(ctx, q.String(), q.args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// cursorVal writes c as the value to store: an int64 literal for int
// tables (so that even a varchar column compares numerically), written
// without allocating, or the string for string tables.
func (t *CursorsTable) cursorVal(q *sqlStmt, c cursorVal) {
	if !c.isInt {
		q.val(c.s)
		return
	}
	var buf [20]byte
	q.b.Write(strconv.AppendInt(buf[:0], c.n, 10))
}

// insert runs an INSERT of rows that leaves existing rows alone, or, if
// update, moves their cursors forward. It returns the rows it inserted
// (and changed, if update).
func (t *CursorsTable) insert(ctx context.Context, dbc DBC, rows []*flushRow, update bool) (int, error) {
	crs := make([]cursorRow, len(rows))
	for i, r := range rows {
		crs[i] = cursorRow{name: r.e.name, cursor: t.arg(r.v)}
	}
	q := t.stmt()
	insertCursors(q, t.table, t.idCol, t.curCol, t.timeCol, crs, !t.cfg.strings, update)
	res, err := dbc.ExecContext(ctx, q.String(), q.args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// readRows reads the stored cursors of rows, by consumer name.
func (t *CursorsTable) readRows(ctx context.Context, dbc DBC, rows []*flushRow) (map[string]sql.NullString, error) {
	q := t.stmt()
	q.sql("SELECT ", t.idCol, ", ", t.curCol, " FROM ", t.table, " WHERE ")
	t.inNames(q, rows)
	rs, err := dbc.QueryContext(ctx, q.String(), q.args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	stored := make(map[string]sql.NullString, len(rows))
	for rs.Next() {
		var (
			name string
			cur  sql.NullString
		)
		if err := rs.Scan(&name, &cur); err != nil {
			return nil, err
		}
		stored[name] = cur
	}
	return stored, rs.Err()
}

// inNames writes a condition true for the rows of the consumers of rows.
func (t *CursorsTable) inNames(q *sqlStmt, rows []*flushRow) {
	if len(rows) == 1 {
		q.sql(t.idCol, " = ")
		q.val(rows[0].e.name)
		return
	}
	q.sql(t.idCol, " IN (")
	for i, r := range rows {
		if i > 0 {
			q.sql(", ")
		}
		q.val(r.e.name)
	}
	q.sql(")")
}

// settle applies the outcomes of a flush to the entries: it records what
// the table now knows of each row, buffers again the cursors to retry,
// counts the written ones, and returns the errors of the rows that failed
// for good (also kept for their consumers' next SetCursor).
func (t *CursorsTable) settle(rows []flushRow) []error {
	var (
		errs    []error
		written int
		lost    []*fence
	)
	t.mu.Lock()
	for i := range rows {
		r := &rows[i]
		e := r.e
		switch r.out {
		case outWritten:
			e.state, e.stored = stateKnown, r.v
			written++
		case outUpserted:
			if r.state == stateAbsent {
				e.state, e.stored = stateKnown, r.v
			}
			written++
		case outSkipped:
			e.state, e.stored = stateKnown, t.mustParseStored(r.read.String)
			written++
		case outConflict:
			what := "no row"
			if r.state == stateKnown {
				what = bounded.Quote(r.stored.s)
			}
			got := "no row"
			if r.found {
				got = bounded.Quote(r.read.String)
			}
			err := fmt.Errorf("rsql: flush cursor %s of consumer %s in table %s: %w: the stored cursor is %s, but this table last read or wrote %s",
				bounded.Quote(r.v.s), bounded.Quote(e.name), t.name, ErrConcurrentWriter, got, what)
			e.err, e.errFence, e.dirty = err, nil, false
			e.state = stateAbsent
			if v, ok := t.parseStored(r.read.String); r.found && ok {
				e.state, e.stored = stateKnown, v
			} else if r.found {
				e.state = stateUnknown
			}
			errs = append(errs, err)
			t.conflicts()
		case outFailed:
			err := fmt.Errorf("rsql: flush cursor %s of consumer %s in table %s: %w", bounded.Quote(r.v.s), bounded.Quote(e.name), t.name, r.err)
			e.err, e.errFence, e.dirty = err, nil, false
			errs = append(errs, err)
		case outLeaseLost:
			err := fmt.Errorf("rsql: flush cursor %s of consumer %s in table %s: %w: %s is no longer held",
				bounded.Quote(r.v.s), bounded.Quote(e.name), t.name, ErrLeaseLost, r.fence)
			if e.dirty && e.fence != r.fence {
				break // a holder of a later lease set a cursor meanwhile
			}
			e.err, e.errFence, e.dirty = err, r.fence, false
			errs = append(errs, err)
			lost = append(lost, r.fence)
		default: // outRetry, outPending
			switch {
			case !e.dirty:
				e.pending, e.fence, e.dirty = r.v, r.fence, true
				t.dirty = append(t.dirty, e)
			case t.less(e.pending, r.v):
				// The kept cursor beats a lower one set meanwhile.
				e.pending, e.fence = r.v, r.fence
			}
		}
	}
	t.mu.Unlock()
	for _, f := range lost {
		if f.lost != nil {
			f.lost()
		}
	}
	if t.counter != nil {
		for range written {
			t.counter()
		}
	}
	return errs
}

// mustParseStored is parseStored for a value already parsed successfully.
func (t *CursorsTable) mustParseStored(s string) cursorVal {
	v, _ := t.parseStored(s)
	return v
}
