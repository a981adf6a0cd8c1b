package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
)

// The statuses of consumer errors after reflex.EventErrorRecorded, stored
// in the status column of an errors table: an operator asks for a
// redrive (RequestRedrive) or discards the error (Discard), and a
// redrive that succeeds resolves it (Redrive, RedriveTx, RunRedriver).
// A redrive that fails sets the status back to reflex.EventErrorRecorded
// with the new error message.
const (
	// ErrorRedriveRequested is the status of a consumer error whose event
	// an operator asked to deliver again: the redriver of the consumer's
	// service (RunRedriver or Redrive) picks it up.
	ErrorRedriveRequested reflex.ErrorStatus = 2
	// ErrorResolved is the status of a consumer error whose event was
	// delivered again and consumed without error.
	ErrorResolved reflex.ErrorStatus = 3
	// ErrorDiscarded is the status of a consumer error that an operator
	// discarded: it is never delivered again.
	ErrorDiscarded reflex.ErrorStatus = 4
)

var (
	// ErrErrorNotFound is wrapped by the errors of RequestRedrive,
	// Discard and (with WithRedriveIDs) Redrive when a row does not
	// exist or belongs to another consumer. Nothing was changed.
	ErrErrorNotFound = errors.New("rsql: no such consumer error")

	// ErrErrorClosed is wrapped by the errors of RequestRedrive, Discard
	// and (with WithRedriveIDs) Redrive when a row is already resolved or
	// discarded. Nothing was changed.
	ErrErrorClosed = errors.New("rsql: consumer error is already resolved or discarded")
)

// ErrorStatusName returns the name of a consumer error status:
// "recorded", "redrive-requested", "resolved", "discarded", "unknown",
// or the number for other values. ParseErrorStatus is its inverse.
func ErrorStatusName(s reflex.ErrorStatus) string {
	switch s {
	case reflex.UnknownEventError:
		return "unknown"
	case reflex.EventErrorRecorded:
		return "recorded"
	case ErrorRedriveRequested:
		return "redrive-requested"
	case ErrorResolved:
		return "resolved"
	case ErrorDiscarded:
		return "discarded"
	}
	return strconv.Itoa(int(s))
}

