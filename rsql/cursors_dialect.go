package rsql

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// cursorsDialect is the SQL of cursors and consumer-errors tables (the
// tables keyed by consumer name) that differs between engines, embedded in
// dialect.
type cursorsDialect interface {
	// cursorCmp writes a condition comparing the stored cursor in column
	// col with the expression rhs writes, with op "<" or "=": as int64
	// values if numeric (whatever the column type), else as byte strings
	// (whatever the column's collation).
	cursorCmp(s *sqlStmt, col, op string, numeric bool, rhs func())
	// onCursorConflict writes the clause that ends an INSERT of cursor
	// rows into table (see insertCursors) and says what to do with a row
	// whose consumer exists: if update, set its cursor and time from the
	// inserted row only if its stored cursor is strictly less (never
	// moving a cursor back); else leave it as it is. Either way the
	// statement does not fail on a duplicate consumer, and its affected
	// rows count the inserted rows (plus changed ones if update).
	onCursorConflict(s *sqlStmt, table, idCol, curCol, timeCol string, numeric, update bool)
	// errorInsert writes a statement inserting one consumer-error row with
	// both times set to now that, on a duplicate (consumer, event id),
	// does not fail but yields the existing row's id.
	errorInsert(s *sqlStmt, c errorCols, consumer string, eventID int64, msg string, status int)
	// execInsertID runs an errorInsert statement and returns the row id.
	execInsertID(ctx context.Context, dbc DBC, s *sqlStmt) (int64, error)

	// keyCollation reports how the engine compares the values of column
	// col (unquoted) of table (unquoted), c as read from the catalog: folds
	// describes why two different names could compare equal ("" if they
	// cannot, beyond trailing spaces), pads whether trailing spaces are
	// ignored.
	keyCollation(ctx context.Context, dbc DBC, table, col string, c column) (folds string, pads bool, err error)
	// binaryKeyHint says how to make a key column compare bytes.
	binaryKeyHint() string
	// dataError reports whether err is the engine refusing the data of a
	// statement (a value too long or out of range, a constraint), which a
	// statement without the offending row may not meet, as opposed to a
	// failed connection, a timeout or a lock conflict.
	dataError(err error) bool
}

// cursorRow is one row of a cursors flush.
type cursorRow struct {
	name   string
	cursor any
}

// insertCursors writes an INSERT of rows of (consumer, cursor) with the
// time column set to now, ended by d's onCursorConflict clause.
func insertCursors(s *sqlStmt, table, idCol, curCol, timeCol string, rows []cursorRow, numeric, update bool) {
	s.sql("INSERT INTO ", table, " (", idCol, ", ", curCol, ", ", timeCol, ") VALUES ")
	now := s.d.now()
	for i, r := range rows {
		if i > 0 {
			s.sql(", ")
		}
		s.sql("(")
		s.val(r.name)
		s.sql(", ")
		s.val(r.cursor)
		s.sql(", ", now, ")")
	}
	s.d.onCursorConflict(s, table, idCol, curCol, timeCol, numeric, update)
}

// errorCols are the quoted names of an errors table and its columns.
type errorCols struct {
	table, id, consumer, eventID, msg, created, updated, status string
}

var (
	_ cursorsDialect = mysqlDialect{}
	_ cursorsDialect = sqliteDialect{}
	_ cursorsDialect = pgDialect{}
)

func (mysqlDialect) cursorCmp(s *sqlStmt, col, op string, numeric bool, rhs func()) {
	// A varchar column compared with an integer compares as doubles,
	// exact only up to 2^53: cast explicitly (a no-op on bigint columns).
	// Strings compare as binary strings, as Go compares them.
	if numeric {
		s.sql("CAST(", col, " AS SIGNED) ", op, " ")
		rhs()
		return
	}
	s.sql("CAST(", col, " AS BINARY) ", op, " CAST(")
	rhs()
	s.sql(" AS BINARY)")
}

