package rsql

import (
	"context"
)

// cursorsDialect is the SQL of cursors and errors tables that differs
// between engines, embedded in dialect.
type cursorsDialect interface {
	// cursorLess writes a condition true when the stored cursor in column
	// col is strictly less than the expression rhs writes (int64 values if
	// numeric, else strings); numeric compares as integers whatever the
	// column type.
	cursorLess(s *sqlStmt, col string, numeric bool, rhs func())
	// upsertCursors writes one statement storing rows of (consumer,
	// cursor) with the time column set to now: it inserts missing rows and
	// updates a row only if its stored cursor is strictly less (never
	// moving a cursor back). Cursors are int64 if numeric, else strings.
	upsertCursors(s *sqlStmt, table, idCol, curCol, timeCol string, rows []cursorRow, numeric bool)
	// errorInsert writes a statement inserting one consumer-error row with
	// both times set to now that, on a duplicate (consumer, event id),
	// does not fail but yields the existing row's id.
	errorInsert(s *sqlStmt, c errorCols, consumer string, eventID int64, msg string, status int)
	// execInsertID runs an errorInsert statement and returns the row id.
	execInsertID(ctx context.Context, dbc DBC, s *sqlStmt) (int64, error)
}

// cursorRow is one row of a cursors flush.
type cursorRow struct {
	name   string
	cursor any
}

// errorCols are the quoted names of an errors table and its columns.
type errorCols struct {
	table, id, consumer, eventID, msg, created, updated, status string
}

var (
	_ cursorsDialect = mysqlDialect{}
	_ cursorsDialect = sqliteDialect{}
)

func (mysqlDialect) cursorLess(s *sqlStmt, col string, numeric bool, rhs func()) {
	// A varchar column compared with an integer compares as doubles,
	// exact only up to 2^53: cast explicitly (a no-op on bigint columns).
	if numeric {
		s.sql("CAST(", col, " AS SIGNED) < ")
	} else {
		s.sql(col, " < ")
	}
	rhs()
}

func (mysqlDialect) upsertCursors(s *sqlStmt, table, idCol, curCol, timeCol string, rows []cursorRow, numeric bool) {
	s.sql("INSERT INTO ", table, " (", idCol, ", ", curCol, ", ", timeCol, ") VALUES ")
	for i, r := range rows {
		if i > 0 {
			s.sql(", ")
		}
		s.sql("(")
		s.val(r.name)
		s.sql(", ")
		s.val(r.cursor)
		s.sql(", now(6))")
	}
	less := curCol + " < VALUES(" + curCol + ")"
	if numeric {
		less = "CAST(" + curCol + " AS SIGNED) < CAST(VALUES(" + curCol + ") AS SIGNED)"
	}
	// Assignments run left to right and see earlier ones: set the time
	// while the cursor still holds the stored value.
	s.sql(" ON DUPLICATE KEY UPDATE ",
		timeCol, " = IF(", less, ", VALUES(", timeCol, "), ", timeCol, "), ",
		curCol, " = IF(", less, ", VALUES(", curCol, "), ", curCol, ")")
}

func (mysqlDialect) errorInsert(s *sqlStmt, c errorCols, consumer string, eventID int64, msg string, status int) {
	s.sql("INSERT INTO ", c.table, " (", c.consumer, ", ", c.eventID, ", ", c.msg, ", ",
		c.created, ", ", c.updated, ", ", c.status, ") VALUES (")
	s.val(consumer)
	s.sql(", ")
	s.val(eventID)
	s.sql(", ")
	s.val(msg)
	s.sql(", now(6), now(6), ")
	s.val(status)
	s.sql(") ON DUPLICATE KEY UPDATE ", c.id, " = LAST_INSERT_ID(", c.id, ")")
}

func (mysqlDialect) execInsertID(ctx context.Context, dbc DBC, s *sqlStmt) (int64, error) {
	res, err := dbc.ExecContext(ctx, s.String(), s.args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (sqliteDialect) cursorLess(s *sqlStmt, col string, numeric bool, rhs func()) {
	// A text column would compare an integer as text: cast explicitly.
	if numeric {
		s.sql("CAST(", col, " AS INTEGER) < ")
	} else {
		s.sql(col, " < ")
	}
	rhs()
}

func (d sqliteDialect) upsertCursors(s *sqlStmt, table, idCol, curCol, timeCol string, rows []cursorRow, numeric bool) {
	s.sql("INSERT INTO ", table, " (", idCol, ", ", curCol, ", ", timeCol, ") VALUES ")
	for i, r := range rows {
		if i > 0 {
			s.sql(", ")
		}
		s.sql("(")
		s.val(r.name)
		s.sql(", ")
		s.val(r.cursor)
		s.sql(", ", d.now(), ")")
	}
	less := curCol + " < excluded." + curCol
	if numeric {
		less = "CAST(" + curCol + " AS INTEGER) < CAST(excluded." + curCol + " AS INTEGER)"
	}
	s.sql(" ON CONFLICT (", idCol, ") DO UPDATE SET ",
		curCol, " = excluded.", curCol, ", ", timeCol, " = excluded.", timeCol, " WHERE ", less)
}

func (d sqliteDialect) errorInsert(s *sqlStmt, c errorCols, consumer string, eventID int64, msg string, status int) {
	s.sql("INSERT INTO ", c.table, " (", c.consumer, ", ", c.eventID, ", ", c.msg, ", ",
		c.created, ", ", c.updated, ", ", c.status, ") VALUES (")
	s.val(consumer)
	s.sql(", ")
	s.val(eventID)
	s.sql(", ")
	s.val(msg)
	s.sql(", ", d.now(), ", ", d.now(), ", ")
	s.val(status)
	s.sql(") ON CONFLICT (", c.consumer, ", ", c.eventID, ") DO UPDATE SET ", c.id, " = ", c.id,
		" RETURNING ", c.id)
}

func (sqliteDialect) execInsertID(ctx context.Context, dbc DBC, s *sqlStmt) (int64, error) {
	var id int64
	err := dbc.QueryRowContext(ctx, s.String(), s.args...).Scan(&id)
	return id, err
}