// ParseErrorStatus returns the status named s (see ErrorStatusName, or a
// number), and false if s names none.
func ParseErrorStatus(s string) (reflex.ErrorStatus, bool) {
	for _, st := range []reflex.ErrorStatus{reflex.UnknownEventError, reflex.EventErrorRecorded, ErrorRedriveRequested, ErrorResolved, ErrorDiscarded} {
		if s == ErrorStatusName(st) {
			return st, true
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, false
	}
	return reflex.ErrorStatus(n), true
}

// open reports whether an error with status s may still be delivered
// again.
func errorOpen(s reflex.ErrorStatus) bool { return s != ErrorResolved && s != ErrorDiscarded }

// CheckSchema reads the table's columns from the catalog (once per table
// value) and returns an error wrapping ErrSchema if the table does not
// exist, lacks one of its columns or has a consumer column that folds
// names, or the database's error.
func (t *ErrorsTable) CheckSchema(ctx context.Context, dbc DBC) error {
	if isNilDBC(dbc) {
		return fmt.Errorf("rsql: errors table %s: nil DBC", t.cfg.table)
	}
	_, err := t.loadMeta(ctx, dbc)
	return err
}

// ErrorsQuery selects rows of an errors table; the zero value selects
// the first 100 rows of every consumer and status.
type ErrorsQuery struct {
	// Consumer keeps the rows of this consumer only, if not "".
	Consumer string
	// Statuses keeps the rows with one of these statuses, if not empty.
	Statuses []reflex.ErrorStatus
	// IDs keeps these rows only, if not empty.
	IDs []int64
	// AfterID keeps the rows with larger ids (for paging).
	AfterID int64
	// Limit is the most rows returned; < 1 means 100.
	Limit int
}

// defaultErrorsLimit is the number of rows ListErrors returns by default.
const defaultErrorsLimit = 100

// ListErrors returns the rows q selects, in id order, in one statement.
// Database errors are returned wrapped with the table name. It is safe
// for concurrent use.
func (t *ErrorsTable) ListErrors(ctx context.Context, dbc DBC, q ErrorsQuery) ([]reflex.ConsumerError, error) {
	if isNilDBC(dbc) {
		return nil, fmt.Errorf("rsql: list the errors of %s: nil DBC", t.cfg.table)
	}
	s := t.selectErrors()
	s.sql(" WHERE ", t.cols.id, " > ")
	s.val(q.AfterID)
	if q.Consumer != "" {
		s.sql(" AND ", t.cols.consumer, " = ")
		s.val(q.Consumer)
	}
	if len(q.Statuses) > 0 {
		s.sql(" AND ", t.cols.status, " IN (")
		for i, st := range q.Statuses {
			if i > 0 {
				s.sql(", ")
			}
			s.val(int64(st))
		}
		s.sql(")")
	}
	if len(q.IDs) > 0 {
		s.sql(" AND ", t.cols.id, " IN (")
		for i, id := range q.IDs {
			if i > 0 {
				s.sql(", ")
			}
			s.val(id)
		}
		s.sql(")")
	}
	limit := q.Limit
	if limit < 1 {
		limit = defaultErrorsLimit
	}
	s.sql(" ORDER BY ", t.cols.id, " LIMIT ")
	s.val(limit)
	out, err := t.scanErrors(ctx, dbc, s)
	if err != nil {
		return nil, fmt.Errorf("rsql: list the errors of %s: %w", t.cfg.table, err)
	}
	return out, nil
}

// selectErrors writes the SELECT of rows that scanErrors reads, without
// a WHERE clause.
func (t *ErrorsTable) selectErrors() *sqlStmt {
	c := &t.cols
	s := &sqlStmt{d: t.d}
	s.sql("SELECT ", c.id, ", ", c.consumer, ", ", c.eventID, ", ", c.msg, ", ", c.created, ", ", c.updated, ", ", c.status, " FROM ", c.table)
	return s
}

func (t *ErrorsTable) scanErrors(ctx context.Context, dbc DBC, s *sqlStmt) ([]reflex.ConsumerError, error) {
	var out []reflex.ConsumerError
	err := scanRows(ctx, dbc, s, func(rows *sql.Rows) error {
		var (
			e           reflex.ConsumerError
			id, eventID int64
			status      int64
		)
		if err := rows.Scan(&id, &e.ConsumerName, &eventID, &e.Message, &e.CreatedAt, &e.UpdatedAt, &status); err != nil {
			return err
		}
		e.ID, e.EventID, e.Status = strconv.FormatInt(id, 10), strconv.FormatInt(eventID, 10), reflex.ErrorStatus(status)
		out = append(out, e)
		return nil
	})
	return out, err
}

// RequestRedrive sets the status of the rows ids of consumer (any
// consumer if "") to ErrorRedriveRequested, for the consumer's redriver
// (RunRedriver, or Redrive in the consumer's service) to deliver their
// events again, and returns the rows as they are now. Rows already
// requested stay so. It runs one transaction of db: if a row does not
// exist or belongs to another consumer (ErrErrorNotFound), or is
// resolved or discarded (ErrErrorClosed), it changes nothing and returns
// an error naming the rows. Database errors are returned wrapped with the
// table name.
func (t *ErrorsTable) RequestRedrive(ctx context.Context, db *sql.DB, consumer string, ids ...int64) ([]reflex.ConsumerError, error) {
	rows, err := t.setStatus(ctx, db, consumer, ids, ErrorRedriveRequested)
	if err != nil {
		return nil, fmt.Errorf("rsql: request the redrive of errors %s of %s: %w", idList(ids), t.cfg.table, err)
	}
	return rows, nil
}

// Discard sets the status of the rows ids of consumer (any consumer if
// "") to ErrorDiscarded: their events are never delivered again. It
// returns the rows as they are now. Its transaction and errors are those
// of RequestRedrive.
func (t *ErrorsTable) Discard(ctx context.Context, db *sql.DB, consumer string, ids ...int64) ([]reflex.ConsumerError, error) {
	rows, err := t.setStatus(ctx, db, consumer, ids, ErrorDiscarded)
	if err != nil {
		return nil, fmt.Errorf("rsql: discard errors %s of %s: %w", idList(ids), t.cfg.table, err)
	}
	return rows, nil
}

// setStatus sets the status of open rows in one transaction, refusing
// the whole change if a row is missing, another consumer's, or closed.
func (t *ErrorsTable) setStatus(ctx context.Context, db *sql.DB, consumer string, ids []int64, to reflex.ErrorStatus) ([]reflex.ConsumerError, error) {
	if db == nil {
		return nil, errors.New("nil *sql.DB")
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no error ids given", ErrErrorNotFound)
	}
	if err := t.CheckSchema(ctx, db); err != nil {
		return nil, err
	}
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	s := t.selectErrors()
	s.sql(" WHERE ", t.cols.id, " IN (")
	t.idsIn(s, ids)
	s.sql(") ORDER BY ", t.cols.id, t.d.lockRows())
	rows, err := t.scanErrors(ctx, tx, s)
	if err != nil {
		return nil, err
	}
	found := make(map[string]reflex.ConsumerError, len(rows))
	for _, r := range rows {
		found[r.ID] = r
	}
	var missing, closed []string
	for _, id := range ids {
		r, ok := found[strconv.FormatInt(id, 10)]
		switch {
		case !ok || consumer != "" && r.ConsumerName != consumer:
			missing = append(missing, strconv.FormatInt(id, 10))
		case !errorOpen(r.Status):
			closed = append(closed, r.ID+" ("+ErrorStatusName(r.Status)+")")
		}
	}
	switch {
	case len(missing) > 0 && consumer != "":
		return nil, fmt.Errorf("%w: no error %s of consumer %s", ErrErrorNotFound, capList(missing), bounded.Quote(consumer))
	case len(missing) > 0:
		return nil, fmt.Errorf("%w: no error %s", ErrErrorNotFound, capList(missing))
	case len(closed) > 0:
		return nil, fmt.Errorf("%w: %s", ErrErrorClosed, capList(closed))
	}
	u := &sqlStmt{d: t.d}
	u.sql("UPDATE ", t.cols.table, " SET ", t.cols.status, " = ")
	u.val(int64(to))
	u.sql(", ", t.cols.updated, " = ", t.d.now(), " WHERE ", t.cols.id, " IN (")
	t.idsIn(u, ids)
	u.sql(")")
	if _, err := tx.ExecContext(ctx, u.String(), u.args...); err != nil {
		return nil, err
	}
	s = t.selectErrors()
	s.sql(" WHERE ", t.cols.id, " IN (")
	t.idsIn(s, ids)
	s.sql(") ORDER BY ", t.cols.id)
	if rows, err = t.scanErrors(ctx, tx, s); err != nil {
		return nil, err
	}
	return rows, tx.Commit()
}

// idsIn writes ids separated by commas.
func (t *ErrorsTable) idsIn(s *sqlStmt, ids []int64) {
	for i, id := range ids {
		if i > 0 {
			s.sql(", ")
		}
		s.val(id)
	}
}

// maxListed caps the ids an error message lists.
const maxListed = 10

// idList formats ids for a message, at most maxListed of them.
func idList(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return capList(s)
}

// capList joins at most maxListed items with commas, saying how many
// more there are.
func capList(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(items)-maxListed)
}
