package rsql

import "cmp"

// eventsSQL is the SQL of one events table: its identifiers quoted for
// its dialect, and every statement the table runs, each written once here
// with sqlStmt.
type eventsSQL struct {
	d dialect
	// Quoted identifiers; metadata and trace are "" when the table has no
	// such column.
	table, id, time, typ, foreignID, metadata, trace string

	// Statements with a fixed text, built once by newEventsSQL.
	head    string // the maximum ID, NULL for an empty table
	load    string // prepared: rows after ?, at most ?
	loadLag string // prepared: rows after ?, older than ? µs, at most ?
	// insertHead is the start of insertRows' statements, up to VALUES.
	insertHead string
}

// newEventsSQL quotes the names of a table and its columns (validated
// already) and builds its fixed statements.
func newEventsSQL(d dialect, name string, c *eventsConfig) eventsSQL {
	q := eventsSQL{
		d:         d,
		table:     d.quote(name),
		id:        d.quote(c.idField),
		time:      d.quote(c.timeField),
		typ:       d.quote(c.typeField),
		foreignID: d.quote(c.foreignIDField),
	}
	if c.metadataField != "" {
		q.metadata = d.quote(c.metadataField)
	}
	if c.traceField != "" {
		q.trace = d.quote(c.traceField)
	}
	q.head = q.headStmt()
	q.load = q.loadStmt(false)
	q.loadLag = q.loadStmt(true)
	q.insertHead = q.insertHeadStmt()
	return q
}

func (q *eventsSQL) stmt() *sqlStmt { return &sqlStmt{d: q.d} }

// headStmt is the query of the maximum ID.
func (q *eventsSQL) headStmt() string {
	s := q.stmt()
	s.sql("SELECT MAX(", q.id, ") FROM ", q.table)
	return s.String()
}

// loadStmt is the query of the rows after an ID (parameter 1), with lag
// only those older than a number of microseconds (parameter 2), in ID
// order, at most a number (the last parameter). Its columns are those
// that loadSQL scans: ID, foreign ID, time, type, metadata, trace (NULL
// for a column the table does not have).
func (q *eventsSQL) loadStmt(lag bool) string {
	s := q.stmt()
	s.sql("SELECT ", q.id, ", ", q.foreignID, ", ", q.time, ", ", q.typ, ", ",
		cmp.Or(q.metadata, "NULL"), ", ", cmp.Or(q.trace, "NULL"),
		" FROM ", q.table, " WHERE ", q.id, " > ")
	s.arg()
	if lag {
		s.sql(" AND ")
		q.d.olderThan(s, q.time)
	}
	s.sql(" ORDER BY ", q.id, " LIMIT ")
	s.arg()
	return s.String()
}

// below is the query of one ID below id.
func (q *eventsSQL) below(id int64) *sqlStmt {
	s := q.stmt()
	s.sql("SELECT ", q.id, " FROM ", q.table, " WHERE ", q.id, " < ")
	s.val(id)
	s.sql(" LIMIT 1")
	return s
}

// idsIn is the query of the IDs in [lo, hi), ascending.
func (q *eventsSQL) idsIn(lo, hi int64) *sqlStmt {
	s := q.stmt()
	s.sql("SELECT ", q.id, " FROM ", q.table, " WHERE ", q.id, " >= ")
	s.val(lo)
	s.sql(" AND ", q.id, " < ")
	s.val(hi)
	s.sql(" ORDER BY ", q.id)
	return s
}

// maxIn is the query of the largest ID in [lo, hi), NULL if none.
func (q *eventsSQL) maxIn(lo, hi int64) *sqlStmt {
	s := q.stmt()
	s.sql("SELECT MAX(", q.id, ") FROM ", q.table, " WHERE ", q.id, " >= ")
	s.val(lo)
	s.sql(" AND ", q.id, " < ")
	s.val(hi)
	return s
}

// insertNoops inserts a noop event with each of ids.
func (q *eventsSQL) insertNoops(ids []int64) *sqlStmt {
	s := q.stmt()
	s.sql("INSERT INTO ", q.table, " (", q.id, ", ", q.foreignID, ", ", q.time, ", ", q.typ, ") VALUES ")
	for i, id := range ids {
		if i > 0 {
			s.sql(", ")
		}
		s.sql("(")
		s.val(id)
		s.sql(", ")
		s.val(noopForeignID)
		s.sql(", ", q.d.now(), ", 0)")
	}
	return s
}

// insertHeadStmt is the start of insertRows' statements.
func (q *eventsSQL) insertHeadStmt() string {
	s := q.stmt()
	s.sql("INSERT INTO ", q.table, " (", q.foreignID, ", ", q.time, ", ", q.typ)
	if q.metadata != "" {
		s.sql(", ", q.metadata)
	}
	if q.trace != "" {
		s.sql(", ", q.trace)
	}
	s.sql(") VALUES ")
	return s.String()
}

// insertRowSize is a guess of the text of one row of insertRows, to size
// its statement at once.
const insertRowSize = 64

// insertRows writes into s, empty, the INSERT statement of the first of
// events, in order, and returns how many it holds: as many as fit in
// maxInsertSQL bytes (at least one) and in the dialect's limit of
// parameters. trace is stored with every row if the table has a trace
// column.
func (q *eventsSQL) insertRows(s *sqlStmt, events []EventToInsert, trace []byte) int {
	perRow := 2
	if q.metadata != "" {
		perRow++
	}
	if q.trace != "" {
		perRow++
	}
	maxRows := q.d.maxParams() / perRow
	s.grow(len(q.insertHead) + insertRowSize*min(len(events), maxRows))
	s.sql(q.insertHead)
	n := 0
	for _, e := range events {
		if n > 0 {
			if s.size() >= maxInsertSQL || n >= maxRows {
				break
			}
			s.sql(", ")
		}
		n++
		s.sql("(")
		s.val(e.ForeignID)
		s.sql(", ", q.d.now(), ", ")
		s.val(e.Type.ReflexType())
		if q.metadata != "" {
			s.sql(", ")
			s.val(e.MetaData)
		}
		if q.trace != "" {
			s.sql(", ")
			s.val(trace)
		}
		s.sql(")")
	}
	return n
}
