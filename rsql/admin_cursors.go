package rsql

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/seed-e488ba2e/reflex/rpatterns"
)

// CursorRow is a consumer's row of a cursors table.
type CursorRow struct {
	// Consumer is the consumer name.
	Consumer string
	// Cursor is the stored cursor.
	Cursor string
	// UpdatedAt is when the cursor was last written, by the database's
	// clock.
	UpdatedAt time.Time
}

// CheckSchema reads the table's columns from the catalog (once per table
// value) and returns an error wrapping ErrSchema if the table does not
// exist, lacks one of its columns or has a name column that folds names,
// or the database's error.
func (t *CursorsTable) CheckSchema(ctx context.Context, dbc DBC) error {
	if isNilDBC(dbc) {
		return fmt.Errorf("rsql: cursors table %s: nil DBC", t.name)
	}
	_, err := t.loadMeta(ctx, dbc)
	return err
}

// ListCursors returns the rows of the named consumers (in name order;
// names without a row are left out), or of every consumer if names is
// empty, in one statement. It reads the stored rows only: cursors that
// an asynchronous table buffers are not flushed. Database errors are
// returned wrapped with the table name; it is safe for concurrent use.
func (t *CursorsTable) ListCursors(ctx context.Context, dbc DBC, names ...string) ([]CursorRow, error) {
	if isNilDBC(dbc) {
		return nil, fmt.Errorf("rsql: list the cursors of %s: nil DBC", t.name)
	}
	q := t.stmt()
	q.sql("SELECT ", t.idCol, ", ", t.curCol, ", ", t.timeCol, " FROM ", t.table)
	if len(names) > 0 {
		q.sql(" WHERE ", t.idCol, " IN (")
		for i, n := range names {
			if i > 0 {
				q.sql(", ")
			}
			q.val(n)
		}
		q.sql(")")
	}
	q.sql(" ORDER BY ", t.idCol)
	var out []CursorRow
	err := scanRows(ctx, dbc, q, func(rows *sql.Rows) error {
		var (
			r   CursorRow
			cur sql.NullString
		)
		if err := rows.Scan(&r.Consumer, &cur, &r.UpdatedAt); err != nil {
			return err
		}
		r.Cursor = cur.String
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rsql: list the cursors of %s: %w", t.name, err)
	}
	return out, nil
}

// CheckSchema reads the table's columns from the catalog (once per table
// value) and returns an error wrapping ErrSchema if the table does not
// exist, lacks one of its columns or has name or owner columns that fold
// names, or the database's error.
func (t *LeasesTable) CheckSchema(ctx context.Context, dbc DBC) error {
	if isNilDBC(dbc) {
		return fmt.Errorf("rsql: leases table %s: nil DBC", t.name)
	}
	_, err := t.loadMeta(ctx, dbc)
	return err
}

// ListLeases returns every lease of the table (held, released and
// expired), with the time left until each expires by the database's
// clock, in name and shard order, in one statement. Database errors are
// returned wrapped with the table name; it is safe for concurrent use.
// See RunningLease for the lease that makes a consumer running.
func (t *LeasesTable) ListLeases(ctx context.Context, dbc DBC) ([]rpatterns.LeaseState, error) {
	if isNilDBC(dbc) {
		return nil, fmt.Errorf("rsql: list the leases of %s: nil DBC", t.name)
	}
	q := t.stmt()
	t.leasesQuery(q)
	q.sql(" ORDER BY ", t.lc.name, ", ", t.lc.shard)
	out, err := t.scanLeases(ctx, dbc, q)
	if err != nil {
		return nil, fmt.Errorf("rsql: list the leases of %s: %w", t.name, err)
	}
	return out, nil
}

// leasesQuery writes the SELECT of the leases' states, without a WHERE
// clause: the columns scanLeases reads.
func (t *LeasesTable) leasesQuery(q *sqlStmt) {
	q.sql("SELECT ", t.lc.name, ", ", t.lc.shard, ", ", t.lc.shards, ", ", t.lc.owner, ", ", t.lc.epoch, ", ")
	t.d.leaseLeft(q, t.lc.expires)
	q.sql(" FROM ", t.lc.table)
}

// scanLeases runs a leasesQuery.
func (t *LeasesTable) scanLeases(ctx context.Context, dbc DBC, q *sqlStmt) ([]rpatterns.LeaseState, error) {
	var out []rpatterns.LeaseState
	err := scanRows(ctx, dbc, q, func(rows *sql.Rows) error {
		var (
			st   rpatterns.LeaseState
			left int64
		)
		if err := rows.Scan(&st.Name, &st.Shard, &st.Shards, &st.Owner, &st.Epoch, &left); err != nil {
			return err
		}
		st.Left = time.Duration(left) * time.Microsecond
		out = append(out, st)
		return nil
	})
	return out, err
}

// shardName matches the default name of a shard's consumer in package
// rpatterns: "<name>_<m+1>_of_<n>".
var shardName = regexp.MustCompile(`^(.+)_([1-9][0-9]{0,8})_of_([1-9][0-9]{0,8})$`)

// leaseNames returns the names of the leases that can make consumer run:
// its own, and for a shard's default name the sharded consumer's.
func leaseNames(consumer string) []string {
	if m := shardName.FindStringSubmatch(consumer); m != nil {
		return []string{consumer, m[1]}
	}
	return []string{consumer}
}

// RunningLease returns the lease among leases that shows consumer (a
// cursor's name) running, and true, or false if none does. A consumer
// runs while one of these leases is held (its owner is not empty and it
// has time left): the lease named consumer, shard 0 of 1
// (rpatterns.RunLeased and HoldLease), or, for a consumer named
// "<name>_<m>_of_<n>" (the default name of the shards of
// rpatterns.RunSharded), shard m-1 of n of the lease name. Shards named
// otherwise (WithShardOptions) are not recognised: stop their members
// before moving their cursors.
func RunningLease(consumer string, leases []rpatterns.LeaseState) (rpatterns.LeaseState, bool) {
	m := shardName.FindStringSubmatch(consumer)
	for _, l := range leases {
		if l.Owner == "" || l.Left <= 0 || l.Shard < 0 {
			continue
		}
		if l.Name == consumer && l.Shard == 0 && l.Shards == 1 {
			return l, true
		}
		if m != nil && l.Name == m[1] && strconv.Itoa(l.Shard+1) == m[2] && strconv.Itoa(l.Shards) == m[3] {
			return l, true
		}
	}
	return rpatterns.LeaseState{}, false
}
