package rsql

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgDialect is the dialect of PostgreSQL through pgx's database/sql
// driver. Values are bound as parameters ($1, $2, ...): pgx prepares each
// statement text once per connection and caches it, so a statement with
// literals would fill the cache with texts used once.
//
// Times are statement_timestamp(), the start of the current statement,
// like MySQL's now(6): now() would be the start of the transaction, which
// a lease check in a long transaction must not use.
type pgDialect struct{}

func (pgDialect) name() string { return "postgres" }

// quote double-quotes each part: PostgreSQL keeps the case of quoted
// names, so a table created without quotes (folded to lower case) must be
// named in lower case.
func (pgDialect) quote(ident string) string {
	parts := strings.Split(unquote(ident), ".")
	for i, p := range parts {
		parts[i] = `"` + p + `"`
	}
	return strings.Join(parts, ".")
}

// SQLSTATE codes of PostgreSQL errors.
const (
	pgUniqueViolation  = "23505"
	pgLockNotAvailable = "55P03" // lock_timeout
	pgDeadlock         = "40P01"
	pgRaiseException   = "P0001" // RAISE in a trigger
)

// pgCode returns the SQLSTATE of a PostgreSQL error, "" for other errors.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func (pgDialect) isDuplicateKey(err error) bool { return pgCode(err) == pgUniqueViolation }

func (pgDialect) placeholder(n int) string { return "$" + strconv.Itoa(n) }

func (pgDialect) now() string { return "statement_timestamp()" }

func (pgDialect) olderThan(s *sqlStmt, col string) {
	s.sql(col, " < statement_timestamp() - CAST(")
	s.arg()
	s.sql(" AS bigint) * interval '1 microsecond'")
}

// maxParams is the protocol's limit of parameters per statement.
func (pgDialect) maxParams() int { return 65535 }

// uncommittedTx is nil: PostgreSQL reads uncommitted as read committed.
// The filler and the first load tell IDs being written from absent ones
// otherwise (events_postgres.go).
func (pgDialect) uncommittedTx() *sql.TxOptions { return nil }

func (pgDialect) literal(any) (string, bool) { return "", false }

