package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

var tailCmd = &command{
	name:    "tail",
	summary: "print the events of an events table or of a reflex gRPC server",
	usage:   "tail (--dsn DSN [--events TABLE] | --grpc ADDR) [--from ID | --head | --since DURATION|TIME] [--type N,...] [--foreign-id ID] [--follow] [--limit N] [--json]",
	help: `
Prints the events of a stream in ID order, as a consumer sees them (noop
events hidden; a stream waits at a gap in IDs, see reflex gaps), one per
line: id, time (UTC), type, foreign id and, if the table has a metadata
column, the metadata. It starts after the cursor --from (default 0: the
first event), at the head (--head: only new events), or at a time (--since
10m, 2h30m, 3d, or an RFC 3339 time such as 2026-05-01T12:00:00Z), found
by a binary search of the IDs by their timestamps (no scan; needs --dsn).
Without --follow it stops at the head; with it, it waits for new events
until interrupted. --type and --foreign-id keep matching events only;
--limit stops after that many.`,
}

func init() { tailCmd.run = runTail }

func runTail(ctx context.Context, e *env, args []string) error {
	c := tailCmd
	fs := c.newFlags(e)
	var (
		dbf       dbFlags
		gf        grpcFlags
		from      = fs.String("from", "", "start after the event `ID` (0: from the first event)")
		head      = fs.Bool("head", false, "start at the head: only events added from now on")
		since     = fs.String("since", "", "start at the first event at or after `WHEN`: a duration ago (10m, 3d) or an RFC 3339 time")
		types     = fs.String("type", "", "keep only events of these `types` (comma-separated integers)")
		foreignID = fs.String("foreign-id", "", "keep only events of this foreign `ID`")
		follow    = fs.Bool("follow", false, "wait for new events at the head until interrupted")
		limit     = fs.Int("limit", 0, "stop after `N` matching events (0: no limit)")
		asJSON    = fs.Bool("json", false, "print one JSON object per event")
	)
	dbf.register(fs, e, tables{events: true})
	gf.register(fs, e)
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("tail takes no arguments (got %s)", quote(pos[0]))
	}
	starts := 0
	for _, set := range []bool{*from != "", *head, *since != ""} {
		if set {
			starts++
		}
	}
	if starts > 1 {
		return usageErr("give one of --from, --head and --since")
	}
	switch {
	case gf.addr != "" && flagSet(fs, "dsn"):
		return usageErr("give --dsn or --grpc, not both")
	case gf.addr == "" && dbf.dsn == "":
		return usageErr("no source: give --dsn (or set $%s) or --grpc", envDSN)
	}
	if *limit < 0 {
		return usageErr("--limit %d is negative", *limit)
	}
	keep, err := eventFilter(*types, *foreignID)
	if err != nil {
		return err
	}
	after := ""
	if *from != "" {
		n, err := strconv.ParseInt(*from, 10, 64)
		if err != nil || n < 0 {
			return usageErr("--from %s: want an event ID (an integer >= 0)", quote(*from))
		}
		after = strconv.FormatInt(n, 10)
	}

	var (
		stream reflex.StreamFunc
		table  *rsql.EventsTable
		db     *database
	)
	if gf.addr != "" {
		if *since != "" {
			return usageErr("--since needs the events table (--dsn): a gRPC server has no search by time")
		}
		conn, err := gf.dial()
		if err != nil {
			return err
		}
		defer conn.Close()
		stream = reflex.GRPCStreamFunc(conn)
	} else {
		if db, err = dbf.open(ctx); err != nil {
			return err
		}
		defer db.Close()
		if table, err = openEventsTable(ctx, db, dbf); err != nil {
			return err
		}
		defer table.Close()
		stream = table.ToStream(db.DB)
		if *since != "" {
			octx, cancel := context.WithTimeout(ctx, dbf.timeout)
			defer cancel()
			now, err := table.DatabaseTime(octx, db)
			if err != nil {
				return err
			}
			at, err := parseWhen("--since", *since, now)
			if err != nil {
				return err
			}
			cur, err := table.CursorAt(octx, db, at)
			if err != nil {
				return err
			}
			after = strconv.FormatInt(cur, 10)
		}
	}

	var opts []reflex.StreamOption
	if *head {
		opts = append(opts, reflex.WithStreamFromHead())
	}
	if !*follow {
		opts = append(opts, reflex.WithStreamToHead())
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl, err := stream(sctx, after, opts...)
	if err != nil {
		return streamErr(ctx, err)
	}
	if cl, ok := cl.(io.Closer); ok {
		defer cl.Close()
	}
	p := &printer{w: e.stdout, json: *asJSON}
	n := 0
	last := after
	for *limit == 0 || n < *limit {
		ev, err := cl.Recv()
		if errors.Is(err, reflex.ErrHeadReached) {
			break
		}
		if err != nil {
			return streamErr(ctx, err)
		}
		last = ev.ID
		if !keep(ev) {
			continue
		}
		n++
		if err := printEvent(p, ev); err != nil {
			return err
		}
	}
	if table != nil && !*follow && (*limit == 0 || n < *limit) {
		// Say so when the stream stopped before the head: at a gap.
		octx, cancel := context.WithTimeout(ctx, dbf.timeout)
		defer cancel()
		if h, err := table.Head(octx, db); err == nil {
			if l, _ := strconv.ParseInt(last, 10, 64); l < h && !*head {
				fmt.Fprintf(e.stderr, "reflex: stopped at event %d before the head %d: a gap in IDs holds the stream (see reflex gaps)\n", l, h)
			}
		}
	}
	return nil
}

