package rsql

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The gap filler of MySQL and SQLite against the trimmer (trim.go). The
// filler checks a range, then inserts noops with the IDs it found absent.
// An ID may be absent because its row was still being written: the row
// can then commit, be archived and be trimmed (the trim marker written
// above it) between the check and the INSERT, which would leave the
// filler's noop below the marker: the table would start with a noop, not
// the marker (TrimmedThrough 0), and a stream from below would skip the
// trimmed events as noops. So the INSERT and a read of the first row
// above the IDs that is not a filler's noop run in one transaction: if
// that row is the marker, the noops are rolled back and the filler goes
// on above the marker.
//
//   - MySQL: READ COMMITTED, so that the read sees every trim committed
//     before it. A trim that commits after the read finds the noops: its
//     DELETE of a range waits on the locks of the inserted noops until the
//     filler commits, and deletes them with the range (an INSERT that
//     comes after the DELETE waits on the locks of the deleted rows, and
//     its read then sees the marker).
//   - SQLite serialises writers: the INSERT takes the write lock, so the
//     read sees every trim committed before it, and no trim commits
//     until the filler's transaction ends.
//
// The marker is recognised in Go, as the trimmer's readers do (noop type
// and foreign ID, time before trimMarkerBefore): SQLite stores times as
// text, which SQL would compare as text.

// insertNoops inserts a noop event with each of ids (ascending) in one
// transaction (fillTx); IDs written meanwhile are skipped. If a trim
// committed since the IDs were checked would leave a noop below its
// marker, it inserts nothing and returns a *fillTrimmedError.
func (t *EventsTable) insertNoops(ctx context.Context, db *sql.DB, ids []int64) error {
	tx, err := db.BeginTx(ctx, t.d.fillTx())
	if err != nil {
		return err
	}
	defer tx.Rollback()
	n, err := t.insertNoopsTx(ctx, tx, ids)
	if err != nil {
		return err
	}
	marker, err := t.markerAbove(ctx, tx, ids[0])
	switch {
	case err != nil:
		return err
	case marker != 0:
		return &fillTrimmedError{marker: marker}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	t.m.GapFilled.Add(float64(n))
	return nil
}

// fillTrimmedError is the error of insertNoops when the IDs to fill were
// trimmed: marker is the ID of the trim marker above them.
type fillTrimmedError struct {
	marker int64
}

func (e *fillTrimmedError) Error() string {
	return fmt.Sprintf("%v: the trim marker is %d", errFillTrimmed, e.marker)
}

func (e *fillTrimmedError) Unwrap() error { return errFillTrimmed }

// fillTx: the filler's INSERT (pgFill) runs at READ COMMITTED.
func (pgDialect) fillTx() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// insertNoopsTx inserts the noops of insertNoops in tx and returns how
// many it inserted: on a duplicate key, it inserts them one at a time,
// skipping the IDs written meanwhile.
func (t *EventsTable) insertNoopsTx(ctx context.Context, tx *sql.Tx, ids []int64) (int, error) {
	s := t.q.insertNoops(ids)
	_, err := tx.ExecContext(ctx, s.String(), s.args...)
	if err == nil {
		return len(ids), nil
	}
	if !t.d.isDuplicateKey(err) {
		return 0, err
	}
	n := 0
	for i := range ids {
		s := t.q.insertNoops(ids[i : i+1])
		_, err := tx.ExecContext(ctx, s.String(), s.args...)
		switch {
		case err == nil:
			n++
		case t.d.isDuplicateKey(err):
		default:
			return 0, err
		}
	}
	return n, nil
}

// markerAbove returns the ID of the first row above id that is not a gap
// filler's noop if that row is the trim marker, else 0. It reads the rows
// in pages of fillChunk: those it skips are noops just filled.
func (t *EventsTable) markerAbove(ctx context.Context, tx *sql.Tx, id int64) (int64, error) {
	scan := t.q.trimScanStmt(false)
	for {
		marker, done, next, err := firstNonFiller(ctx, tx, scan, id)
		if err != nil {
			return 0, fmt.Errorf("rsql: gap fill of %s: read the rows above %d: %w", t.name, id, err)
		}
		if done {
			return marker, nil
		}
		id = next // a page of filler noops: read on
	}
}

// firstNonFiller reads a page of the rows above id with scan (the query
// of trimScanStmt) up to the first that is not a filler's noop: it
// returns done and that row's ID as marker if it is the trim marker, done
// alone if it is an event or the page is the last one, else the ID of
// the page's last row.
func firstNonFiller(ctx context.Context, tx *sql.Tx, scan string, id int64) (marker int64, done bool, last int64, err error) {
	rows, err := tx.QueryContext(ctx, scan, id+1, fillChunk)
	if err != nil {
		return 0, false, 0, err
	}
	defer rows.Close()
	var (
		typ, one int64
		fid      sql.RawBytes
		ts       time.Time
		n        int
	)
	for rows.Next() {
		if err := rows.Scan(&last, &typ, &fid, &ts, &one); err != nil {
			return 0, false, 0, err
		}
		n++
		switch {
		case !isNoop(string(fid), int(typ)):
			return 0, true, 0, nil
		case ts.Before(trimMarkerBefore):
			return last, true, 0, nil
		}
	}
	return 0, n < fillChunk, last, rows.Err()
}
