package rsql

import (
	"context"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
)

// Cursor writes fenced by a lease (LeaseStore.FenceCursorStore): each is
// one statement that writes the cursor row only while the lease row still
// holds the writer's owner and epoch and has not expired, and locks the
// lease row so that a claim (which increments the epoch) either commits
// before the write, which then changes nothing, or waits for the write's
// transaction to end. A writer that lost its lease can therefore never
// move a cursor, however late its write arrives (a paused process, a
// delayed asynchronous flush).

// cursorCols returns the quoted names of the table and its columns.
func (t *CursorsTable) cursorCols() cursorCols {
	return cursorCols{table: t.table, id: t.idCol, cur: t.curCol, time: t.timeCol}
}

// fencedExec runs the fenced UPDATE (with the condition op ("<" or "=")
// against rhs on the stored cursor) or, if insert, the fenced INSERT of r,
// and returns the rows it changed.
func (t *CursorsTable) fencedExec(ctx context.Context, dbc DBC, r *flushRow, insert bool, op string, rhs cursorVal) (int64, error) {
	q := t.stmt()
	val := func() { t.cursorVal(q, r.v) }
	if insert {
		t.d.fencedInsert(q, t.cursorCols(), r.fence, r.e.name, val)
	} else {
		t.d.fencedUpdate(q, t.cursorCols(), r.fence, r.e.name, val, func(col string) {
			t.d.cursorCmp(q, col, op, !t.cfg.strings, func() { t.cursorVal(q, rhs) })
		})
	}
	res, err := dbc.ExecContext(ctx, q.String(), q.args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// writeFenced writes the cursor of r under its fence and sets r.out: a row
// the table knows stored is updated only over the cursor it knows, one it
// knows absent is inserted, one it does not know is updated if its cursor
// is less or else inserted. When nothing changed it reads the lease
// (outLeaseLost if it is no longer held) and the row, to tell a race
// from another writer (outConflict) or a greater stored cursor
// (outSkipped). It returns the error that stopped it (the row is then to
// be retried).
func (t *CursorsTable) writeFenced(ctx context.Context, dbc DBC, r *flushRow) error {
	var (
		n   int64
		err error
	)
	switch r.state {
	case stateKnown:
		n, err = t.fencedExec(ctx, dbc, r, false, "=", r.stored)
	case stateAbsent:
		n, err = t.fencedExec(ctx, dbc, r, true, "", cursorVal{})
	default:
		n, err = t.fencedExec(ctx, dbc, r, false, "<", r.v)
		if err == nil && n == 0 {
			n, err = t.fencedExec(ctx, dbc, r, true, "", cursorVal{})
		}
	}
	if err != nil {
		return err
	}
	if n > 0 {
		r.out = outWritten
		return nil
	}
	held, err := r.fence.held(ctx, dbc)
	if err != nil {
		return err
	}
	if !held {
		r.out = outLeaseLost
		return nil
	}
	stored, err := t.readRows(ctx, dbc, []*flushRow{r})
	if err != nil {
		return err
	}
	r.read, r.found = stored[r.e.name]
	v, ok := t.parseStored(r.read.String)
	switch {
	case r.found && ok && v == r.v:
		r.out = outWritten
	case r.state == stateUnknown && r.found && ok && t.less(r.v, v):
		r.out = outSkipped
	case r.state == stateKnown && r.found && ok && v == r.stored,
		r.state == stateAbsent && !r.found,
		r.state == stateUnknown:
		r.out = outRetry // changed and changed back, or a race: write again
	default:
		r.out = outConflict
	}
	return nil
}

// writeSyncFenced is the synchronous SetCursor fenced by f.
func (t *CursorsTable) writeSyncFenced(ctx context.Context, dbc DBC, name string, c cursorVal, f *fence) error {
	r := &flushRow{e: &cursorEntry{name: name}, v: c, state: stateUnknown, fence: f}
	err := t.writeFenced(ctx, dbc, r)
	if err != nil {
		return fmt.Errorf("rsql: set cursor of consumer %s to %s in table %s: %w", bounded.Quote(name), bounded.Quote(c.s), t.name, err)
	}
	switch r.out {
	case outWritten:
		if t.counter != nil {
			t.counter()
		}
		return nil
	case outLeaseLost:
		return f.lostErr(t.name, name, c.s)
	}
	return t.conflict(ctx, dbc, name, c.s)
}