func (mysqlDialect) onCursorConflict(s *sqlStmt, _, idCol, curCol, timeCol string, numeric, update bool) {
	if !update {
		// Not INSERT IGNORE, which would also turn a value that does not
		// fit into a warning.
		s.sql(" ON DUPLICATE KEY UPDATE ", idCol, " = ", idCol)
		return
	}
	less := "CAST(" + curCol + " AS BINARY) < CAST(VALUES(" + curCol + ") AS BINARY)"
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

// keyCollation reads the collation from the catalog (c): binary string
// columns and _bin collations compare bytes; every collation pads with
// spaces except binary strings, MariaDB's nopad ones and MySQL 8's _0900_
// ones.
func (mysqlDialect) keyCollation(_ context.Context, _ DBC, _, _ string, c column) (string, bool, error) {
	coll := strings.ToLower(c.collation)
	switch {
	case coll == "" || coll == "binary":
		return "", false, nil
	case !strings.HasSuffix(coll, "_bin"):
		return "has collation " + c.collation + ", which compares names without regard to case or accents", false, nil
	}
	return "", !strings.Contains(coll, "nopad") && !strings.Contains(coll, "_0900_"), nil
}

func (mysqlDialect) binaryKeyHint() string {
	return "for example ALTER TABLE ... MODIFY ... VARBINARY(255) NOT NULL, as the shipped DDL declares it"
}

// mysqlDataErrors are the MySQL and MariaDB errors about a statement's
// values.
var mysqlDataErrors = map[uint16]bool{
	1048: true, // ER_BAD_NULL_ERROR
	1264: true, // ER_WARN_DATA_OUT_OF_RANGE
	1292: true, // ER_TRUNCATED_WRONG_VALUE
	1366: true, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
	1406: true, // ER_DATA_TOO_LONG
	1451: true, // ER_ROW_IS_REFERENCED_2
	1452: true, // ER_NO_REFERENCED_ROW_2
	1644: true, // ER_SIGNAL_EXCEPTION (a trigger)
	3819: true, // ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
	4025: true, // ER_CONSTRAINT_FAILED (MariaDB)
}

func (mysqlDialect) dataError(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && mysqlDataErrors[me.Number]
}

func (sqliteDialect) cursorCmp(s *sqlStmt, col, op string, numeric bool, rhs func()) {
	// A text column would compare an integer as text: cast explicitly.
	if numeric {
		s.sql("CAST(", col, " AS INTEGER) ", op, " ")
	} else {
		s.sql(col, " COLLATE BINARY ", op, " ")
	}
	rhs()
}

func (sqliteDialect) onCursorConflict(s *sqlStmt, _, idCol, curCol, timeCol string, numeric, update bool) {
	if !update {
		s.sql(" ON CONFLICT (", idCol, ") DO NOTHING")
		return
	}
	less := curCol + " COLLATE BINARY < excluded." + curCol
	if numeric {
		less = "CAST(" + curCol + " AS INTEGER) < CAST(excluded." + curCol + " AS INTEGER)"
	}
	s.sql(" ON CONFLICT (", idCol, ") DO UPDATE SET ",
		curCol, " = excluded.", curCol, ", ", timeCol, " = excluded.", timeCol, " WHERE ", less)
}

func (d sqliteDialect) errorInsert(s *sqlStmt, c errorCols, consumer string, eventID int64, msg string, status int) {
	upsertError(s, c, d.now(), consumer, eventID, msg, status, c.id)
}

// upsertError writes the errorInsert of the dialects with INSERT ... ON
// CONFLICT: a duplicate (consumer, event) keeps its row, whose id the
// statement returns; existingID is the id column of the existing row in
// the dialect's DO UPDATE SET.
func upsertError(s *sqlStmt, c errorCols, now, consumer string, eventID int64, msg string, status int, existingID string) {
	s.sql("INSERT INTO ", c.table, " (", c.consumer, ", ", c.eventID, ", ", c.msg, ", ",
		c.created, ", ", c.updated, ", ", c.status, ") VALUES (")
	s.val(consumer)
	s.sql(", ")
	s.val(eventID)
	s.sql(", ")
	s.val(msg)
	s.sql(", ", now, ", ", now, ", ")
	s.val(status)
	s.sql(") ON CONFLICT (", c.consumer, ", ", c.eventID, ") DO UPDATE SET ", c.id, " = ", existingID,
		" RETURNING ", c.id)
}

func (sqliteDialect) execInsertID(ctx context.Context, dbc DBC, s *sqlStmt) (int64, error) {
	var id int64
	err := dbc.QueryRowContext(ctx, s.String(), s.args...).Scan(&id)
	return id, err
}

// keyCollation reads the collations of col in the table's unique indexes
// (a PRIMARY KEY or UNIQUE column has one, with the column's collation
// unless the index says otherwise): any but BINARY folds names (NOCASE
// folds case, RTRIM trailing spaces).
func (sqliteDialect) keyCollation(ctx context.Context, dbc DBC, table, col string, _ column) (string, bool, error) {
	schema, name := "main", table
	if i := strings.IndexByte(table, '.'); i >= 0 {
		schema, name = table[:i], table[i+1:]
	}
	rows, err := dbc.QueryContext(ctx, `SELECT x.coll FROM pragma_index_list(?, ?) AS l, pragma_index_xinfo(l.name, ?) AS x `+
		`WHERE l."unique" AND x.key AND x.name = ? COLLATE NOCASE`, name, schema, schema, col)
	if err != nil {
		return "", false, err
	}
	defer rows.Close()
	var folds string
	for rows.Next() {
		var coll string
		if err := rows.Scan(&coll); err != nil {
			return "", false, err
		}
		if !strings.EqualFold(coll, "BINARY") && folds == "" {
			folds = fmt.Sprintf("has collation %s in a unique index, which folds names", coll)
		}
	}
	return folds, false, rows.Err()
}

func (sqliteDialect) binaryKeyHint() string {
	return "declare it without a COLLATE clause (SQLite's default, BINARY) and copy the rows into the new table"
}

// SQLite primary result codes about a statement's values.
const (
	sqliteTooBig     = 18
	sqliteConstraint = 19
	sqliteMismatch   = 20
)

func (sqliteDialect) dataError(err error) bool {
	var ce interface{ Code() int }
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code() & 0xff {
	case sqliteTooBig, sqliteConstraint, sqliteMismatch:
		return true
	}
	return false
}