// streamErr is the error of a stream; an interrupt ends the command
// normally.
func streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, reflex.ErrInvalidCursor) {
		return usageErr("%v", err)
	}
	return err
}

// openEventsTable returns the events table of --events, with its
// metadata column if it has one; a missing table is not found.
func openEventsTable(ctx context.Context, db *database, dbf dbFlags) (*rsql.EventsTable, error) {
	octx, cancel := context.WithTimeout(ctx, dbf.timeout)
	defer cancel()
	probe := rsql.NewEventsTable(dbf.events, rsql.WithEventsDialect(db.dialect))
	if err := probe.CheckSchema(octx, db); err != nil {
		return nil, tableErr("events", dbf.events, err)
	}
	cols, err := probe.ColumnNames(octx, db)
	if err != nil {
		return nil, err
	}
	opts := []rsql.EventsOption{rsql.WithEventsDialect(db.dialect)}
	if slices.Contains(cols, "metadata") {
		opts = append(opts, rsql.WithEventMetadataField("metadata"))
	}
	return rsql.NewEventsTable(dbf.events, opts...), nil
}

// eventFilter returns the filter of --type and --foreign-id.
func eventFilter(types, foreignID string) (func(*reflex.Event) bool, error) {
	var want []int
	if types != "" {
		for _, s := range strings.Split(types, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return nil, usageErr("--type %s: want comma-separated integers", quote(types))
			}
			want = append(want, n)
		}
	}
	return func(e *reflex.Event) bool {
		if foreignID != "" && e.ForeignID != foreignID {
			return false
		}
		return len(want) == 0 || e.Type != nil && slices.Contains(want, e.Type.ReflexType())
	}, nil
}

// parseWhen parses a time flag: a duration before now (10m, 2h30m, 3d)
// or an RFC 3339 time, not after now.
func parseWhen(flagName, s string, now time.Time) (time.Time, error) {
	if d, ok := parseAgo(s); ok {
		if d <= 0 {
			return time.Time{}, usageErr("%s %s: want a positive duration", flagName, quote(s))
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usageErr("%s %s: want a duration ago (10m, 2h30m, 3d) or an RFC 3339 time (2026-05-01T12:00:00Z)", flagName, quote(s))
	}
	if t.After(now) {
		return time.Time{}, usageErr("%s %s is in the future (the database's time is %s)", flagName, quote(s), fmtTime(now))
	}
	return t, nil
}

// parseAgo parses a Go duration, or a number of days ("3d").
func parseAgo(s string) (time.Duration, bool) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, true
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days < 1<<20 {
			return time.Duration(days) * 24 * time.Hour, true
		}
	}
	return 0, false
}

// eventJSON is an event in --json output.
type eventJSON struct {
	ID        string  `json:"id"`
	Type      int     `json:"type"`
	ForeignID string  `json:"foreign_id"`
	Timestamp *string `json:"timestamp"`
	Metadata  []byte  `json:"metadata,omitempty"`
}

// maxShownMetadata caps the metadata bytes of a text line.
const maxShownMetadata = 200

func printEvent(p *printer, e *reflex.Event) error {
	typ := 0
	if e.Type != nil {
		typ = e.Type.ReflexType()
	}
	if p.json {
		return p.object(eventJSON{ID: e.ID, Type: typ, ForeignID: e.ForeignID, Timestamp: jsonTime(e.Timestamp), Metadata: e.MetaData})
	}
	line := fmt.Sprintf("id=%s time=%s type=%d foreign_id=%s", e.ID, fmtTime(e.Timestamp), typ, logfmt(e.ForeignID))
	if len(e.MetaData) > 0 {
		line += " metadata=" + showBytes(e.MetaData)
	}
	_, err := fmt.Fprintln(p.w, line)
	return err
}

// logfmt quotes s if it is empty or has spaces, quotes, '=' or
// unprintable characters.
func logfmt(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == ' ' || r == '"' || r == '=' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// showBytes writes printable UTF-8 as logfmt text and anything else in
// hexadecimal, at most maxShownMetadata bytes.
func showBytes(b []byte) string {
	cut := ""
	if len(b) > maxShownMetadata {
		cut = fmt.Sprintf("...(%d more bytes)", len(b)-maxShownMetadata)
		b = b[:maxShownMetadata]
	}
	if utf8.Valid(b) && strings.IndexFunc(string(b), func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return logfmt(string(b)) + cut
	}
	return fmt.Sprintf("0x%x", b) + cut
}

// flagSet reports whether the flag name was given in fs.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}
