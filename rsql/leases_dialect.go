package rsql

import (
	"strconv"
	"time"
)

// leasesDialect is the SQL of leases tables and of cursor writes fenced by
// a lease that differs between engines, embedded in dialect. Expiry is
// always computed and compared by the database's clock.
type leasesDialect interface {
	// leaseExpiry writes an expression for the current time plus us
	// microseconds, in the type of the expires_at column.
	leaseExpiry(s *sqlStmt, us int64)
	// leaseLeft writes an integer expression for the microseconds from
	// now until the time in column col (negative once passed).
	leaseLeft(s *sqlStmt, col string)
	// fencedUpdate writes an UPDATE of the cursor row of c.name that sets
	// its cursor (written by val) and its time to now, only where the
	// condition that cond writes on the cursor column (given its
	// qualified name) holds, and only while the lease row of f is held
	// (heldCond). It must lock the lease row against a concurrent claim
	// until the statement's transaction ends, whatever the isolation
	// level, so that a claim either comes before the write (which then
	// changes nothing) or waits for it. Its affected rows count the
	// changed cursor row only.
	fencedUpdate(s *sqlStmt, c cursorCols, f *fence, name string, val func(), cond func(col string))
	// fencedInsert writes an INSERT of the cursor row (name, value written
	// by val, now), only while the lease row of f is held, that leaves an
	// existing row alone; it locks the lease row as fencedUpdate does.
	fencedInsert(s *sqlStmt, c cursorCols, f *fence, name string, val func())
	// txIdleTimeout returns the statement that makes the server end the
	// session's transaction (rolling it back) once the session has been
	// idle for d, so that a paused process cannot keep the rows it locked
	// (a lease row, a cursor row) for ever, and the statement that undoes
	// it after the transaction; "" where the engine needs none.
	txIdleTimeout(d time.Duration) (set, reset string)
}

// cursorCols are the quoted names of a cursors table and its columns.
type cursorCols struct {
	table, id, cur, time string
}

// leaseCols are the quoted names of a leases table and its columns.
type leaseCols struct {
	table, name, shard, shards, owner, epoch, expires string
}

var (
	_ leasesDialect = mysqlDialect{}
	_ leasesDialect = sqliteDialect{}
	_ leasesDialect = pgDialect{}
)

// heldCond writes the condition that the lease row of f, with its columns
// prefixed by prefix ("" or an alias and a dot), is held by f's owner with
// f's epoch and has not expired.
func heldCond(s *sqlStmt, f *fence, prefix string) {
	lc := &f.lt.lc
	s.sql(prefix, lc.name, " = ")
	s.val(f.name)
	s.sql(" AND ", prefix, lc.shard, " = ")
	s.val(int64(f.shard))
	s.sql(" AND ", prefix, lc.owner, " = ")
	s.val(f.owner)
	s.sql(" AND ", prefix, lc.epoch, " = ")
	s.val(f.epoch)
	s.sql(" AND ", prefix, lc.expires, " > ", s.d.now())
}

func (mysqlDialect) leaseExpiry(s *sqlStmt, us int64) {
	s.sql("now(6) + INTERVAL ")
	s.val(us)
	s.sql(" MICROSECOND")
}

func (mysqlDialect) leaseLeft(s *sqlStmt, col string) {
	s.sql("TIMESTAMPDIFF(MICROSECOND, now(6), ", col, ")")
}

// fencedUpdate is a multi-table UPDATE that also assigns the lease row
// (its epoch to itself, a change of nothing): InnoDB then takes an
// exclusive lock on the lease row, even at READ COMMITTED where a
// subquery would read it without a lock.
func (mysqlDialect) fencedUpdate(s *sqlStmt, c cursorCols, f *fence, name string, val func(), cond func(col string)) {
	lc := &f.lt.lc
	s.sql("UPDATE ", c.table, " AS c JOIN ", lc.table, " AS l ON ")
	heldCond(s, f, "l.")
	s.sql(" SET c.", c.cur, " = ")
	val()
	s.sql(", c.", c.time, " = now(6), l.", lc.epoch, " = l.", lc.epoch, " WHERE c.", c.id, " = ")
	s.val(name)
	s.sql(" AND ")
	cond("c." + c.cur)
}

// fencedInsert reads the lease row with FOR UPDATE, which locks it at any
// isolation level.
func (mysqlDialect) fencedInsert(s *sqlStmt, c cursorCols, f *fence, name string, val func()) {
	s.sql("INSERT INTO ", c.table, " (", c.id, ", ", c.cur, ", ", c.time, ") SELECT ")
	s.val(name)
	s.sql(", ")
	val()
	s.sql(", now(6) FROM ", f.lt.lc.table, " AS l WHERE ")
	heldCond(s, f, "l.")
	s.sql(" FOR UPDATE ON DUPLICATE KEY UPDATE ", c.table, ".", c.id, " = ", c.table, ".", c.id)
}

// txIdleTimeout sets the session's wait_timeout, after which the server
// closes an idle connection and rolls back its transaction, saving the
// session's own value in a user variable to restore it after the
// transaction (the connection then goes back to the pool).
func (mysqlDialect) txIdleTimeout(d time.Duration) (string, string) {
	secs := max(int64((d+time.Second-1)/time.Second), 1)
	return "SET @reflex_wait_timeout = @@SESSION.wait_timeout, SESSION wait_timeout = " + strconv.FormatInt(secs, 10),
		"SET SESSION wait_timeout = @reflex_wait_timeout"
}

// txIdleTimeout needs nothing: SQLite has no server; a paused process
// holds its database's write lock until it resumes or dies.
func (sqliteDialect) txIdleTimeout(time.Duration) (string, string) { return "", "" }

func (sqliteDialect) leaseExpiry(s *sqlStmt, us int64) {
	// A literal modifier: us is the library's own integer.
	s.sql("strftime('%Y-%m-%d %H:%M:%f', 'now', '+", strconv.FormatFloat(float64(us)/1e6, 'f', 6, 64), " seconds')")
}

func (sqliteDialect) leaseLeft(s *sqlStmt, col string) {
	s.sql("CAST(ROUND((julianday(", col, ") - julianday('now')) * 86400000000.0) AS INTEGER)")
}

// fencedUpdate checks the lease in a subquery: SQLite runs one writer at a
// time, so no claim can come between the check and the write.
func (d sqliteDialect) fencedUpdate(s *sqlStmt, c cursorCols, f *fence, name string, val func(), cond func(col string)) {
	s.sql("UPDATE ", c.table, " SET ", c.cur, " = ")
	val()
	s.sql(", ", c.time, " = ", d.now(), " WHERE ", c.id, " = ")
	s.val(name)
	s.sql(" AND ")
	cond(c.cur)
	s.sql(" AND EXISTS (SELECT 1 FROM ", f.lt.lc.table, " AS l WHERE ")
	heldCond(s, f, "l.")
	s.sql(")")
}

func (d sqliteDialect) fencedInsert(s *sqlStmt, c cursorCols, f *fence, name string, val func()) {
	s.sql("INSERT INTO ", c.table, " (", c.id, ", ", c.cur, ", ", c.time, ") SELECT ")
	s.val(name)
	s.sql(", ")
	val()
	s.sql(", ", d.now(), " FROM ", f.lt.lc.table, " AS l WHERE ")
	heldCond(s, f, "l.")
	s.sql(" ON CONFLICT (", c.id, ") DO NOTHING")
}
