package rsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// The events side of PostgreSQL. An identity (or serial) ID is taken from
// the table's sequence while the INSERT runs and becomes visible when its
// transaction commits, so IDs commit out of order, as on MySQL; but
// PostgreSQL has no READ UNCOMMITTED level to see the rows still being
// written. The unique index of the ID does see them: an INSERT of the
// same ID waits for the transaction that wrote it. So:
//
//   - The gap filler (fillRange) waits gapConfirm after it first finds an
//     ID absent, reads again, then inserts a noop with each ID still
//     absent: INSERT ... OVERRIDING SYSTEM VALUE ... ON CONFLICT (id) DO
//     NOTHING. An ID whose row is written but uncommitted makes that
//     INSERT wait for the writer's transaction: if it commits, the INSERT
//     does nothing; if it rolls back, the noop is inserted. The wait is
//     bounded by lock_timeout in the filler's own transaction (10 ms for
//     the statement that fills all the IDs, 1 s for the one that waits
//     for the first ID still being written), after which the filler reads
//     again and retries.
//   - The race that remains: a writer that has taken its ID from the
//     sequence but not yet written its row into the index (within one
//     INSERT statement: between the ID's default and the index entry;
//     BEFORE triggers run there) for longer than gapConfirm while a later
//     ID commits. The filler's noop then takes the ID first and the
//     writer's INSERT fails with a duplicate key (ErrIDFilled): its
//     transaction rolls back with its data change, so no stream ever
//     delivers an event that is then missing, and the writer sees the
//     failure. The sequence must hand IDs out one at a time (CACHE 1, the
//     default of identity and serial columns): with a cache, a session
//     would write IDs it took long before, all of which the filler could
//     take; inserts refuse such a table with ErrSchema.
//   - A stream from the beginning whose first row has ID > 1 (lowerInFlight)
//     waits until every transaction that held a write lock on the table
//     when it first looked has ended: every ID below its first row that
//     could still commit was taken by one of them (the lock is taken
//     before the ID).

// ErrIDFilled is wrapped by the error of an insert into a PostgreSQL
// events table whose event ID was filled with a noop event by FillGaps
// (of any process) while the INSERT was between taking the ID and writing
// its row, longer than the filler's grace period (a slow BEFORE trigger,
// a paused server process). The transaction is aborted, with the caller's
// data change: roll it back and retry it. No stream delivers the event.
var ErrIDFilled = errors.New("rsql: the event's ID was filled with a noop by a gap filler: roll back and retry the transaction")

const (
	// pgFillNoWait is the lock timeout of the statement that fills every
	// absent ID of a range at once: an ID being written makes it fail
	// soon, and the filler waits for that ID alone.
	pgFillNoWait = 10 * time.Millisecond
	// pgFillWait bounds the filler's wait for the transaction writing one
	// ID; it then reads the range again and waits again. Bounded so that
	// the filler's ROW EXCLUSIVE lock on the table never queues DDL (and
	// every writer behind it) for long.
	pgFillWait = time.Second
)

// pgState is the state of an EventsTable that only the PostgreSQL dialect
// uses (the zero value is ready).
type pgState struct {
	// first is what lowerInFlight knows; firstMu protects it.
	firstMu sync.Mutex
	first   pgFirst

	// hubsMu protects the following fields. Taken before the hub
	// registry's lock.
	hubsMu sync.Mutex
	// hubs are the notify connections that this table's inserts notified
	// through or its streams listen through, by database, each held until
	// Close.
	hubs map[string]*pgHub
	// infos are the connection configurations of the *sql.DBs of the
	// table's streams.
	infos map[*sql.DB]*pgConnInfo
}

// pgFirst is what a table knows of the IDs below the first row of a
// stream from the beginning.
type pgFirst struct {
	// safe: no ID below it can still commit.
	safe int64
	// below is the first row's ID when writers were last read, and
	// writers the transactions then holding a write lock on the table
	// (by virtual transaction ID); they may hold any ID below.
	below   int64
	writers map[string]bool
}

