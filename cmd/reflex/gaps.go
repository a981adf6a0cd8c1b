package main

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

var gapsCmd = &command{
	name:    "gaps",
	summary: "list the open gaps of an events table and their age",
	usage:   "gaps --dsn DSN [--events TABLE] [--from ID | --since DURATION|TIME] [--limit N] [--json]",
	help: `
Lists the open gaps of the events table: ranges of missing IDs below a
committed event, at which every stream of the table waits until the IDs
are committed or filled by the gap filler (rsql.FillGaps). For each: the
IDs around it, the number missing, how many of them transactions are still
writing (MySQL/MariaDB: "in flight", a held transaction; else "missing":
rolled back or deleted, which only the gap filler resolves), and its age:
the database's time minus the timestamp of the event after the gap.

It reads the IDs from --from (default: the head minus 100000), or from the
first event at or after --since, to the head, in one statement.`,
}

func init() { gapsCmd.run = runGaps }

// defaultGapWindow is how many IDs below the head gaps reads by default.
const defaultGapWindow = 100_000

// gapJSON is a gap in --json output.
type gapJSON struct {
	Prev          int64   `json:"prev"`
	Next          int64   `json:"next"`
	Missing       int64   `json:"missing"`
	InFlight      int64   `json:"in_flight"`
	State         string  `json:"state"`
	NextTimestamp *string `json:"next_timestamp"`
	AgeSeconds    float64 `json:"age_seconds"`
}

func runGaps(ctx context.Context, e *env, args []string) error {
	c := gapsCmd
	fs := c.newFlags(e)
	var dbf dbFlags
	var (
		from   = fs.String("from", "", "read the IDs from `ID` (default: the head minus 100000)")
		since  = fs.String("since", "", "read the IDs from the first event at or after `WHEN`: a duration ago (1h, 3d) or an RFC 3339 time")
		limit  = fs.Int("limit", 100, "list at most `N` gaps")
		asJSON = fs.Bool("json", false, "print one JSON object per gap")
	)
	dbf.register(fs, e, tables{events: true})
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErr("gaps takes no arguments")
	case *from != "" && *since != "":
		return usageErr("give --from or --since, not both")
	case *limit < 1:
		return usageErr("--limit %d: want at least 1", *limit)
	}
	db, err := dbf.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	t, err := openEventsTable(ctx, db, dbf)
	if err != nil {
		return err
	}
	defer t.Close()
	octx, cancel := context.WithTimeout(ctx, dbf.timeout)
	defer cancel()
	now, err := t.DatabaseTime(octx, db)
	if err != nil {
		return err
	}
	var start int64
	switch {
	case *from != "":
		if start, err = strconv.ParseInt(*from, 10, 64); err != nil || start < 0 {
			return usageErr("--from %s: want an event ID (an integer >= 0)", quote(*from))
		}
	case *since != "":
		at, err := parseWhen("--since", *since, now)
		if err != nil {
			return err
		}
		if start, err = t.CursorAt(octx, db, at); err != nil {
			return err
		}
	default:
		head, err := t.Head(octx, db)
		if err != nil {
			return err
		}
		start = max(head-defaultGapWindow, 0)
	}
	gaps, err := t.OpenGaps(octx, db.DB, start, *limit)
	if err != nil {
		return err
	}
	p := &printer{w: e.stdout, json: *asJSON}
	if p.json {
		for _, g := range gaps {
			age := max(now.Sub(g.NextTime), 0)
			if err := p.object(gapJSON{Prev: g.Prev, Next: g.Next, Missing: g.Missing(), InFlight: g.InFlight, State: gapState(g.InFlight),
				NextTimestamp: jsonTime(g.NextTime), AgeSeconds: age.Seconds()}); err != nil {
				return err
			}
		}
		return nil
	}
	if len(gaps) == 0 {
		_, err := fmt.Fprintf(e.stdout, "no open gaps after ID %d\n", start)
		return err
	}
	tw := p.table()
	fmt.Fprintln(tw, "AFTER\tBEFORE\tMISSING\tSTATE\tAGE\tNEXT EVENT AT")
	for _, g := range gaps {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\n", g.Prev, g.Next, g.Missing(), gapState(g.InFlight),
			fmtAge(max(now.Sub(g.NextTime), time.Duration(0))), fmtTime(g.NextTime))
	}
	return tw.Flush()
}

// gapState describes a gap: "in flight" while transactions write some of
// its IDs, else "missing".
func gapState(inFlight int64) string {
	if inFlight > 0 {
		return "in flight"
	}
	return "missing"
}