// columns reads the columns of table from pg_catalog, with the limits of
// varchar, char and integer columns and the cache of a column's sequence.
// PostgreSQL refuses a value that does not fit its column itself (an
// error, never a cut value); the limits give the same ErrInvalidValue as
// on MySQL before anything is sent.
func (d pgDialect) columns(ctx context.Context, dbc DBC, table string) (map[string]column, error) {
	rows, err := dbc.QueryContext(ctx, `SELECT a.attname, t.typname, a.atttypmod, `+
		`COALESCE((SELECT s.seqcache FROM pg_sequence s `+
		`WHERE s.seqrelid = pg_get_serial_sequence(a.attrelid::regclass::text, a.attname)::regclass), 0), `+
		`COALESCE((SELECT string_agg(ic.relname, chr(1)) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid `+
		`WHERE x.indrelid = a.attrelid AND x.indisunique AND x.indnkeyatts = 1 AND x.indkey[0] = a.attnum), '') `+
		`FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid `+
		`WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, d.quote(table))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := make(map[string]column)
	for rows.Next() {
		var (
			name, typ, keys string
			mod             int32
			c               column
		)
		if err := rows.Scan(&name, &typ, &mod, &c.seqCache, &keys); err != nil {
			return nil, err
		}
		if keys != "" {
			c.keys = strings.Split(keys, "\x01")
		}
		switch typ {
		case "varchar", "bpchar":
			if mod > 4 {
				c.chars = int(mod - 4) // typmod is the length plus the header
			}
			if typ == "bpchar" {
				c.collation = "bpchar" // pads with spaces (see keyCollation)
			}
			fallthrough
		case "text":
			c.text, c.noNUL = true, true
		case "int2":
			c.integer, c.intMin, c.intMax = true, math.MinInt16, math.MaxInt16
		case "int4":
			c.integer, c.intMin, c.intMax = true, math.MinInt32, math.MaxInt32
		case "int8":
			c.integer, c.intMin, c.intMax = true, math.MinInt64, math.MaxInt64
		}
		cols[strings.ToLower(name)] = c
	}
	return cols, rows.Err()
}

func (pgDialect) cursorCmp(s *sqlStmt, col, op string, numeric bool, rhs func()) {
	if numeric {
		s.sql("CAST(", col, " AS bigint) ", op, " ")
		rhs()
		return
	}
	// An explicit collation on one side decides the comparison's: "C"
	// compares bytes, whatever the column's.
	s.sql(col, ` COLLATE "C" `, op, " ")
	rhs()
}

func (pgDialect) onCursorConflict(s *sqlStmt, table, idCol, curCol, timeCol string, numeric, update bool) {
	if !update {
		s.sql(" ON CONFLICT (", idCol, ") DO NOTHING")
		return
	}
	// The stored row's columns are named by the table (a bare name would
	// be ambiguous with the excluded row's).
	less := table + "." + curCol + ` COLLATE "C" < excluded.` + curCol
	if numeric {
		less = "CAST(" + table + "." + curCol + " AS bigint) < CAST(excluded." + curCol + " AS bigint)"
	}
	s.sql(" ON CONFLICT (", idCol, ") DO UPDATE SET ",
		curCol, " = excluded.", curCol, ", ", timeCol, " = excluded.", timeCol, " WHERE ", less)
}

func (d pgDialect) errorInsert(s *sqlStmt, c errorCols, consumer string, eventID int64, msg string, status int) {
	upsertError(s, c, d.now(), consumer, eventID, msg, status, c.table+"."+c.id)
}

func (pgDialect) execInsertID(ctx context.Context, dbc DBC, s *sqlStmt) (int64, error) {
	var id int64
	err := dbc.QueryRowContext(ctx, s.String(), s.args...).Scan(&id)
	return id, err
}

// keyCollation reads the collation of the column: a nondeterministic one
// (an ICU collation created with deterministic = false) makes names that
// differ equal; every deterministic collation compares equal only the
// same bytes. A char(n) column ignores trailing spaces.
func (d pgDialect) keyCollation(ctx context.Context, dbc DBC, table, col string, c column) (string, bool, error) {
	var (
		deterministic bool
		coll          string
	)
	err := dbc.QueryRowContext(ctx, `SELECT COALESCE(co.collisdeterministic, true), COALESCE(co.collname, '') `+
		`FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation `+
		`WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`, d.quote(table), col).Scan(&deterministic, &coll)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil // read with the columns: cannot happen but for a race with DDL
	case err != nil:
		return "", false, err
	case !deterministic:
		return "has the nondeterministic collation " + coll + ", which compares names without regard to case or accents", false, nil
	}
	return "", c.collation == "bpchar", nil
}

func (pgDialect) binaryKeyHint() string {
	return `for example ALTER TABLE ... ALTER COLUMN ... TYPE varchar(255) COLLATE "C", as the shipped DDL declares it`
}

// dataError: classes 22 (data exception: too long, out of range, bad
// encoding) and 23 (integrity constraint), and RAISE in a trigger.
func (pgDialect) dataError(err error) bool {
	code := pgCode(err)
	return strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23") || code == pgRaiseException
}

func (pgDialect) leaseExpiry(s *sqlStmt, us int64) {
	s.sql("statement_timestamp() + ")
	s.val(us)
	s.sql(" * interval '1 microsecond'")
}

func (pgDialect) leaseLeft(s *sqlStmt, col string) {
	s.sql("CAST(EXTRACT(EPOCH FROM (", col, " - statement_timestamp())) * 1000000 AS bigint)")
}

// fencedUpdate joins the lease row, read FOR SHARE: a claim (an UPDATE of
// the row) waits for the end of the write's transaction, and a claim
// committed first makes the row fail the held condition when it is read
// again, so that nothing is written.
func (pgDialect) fencedUpdate(s *sqlStmt, c cursorCols, f *fence, name string, val func(), cond func(col string)) {
	s.sql("UPDATE ", c.table, " AS c SET ", c.cur, " = ")
	val()
	s.sql(", ", c.time, " = statement_timestamp() FROM (SELECT 1 FROM ", f.lt.lc.table, " AS l WHERE ")
	heldCond(s, f, "l.")
	s.sql(" FOR SHARE) AS l WHERE c.", c.id, " = ")
	s.val(name)
	s.sql(" AND ")
	cond("c." + c.cur)
}

// fencedInsert reads the lease row FOR SHARE, as fencedUpdate does.
func (pgDialect) fencedInsert(s *sqlStmt, c cursorCols, f *fence, name string, val func()) {
	s.sql("INSERT INTO ", c.table, " (", c.id, ", ", c.cur, ", ", c.time, ") SELECT ")
	s.val(name)
	s.sql(", ")
	val()
	s.sql(", statement_timestamp() FROM ", f.lt.lc.table, " AS l WHERE ")
	heldCond(s, f, "l.")
	s.sql(" FOR SHARE ON CONFLICT (", c.id, ") DO NOTHING")
}

// txIdleTimeout sets idle_in_transaction_session_timeout, after which the
// server ends a session idle in a transaction (rolling it back); RESET
// restores the value the session would have without the SET.
func (pgDialect) txIdleTimeout(d time.Duration) (string, string) {
	ms := max(d.Milliseconds(), 1)
	return "SET idle_in_transaction_session_timeout = " + strconv.FormatInt(ms, 10),
		"RESET idle_in_transaction_session_timeout"
}