// pgCapture is passed as the first argument of an INSERT: pgx's Exec
// calls its RewriteQuery with the connection that runs the statement,
// which tells the NotifyFunc which database to notify, even for an
// insert through a *sql.Tx. It changes neither the statement nor its
// arguments.
type pgCapture struct {
	info *pgConnInfo
}

var errNoCapture = errors.New("rsql: the driver is not pgx")

func (c *pgCapture) RewriteQuery(_ context.Context, conn *pgx.Conn, sql string, args []any) (string, []any, error) {
	c.info = pgConnInfoOf(conn)
	return sql, args, nil
}

// Value is called only by a driver (or a wrapper of pgx) that converts
// arguments itself: the insert is then run again without the capture.
func (c *pgCapture) Value() (driver.Value, error) { return nil, errNoCapture }

// execInsert runs the insert with a pgCapture, and returns a NotifyFunc
// that also sends a NOTIFY to the database of the connection that ran it
// (see pgHub). A driver other than pgx gets the plain insert, whose
// NotifyFunc wakes this process only.
func (pgDialect) execInsert(ctx context.Context, t *EventsTable, dbc DBC, s *sqlStmt) (NotifyFunc, error) {
	c := &pgCapture{}
	args := make([]any, 0, len(s.args)+1)
	args = append(append(args, c), s.args...)
	_, err := dbc.ExecContext(ctx, s.String(), args...)
	switch {
	case errors.Is(err, errNoCapture):
		return execInsertPlain(ctx, t, dbc, s)
	case t.idKeyViolated(err):
		return nil, fmt.Errorf("%w: %w", ErrIDFilled, err)
	case err != nil:
		return nil, err
	case c.info == nil:
		return t.notify, nil
	}
	info := c.info
	return func() {
		t.notify()
		t.pg.notifyHub(info, t.channel)
	}, nil
}

// idKeyViolated reports whether err is a duplicate key of the ID column's
// unique index: inserts never give an ID, so only a noop of a gap filler
// (or a row written with an explicit ID) can hold it.
func (t *EventsTable) idKeyViolated(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != pgUniqueViolation {
		return false
	}
	c := t.insCols.Load()
	return c != nil && slices.Contains(c.id.keys, pe.ConstraintName)
}

// hub returns the hub of info's database, held for the table until
// Close.
func (p *pgState) hub(info *pgConnInfo) *pgHub {
	p.hubsMu.Lock()
	defer p.hubsMu.Unlock()
	h := p.hubs[info.key]
	if h == nil {
		h = acquireHub(info)
		if p.hubs == nil {
			p.hubs = make(map[string]*pgHub)
		}
		p.hubs[info.key] = h
	}
	return h
}

// notifyHub asks the hub of info's database to NOTIFY channel.
func (p *pgState) notifyHub(info *pgConnInfo, channel string) {
	p.hub(info).notify(channel)
}

// releaseHubs releases the hubs the table holds, letting each send its
// pending notifications first (bounded).
func (p *pgState) releaseHubs() {
	p.hubsMu.Lock()
	hubs := p.hubs
	p.hubs = nil
	p.hubsMu.Unlock()
	for _, h := range hubs {
		h.release(true)
	}
}

// infoOf returns the connection configuration of db, read once per table.
func (p *pgState) infoOf(ctx context.Context, db *sql.DB) (*pgConnInfo, error) {
	p.hubsMu.Lock()
	info := p.infos[db]
	p.hubsMu.Unlock()
	if info != nil {
		return info, nil
	}
	info, err := pgConnInfoOfDB(ctx, db)
	if err != nil {
		return nil, err
	}
	p.hubsMu.Lock()
	if p.infos == nil {
		p.infos = make(map[*sql.DB]*pgConnInfo)
	}
	p.infos[db] = info
	p.hubsMu.Unlock()
	return info, nil
}

// pgChannel returns the NOTIFY channel of an events table: "reflex_" and
// the table's name without its schema, cut to PostgreSQL's 63 bytes (two
// tables whose channels collide only wake each other's streams for
// nothing). A trigger computes it as left('reflex_' || TG_TABLE_NAME, 63).
func pgChannel(table string) string {
	name := unquote(table)
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	ch := "reflex_" + name
	if len(ch) > pgMaxIdent {
		ch = ch[:pgMaxIdent]
	}
	return ch
}

