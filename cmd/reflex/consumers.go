package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

var consumersCmd = &command{
	name:    "consumers",
	summary: "report every consumer's cursor and lag (in events and in seconds)",
	usage:   "consumers --dsn DSN [--cursors TABLE] [--events TABLE] [--events-dsn DSN] [--leases TABLE] [--consumer NAME]... [--watch [--interval D]] [--json]",
	help: `
For every cursor of the cursors table (or those of --consumer): the cursor,
the head of the events table, the lag in events (head minus cursor, in IDs),
the lag in seconds (the database's time minus the timestamp of the first
event after the cursor, the next one the consumer must consume: a stuck
consumer's lag keeps growing; 0 when it is at the head), when the cursor
was last written, and whether the consumer runs (a held lease in the leases
table, see rsql.RunningLease; "?" without a leases table). The events table
may be in another database (--events-dsn). --watch redraws the report every
--interval until interrupted.`,
}

func init() { consumersCmd.run = runConsumers }

// names is a repeatable string flag.
type names []string

func (n *names) String() string     { return fmt.Sprint(*n) }
func (n *names) Set(s string) error { *n = append(*n, s); return nil }

func runConsumers(ctx context.Context, e *env, args []string) error {
	c := consumersCmd
	fs := c.newFlags(e)
	var (
		dbf      dbFlags
		only     names
		watch    = fs.Bool("watch", false, "redraw the report every --interval until interrupted")
		interval = fs.Duration("interval", 2*time.Second, "refresh `interval` of --watch")
		asJSON   = fs.Bool("json", false, "print one JSON object per consumer")
	)
	fs.Var(&only, "consumer", "report only the consumer `NAME` (repeatable)")
	dbf.register(fs, e, tables{events: true, eventsDSN: true, cursors: true, leases: true})
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("consumers takes no arguments (use --consumer NAME)")
	}
	if *interval <= 0 {
		return usageErr("--interval %v is not positive", *interval)
	}
	s, err := openLagSource(ctx, fs, dbf)
	if err != nil {
		return err
	}
	defer s.close()
	p := &printer{w: e.stdout, json: *asJSON}
	for {
		r, err := s.report(ctx, only)
		if err != nil {
			if *watch && ctx.Err() != nil {
				return nil
			}
			return err
		}
		if *watch && e.tty && !p.json {
			fmt.Fprint(e.stdout, "\x1b[H\x1b[2J")
		}
		if err := r.print(p, *watch); err != nil {
			return err
		}
		if !*watch {
			return nil
		}
		t := time.NewTimer(*interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// lagSource is what a lag report reads: the cursors table (and leases
// table) in one database, the events table in the same or another one.
type lagSource struct {
	dbf                dbFlags
	cursorsDB, eventDB *database
	cursors            *rsql.CursorsTable
	events             *rsql.EventsTable
	leases             *rsql.LeasesTable // nil: not known
}

// openLagSource opens the databases and checks the tables of a lag
// report.
func openLagSource(ctx context.Context, fs *flag.FlagSet, dbf dbFlags) (*lagSource, error) {
	s := &lagSource{dbf: dbf}
	var err error
	if s.cursorsDB, err = dbf.open(ctx); err != nil {
		return nil, err
	}
	if s.eventDB, err = dbf.openEvents(ctx, s.cursorsDB); err != nil {
		s.close()
		return nil, err
	}
	if err := s.check(ctx, fs); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *lagSource) check(ctx context.Context, fs *flag.FlagSet) error {
	ctx, cancel := context.WithTimeout(ctx, s.dbf.timeout)
	defer cancel()
	copts := []rsql.CursorsOption{rsql.WithCursorsDialect(s.cursorsDB.dialect)}
	if s.dbf.stringCursors {
		copts = append(copts, rsql.WithCursorStrings())
	}
	s.cursors = rsql.NewCursorsTable(s.dbf.cursors, copts...)
	if err := s.cursors.CheckSchema(ctx, s.cursorsDB); err != nil {
		return tableErr("cursors", s.dbf.cursors, err)
	}
	s.events = rsql.NewEventsTable(s.dbf.events, rsql.WithEventsDialect(s.eventDB.dialect))
	if err := s.events.CheckSchema(ctx, s.eventDB); err != nil {
		return tableErr("events", s.dbf.events, err)
	}
	if s.dbf.leases == "" {
		return nil
	}
	lt := rsql.NewLeasesTable(s.dbf.leases, rsql.WithLeasesDialect(s.cursorsDB.dialect))
	switch err := lt.CheckSchema(ctx, s.cursorsDB); {
	case err == nil:
		s.leases = lt
	case errors.Is(err, rsql.ErrSchema) && !flagSet(fs, "leases"):
		// No leases table under the default name: running is unknown.
	default:
		return tableErr("leases", s.dbf.leases, err)
	}
	return nil
}

func (s *lagSource) close() {
	if s.eventDB != nil && s.eventDB != s.cursorsDB {
		s.eventDB.Close()
	}
	if s.cursorsDB != nil {
		s.cursorsDB.Close()
	}
	if s.events != nil {
		s.events.Close()
	}
}

// lagRow is one consumer of a lag report.
type lagRow struct {
	Consumer   string   `json:"consumer"`
	Cursor     string   `json:"cursor"`
	Head       int64    `json:"head"`
	LagEvents  *int64   `json:"lag_events"`
	LagSeconds *float64 `json:"lag_seconds"`
	NextEvent  *int64   `json:"next_event"`
	UpdatedAt  *string  `json:"updated_at"`
	Running    *bool    `json:"running"`
	Lease      *string  `json:"lease,omitempty"`
	At         *string  `json:"at"`

	updated time.Time
	lag     time.Duration
	owner   string
}

// lagReport is the lag of some consumers at one time.
type lagReport struct {
	at     time.Time
	head   int64
	rows   []lagRow
	leases string // the leases table, "" if unknown
}

// report reads the lag of the named consumers (every consumer if none):
// one statement for the cursors, two per 500 distinct cursors for the
// next events, one for the head, one for the clock, one for the leases.
func (s *lagSource) report(ctx context.Context, only []string) (*lagReport, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbf.timeout)
	defer cancel()
	rows, err := s.cursors.ListCursors(ctx, s.cursorsDB, only...)
	if err != nil {
		return nil, err
	}
	if len(only) > 0 {
		have := make(map[string]bool, len(rows))
		for _, r := range rows {
			have[r.Consumer] = true
		}
		for _, n := range only {
			if !have[n] {
				return nil, withCode(exitNotFound, "unknown consumer %s: no cursor in table %s", quote(n), s.dbf.cursors)
			}
		}
	}
	r := &lagReport{}
	if r.head, err = s.events.Head(ctx, s.eventDB); err != nil {
		return nil, err
	}
	if r.at, err = s.events.DatabaseTime(ctx, s.eventDB); err != nil {
		return nil, err
	}
	curs := make([]int64, len(rows))
	isInt := make([]bool, len(rows))
	for i, row := range rows {
		n, err := strconv.ParseInt(row.Cursor, 10, 64)
		curs[i], isInt[i] = n, err == nil && n >= 0
	}
	next, err := s.events.NextEvents(ctx, s.eventDB, curs)
	if err != nil {
		return nil, err
	}
	var leases []rpatterns.LeaseState
	if s.leases != nil {
		if leases, err = s.leases.ListLeases(ctx, s.cursorsDB); err != nil {
			return nil, err
		}
		r.leases = s.dbf.leases
	}
	at := jsonTime(r.at)
	for i, row := range rows {
		l := lagRow{Consumer: row.Consumer, Cursor: row.Cursor, Head: r.head, UpdatedAt: jsonTime(row.UpdatedAt),
			At: at, updated: row.UpdatedAt}
		if isInt[i] {
			ev := max(r.head-curs[i], 0)
			l.LagEvents = &ev
			if next[i].ID != 0 {
				id := next[i].ID
				l.NextEvent = &id
				l.lag = max(r.at.Sub(next[i].Timestamp), 0)
			}
			secs := l.lag.Seconds()
			l.LagSeconds = &secs
		}
		if s.leases != nil {
			lease, running := rsql.RunningLease(row.Consumer, leases)
			l.Running = &running
			if running {
				l.owner = lease.Owner
				desc := fmt.Sprintf("%s shard %d of %d held by %s", lease.Name, lease.Shard, lease.Shards, lease.Owner)
				l.Lease = &desc
			}
		}
		r.rows = append(r.rows, l)
	}
	return r, nil
}

// print writes the report: a table, or one object per consumer.
func (r *lagReport) print(p *printer, watch bool) error {
	if p.json {
		for _, row := range r.rows {
			if err := p.object(row); err != nil {
				return err
			}
		}
		return nil
	}
	if watch {
		fmt.Fprintf(p.w, "at %s (database time), head %d\n\n", fmtTime(r.at), r.head)
	}
	tw := p.table()
	fmt.Fprintln(tw, "CONSUMER\tCURSOR\tHEAD\tLAG EVENTS\tLAG\tUPDATED\tRUNNING")
	for _, row := range r.rows {
		lagEvents, lag := "-", "-"
		if row.LagEvents != nil {
			lagEvents = strconv.FormatInt(*row.LagEvents, 10)
			lag = fmtAge(row.lag)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", row.Consumer, row.Cursor, row.Head, lagEvents, lag,
			fmtTime(row.updated), running(row.Running, row.owner))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.rows) == 0 {
		fmt.Fprintln(p.w, "(no cursors)")
	}
	if watch {
		fmt.Fprintln(p.w)
	}
	return nil
}

// running shows a consumer's running state.
func running(r *bool, owner string) string {
	switch {
	case r == nil:
		return "?"
	case *r:
		return "yes (" + owner + ")"
	}
	return "no"
}
