package rsql

import (
	"database/sql"
	"time"
)

// trimDialect is the SQL of trimming that differs between engines (see
// trim.go). A PostgreSQL dialect implements it with a timestamptz literal
// ('1970-01-02 00:00:00+00') and nil transaction options (PostgreSQL's
// READ COMMITTED default takes no range locks); the statements below are
// standard SQL.
type trimDialect interface {
	// trimMarkerTime is the SQL literal of the trim marker's timestamp,
	// 1970-01-02 00:00:00 UTC, in the form the engine's events schema
	// stores it. Readers recognise the marker by a timestamp before 1971,
	// whatever the session's time zone.
	trimMarkerTime() string
	// trimTx returns the options of the transaction of a trim chunk
	// (DELETE of a range, UPDATE of the marker row), nil for the default.
	trimTx() *sql.TxOptions
}

// trimMarkerBefore bounds the timestamp of the trim marker: a noop event
// (foreign ID "0", type 0) older than this is the marker. The gap filler
// writes noops with the current time, and Insert refuses noops.
var trimMarkerBefore = time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC)

func (mysqlDialect) trimMarkerTime() string { return "'1970-01-02 00:00:00'" }

// trimTx: READ COMMITTED, so that the DELETE of a range locks only the rows
// it deletes, not the gaps between them (REPEATABLE READ's next-key locks
// would also block inserts into the range, such as the gap filler's).
func (mysqlDialect) trimTx() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// trimMarkerTime is in the text form of now() (strftime '%Y-%m-%d
// %H:%M:%f'), which sorts before every other timestamp the table holds.
func (sqliteDialect) trimMarkerTime() string { return "'1970-01-02 00:00:00.000'" }

// trimTx: SQLite serialises writers; its default is the only level.
func (sqliteDialect) trimTx() *sql.TxOptions { return nil }

// trimSQL is the SQL of a Trimmer: fixed statements with their parameters
// given when they run, and the statements of a chunk built per chunk.
type trimSQL struct {
	q *eventsSQL
	// scan reads the rows with IDs at or above a parameter, in ID order,
	// at most a parameter: ID, type, foreign ID, time and 1.
	scan string
	// scanOld is scan whose last column is 1 for rows older than a number
	// of microseconds (the first parameter), else 0.
	scanOld string
	// oldest reads the ID and time of the first row after a parameter.
	oldest string
}

func newTrimSQL(q *eventsSQL) trimSQL {
	return trimSQL{q: q, scan: q.trimScanStmt(false), scanOld: q.trimScanStmt(true), oldest: q.oldestStmt()}
}

// trimScanStmt is the query of a trim chunk's rows.
func (q *eventsSQL) trimScanStmt(retention bool) string {
	s := q.stmt()
	s.sql("SELECT ", q.id, ", ", q.typ, ", ", q.foreignID, ", ", q.time, ", ")
	if retention {
		s.sql("CASE WHEN ")
		q.d.olderThan(s, q.time)
		s.sql(" THEN 1 ELSE 0 END")
	} else {
		s.sql("1")
	}
	s.sql(" FROM ", q.table, " WHERE ", q.id, " >= ")
	s.arg()
	s.sql(" ORDER BY ", q.id, " LIMIT ")
	s.arg()
	return s.String()
}

// firstRowStmt is the query of the table's first row: ID, type, foreign ID
// and time.
func (q *eventsSQL) firstRowStmt() string {
	s := q.stmt()
	s.sql("SELECT ", q.id, ", ", q.typ, ", ", q.foreignID, ", ", q.time, " FROM ", q.table, " ORDER BY ", q.id, " LIMIT 1")
	return s.String()
}

// oldestStmt is the query of the ID and time of the first row after a
// parameter.
func (q *eventsSQL) oldestStmt() string {
	s := q.stmt()
	s.sql("SELECT ", q.id, ", ", q.time, " FROM ", q.table, " WHERE ", q.id, " > ")
	s.arg()
	s.sql(" ORDER BY ", q.id, " LIMIT 1")
	return s.String()
}

// trimDelete deletes the rows with IDs in [lo, hi).
func (q *eventsSQL) trimDelete(lo, hi int64) *sqlStmt {
	s := q.stmt()
	s.sql("DELETE FROM ", q.table, " WHERE ", q.id, " >= ")
	s.val(lo)
	s.sql(" AND ", q.id, " < ")
	s.val(hi)
	return s
}

// trimMark turns the row id into the trim marker: a noop with the
// dialect's marker time, without metadata or trace.
func (q *eventsSQL) trimMark(id int64) *sqlStmt {
	s := q.stmt()
	s.sql("UPDATE ", q.table, " SET ", q.typ, " = 0, ", q.foreignID, " = ")
	s.val(noopForeignID)
	s.sql(", ", q.time, " = ", q.d.trimMarkerTime())
	if q.metadata != "" {
		s.sql(", ", q.metadata, " = NULL")
	}
	if q.trace != "" {
		s.sql(", ", q.trace, " = NULL")
	}
	s.sql(" WHERE ", q.id, " = ")
	s.val(id)
	return s
}

// trimMarkerTime is a timestamptz literal: the same instant in every
// session time zone.
func (pgDialect) trimMarkerTime() string { return "'1970-01-02 00:00:00+00'" }

// trimTx: PostgreSQL's default READ COMMITTED takes no range locks; a
// DELETE of a range locks only the rows it deletes.
func (pgDialect) trimTx() *sql.TxOptions { return nil }