// pgMaxIdent is the longest identifier (and channel name) PostgreSQL
// keeps: NAMEDATALEN - 1 bytes.
const pgMaxIdent = 63

// listenHead makes the notify connection of db's database (see pgHub),
// held by t, LISTEN on the table's channel for w. The connection's
// configuration is read from a pooled connection of db, once per table,
// on a goroutine of the watcher; until the hub listens, and whenever it
// does not, the watcher's poll finds new rows. A database whose driver is
// not pgx is only polled.
func (pgDialect) listenHead(w *watcher, db *sql.DB, t *EventsTable) func() {
	if db == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background()) // the watcher's listening
	var (
		wg sync.WaitGroup
		h  *pgHub // set by the goroutine; read after wg.Wait
	)
	channel := t.channel
	wg.Go(func() {
		info, err := t.pg.infoOf(ctx, db)
		if err != nil {
			if ctx.Err() == nil {
				w.m.WatchErrors.Inc()
			}
			return
		}
		h = t.pg.hub(info)
		h.listen(channel, w)
	})
	return func() {
		cancel()
		wg.Wait()
		if h != nil {
			h.unlisten(channel, w)
		}
	}
}

// pgConnInfoOfDB reads the configuration of a pooled connection of db.
func pgConnInfoOfDB(ctx context.Context, db *sql.DB) (*pgConnInfo, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var info *pgConnInfo
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("rsql: PostgreSQL notifications need the pgx driver (github.com/jackc/pgx/v5/stdlib), not %T", dc)
		}
		info = pgConnInfoOf(c.Conn())
		return nil
	})
	return info, err
}

// fillRange fills the absent IDs of [lo, hi) with noops, waiting for
// those still being written (see the comment at the top of this file).
func (pgDialect) fillRange(ctx context.Context, t *EventsTable, db *sql.DB, lo, hi int64) error {
	var timer wait.Timer
	defer timer.Stop()
	confirmed := false
	for lo < hi {
		committed, err := t.idsIn(ctx, db, lo, hi, false)
		if err != nil {
			return err
		}
		absent := complement(lo, hi, committed)
		if h := testHookFillCheck.Load(); h != nil {
			(*h)()
		}
		if len(absent) == 0 {
			return nil
		}
		if !confirmed {
			// Give a writer between taking its ID and writing its row
			// the time to write it.
			confirmed = true
			if err := timer.Sleep(ctx, confirmPause()); err != nil {
				return err
			}
			continue
		}
		n, err := t.pgFill(ctx, db, absent, pgFillNoWait)
		if err == nil {
			t.m.GapFilled.Add(float64(n))
			return nil
		}
		if ft, ok := errors.AsType[*fillTrimmedError](err); ok {
			// Trimmed meanwhile: fill only above the marker (not above
			// TrimmedThrough, which is 0 while MarkTrimmed left rows
			// below the marker).
			if lo, err = t.untrimmedFrom(ctx, db, ft.marker+1); err != nil {
				return err
			}
			continue
		}
		if !pgLockWait(err) {
			return err
		}
		// An ID is being written: fill the IDs one at a time, in order,
		// each statement waiting for the writer of its ID, if any, to end
		// (at most pgFillWait: then read the range again from that ID).
		lo = hi
		for _, id := range absent {
			n, err := t.pgFill(ctx, db, []int64{id}, pgFillWait)
			if err == nil {
				t.m.GapFilled.Add(float64(n))
				continue
			}
			if ft, ok := errors.AsType[*fillTrimmedError](err); ok {
				if lo, err = t.untrimmedFrom(ctx, db, ft.marker+1); err != nil {
					return err
				}
				break
			}
			if !pgLockWait(err) {
				return err
			}
			lo = id
			break
		}
	}
	return nil
}

// pgLockWait reports whether err is a lock wait that ended without the
// lock: the filler's lock_timeout (or a deadlock, which the filler's
// statement breaks by failing).
func pgLockWait(err error) bool {
	c := pgCode(err)
	return c == pgLockNotAvailable || c == pgDeadlock
}

// pgFill inserts a noop event with each of ids, in ascending order, in one
// statement with the given lock timeout, and returns how many it
// inserted (IDs committed meanwhile are left alone). It inserts nothing
// and returns a *fillTrimmedError naming the marker if a trim committed
// since the IDs were read would leave a noop below its marker.
func (t *EventsTable) pgFill(ctx context.Context, db *sql.DB, ids []int64, lockTimeout time.Duration) (int64, error) {
	q := &t.q
	var b strings.Builder
	b.Grow(128 + 48*len(ids))
	// Without arguments pgx sends the text as one simple query (so SET
	// LOCAL applies to the INSERT, and its command tag is the INSERT's).
	b.WriteString("SET LOCAL lock_timeout = " + strconv.FormatInt(lockTimeout.Milliseconds(), 10) + "; ")
	b.WriteString("INSERT INTO " + q.table + " (" + q.id + ", " + q.foreignID + ", " + q.time + ", " + q.typ +
		") OVERRIDING SYSTEM VALUE VALUES ")
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + strconv.FormatInt(id, 10) + ", '" + noopForeignID + "', statement_timestamp(), 0)")
	}
	b.WriteString(" ON CONFLICT (" + q.id + ") DO NOTHING")
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, b.String())
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	// A trim may have committed since the IDs were read (an ID was being
	// written, then committed, archived and trimmed), or while the INSERT
	// waited for its DELETE. Its marker is then the first row above the
	// IDs that is not a filler's noop, and this query sees it (each
	// statement of a READ COMMITTED transaction reads what committed
	// before it): the noops are rolled back, so that the filler never
	// writes below the marker (trim.go).
	var (
		above  int64
		marker bool
	)
	err = tx.QueryRowContext(ctx, "SELECT "+q.id+", "+q.typ+" = 0 AND "+q.foreignID+" = '"+noopForeignID+"' FROM "+q.table+
		" WHERE "+q.id+" > $1 AND NOT ("+q.typ+" = 0 AND "+q.foreignID+" = '"+noopForeignID+"' AND "+q.time+" >= $2)"+
		" ORDER BY "+q.id+" LIMIT 1", ids[0], trimMarkerBefore).Scan(&above, &marker)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, err
	case marker:
		return 0, &fillTrimmedError{marker: above}
	}
	return n, tx.Commit()
}

// errFillTrimmed is returned by pgFill when the IDs to fill were trimmed.
var errFillTrimmed = errors.New("rsql: gap fill below the trim marker")

// lowerInFlight reports whether an ID below id may still commit: whether
// a transaction that held a write lock on the table when the first row
// was id (or lower) is still open.
func (pgDialect) lowerInFlight(ctx context.Context, t *EventsTable, db *sql.DB, id int64) (bool, error) {
	p := &t.pg
	p.firstMu.Lock()
	defer p.firstMu.Unlock()
	f := &p.first
	if id <= f.safe {
		return false, nil
	}
	writers, err := t.pgWriters(ctx, db)
	if err != nil {
		return false, fmt.Errorf("rsql: events table %s: check open writers: %w", t.name, err)
	}
	if f.below == 0 || id > f.below {
		// Writers that began later took IDs above every committed one.
		f.below, f.writers = id, writers
	} else {
		for vx := range f.writers {
			if !writers[vx] {
				delete(f.writers, vx)
			}
		}
	}
	if len(f.writers) > 0 {
		return true, nil
	}
	f.safe, f.below, f.writers = f.below, 0, nil
	return false, nil
}

// pgWriters returns the transactions of other sessions that hold a write
// lock (ROW EXCLUSIVE or stronger) on the table, by virtual transaction
// ID.
func (t *EventsTable) pgWriters(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT DISTINCT virtualtransaction FROM pg_locks `+
		`WHERE locktype = 'relation' AND relation = to_regclass($1) `+
		`AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) `+
		`AND mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock') `+
		`AND pid IS DISTINCT FROM pg_backend_pid()`, t.q.table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	writers := make(map[string]bool)
	for rows.Next() {
		var vx string
		if err := rows.Scan(&vx); err != nil {
			return nil, err
		}
		writers[vx] = true
	}
	return writers, rows.Err()
}
