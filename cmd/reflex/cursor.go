package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/seed-e488ba2e/reflex/rsql"
)

var cursorGetCmd = &command{
	name:    "cursor get",
	summary: "show a consumer's cursor, lag and last moves",
	usage:   "cursor get NAME --dsn DSN [--cursors TABLE] [--events TABLE] [--events-dsn DSN] [--leases TABLE] [--audit TABLE] [--json]",
	help: `
Shows the cursor of consumer NAME, the head of the events table, the lag in
events and in seconds (see reflex consumers), whether it runs (a held lease),
and its last moves from the cursor audit table if there is one.`,
}

const moveHelp = `

--to is an event ID, "head" (skip everything), "start" (replay everything:
cursor 0), or a time: a duration ago (10m, 3d) or an RFC 3339 time, found
by a binary search of the IDs (the cursor before the first event at or
after that time). A time in the future, or an ID past the head, is refused.

Without --execute this is a dry run: it prints the cursor before and after
and how many events the move replays or skips, and changes nothing. With
--execute and --reason (who moves it and why) it moves the cursor and
writes a row to the cursor audit table (rsql.CursorAuditSchema, in the
database of the cursors table) in one transaction, only if the cursor is
still the one it read.

It refuses (exit 4) while the consumer runs: while a lease of the consumer,
or of the sharded consumer of a shard named <name>_<m>_of_<n>, is held in
the leases table (--leases; see rsql.RunningLease). --force moves it anyway
(recorded in the audit row); the running consumer then stops at its next
cursor flush (rsql.ErrConcurrentWriter) and resumes from the new cursor.
Without a leases table the rule cannot be checked: stop the consumer first.`

var cursorSetCmd = &command{
	name:    "cursor set",
	summary: "move a consumer's cursor forward (skip events); dry run unless --execute",
	usage:   "cursor set NAME --to ID|head|TIME --dsn DSN [--execute --reason TEXT] [--force] [table flags] [--json]",
	help: `
Moves the cursor of consumer NAME forward, skipping events. A target before
the cursor is refused (exit 4): moving a cursor back replays events, which
is what reflex cursor reset is for.` + moveHelp,
}

var cursorResetCmd = &command{
	name:    "cursor reset",
	summary: "move a consumer's cursor anywhere, back (replay) or forward; dry run unless --execute",
	usage:   "cursor reset NAME --to ID|head|start|TIME --dsn DSN [--execute --reason TEXT] [--force] [table flags] [--json]",
	help: `
Moves the cursor of consumer NAME to any position: back to replay events,
forward to skip them.` + moveHelp,
}

func init() {
	cursorGetCmd.run = runCursorGet
	cursorSetCmd.run = func(ctx context.Context, e *env, args []string) error {
		return runCursorMove(ctx, e, args, cursorSetCmd)
	}
	cursorResetCmd.run = func(ctx context.Context, e *env, args []string) error {
		return runCursorMove(ctx, e, args, cursorResetCmd)
	}
}

func runCursorGet(ctx context.Context, e *env, args []string) error {
	c := cursorGetCmd
	fs := c.newFlags(e)
	var dbf dbFlags
	asJSON := fs.Bool("json", false, "print one JSON object")
	history := fs.Int("history", 5, "show the last `N` moves from the audit table (0: none)")
	dbf.register(fs, e, tables{events: true, eventsDSN: true, cursors: true, leases: true, audit: true})
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("cursor get takes one consumer NAME")
	}
	name := pos[0]
	s, err := openLagSource(ctx, fs, dbf)
	if err != nil {
		return err
	}
	defer s.close()
	r, err := s.report(ctx, []string{name})
	if err != nil {
		return err
	}
	row := r.rows[0]
	moves, err := s.history(ctx, fs, name, *history)
	if err != nil {
		return err
	}
	p := &printer{w: e.stdout, json: *asJSON}
	if p.json {
		type moveJSON struct {
			ID        int64   `json:"id"`
			From      string  `json:"from"`
			To        string  `json:"to"`
			Reason    string  `json:"reason"`
			Forced    bool    `json:"forced"`
			CreatedAt *string `json:"created_at"`
		}
		out := struct {
			lagRow
			Moves []moveJSON `json:"moves"`
		}{lagRow: row, Moves: []moveJSON{}}
		for _, m := range moves {
			out.Moves = append(out.Moves, moveJSON{m.ID, m.From, m.To, m.Reason, m.Forced, jsonTime(m.CreatedAt)})
		}
		return p.object(out)
	}
	lag := "-"
	if row.LagEvents != nil {
		lag = fmt.Sprintf("%d events, %s", *row.LagEvents, fmtAge(row.lag))
	}
	if err := p.fields("consumer", row.Consumer, "cursor", row.Cursor, "head", strconv.FormatInt(row.Head, 10),
		"lag", lag, "updated", fmtTime(row.updated), "running", runningLine(r, row)); err != nil {
		return err
	}
	if len(moves) > 0 {
		fmt.Fprintln(p.w, "\nmoves (newest first):")
		tw := p.table()
		fmt.Fprintln(tw, "ID\tAT\tFROM\tTO\tFORCED\tREASON")
		for _, m := range moves {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%t\t%s\n", m.ID, fmtTime(m.CreatedAt), m.From, m.To, m.Forced, m.Reason)
		}
		return tw.Flush()
	}
	return nil
}

// history returns the last n moves of consumer, none if the audit table
// is missing under its default name.
func (s *lagSource) history(ctx context.Context, fs *flag.FlagSet, consumer string, n int) ([]rsql.CursorAudit, error) {
	if n <= 0 || s.dbf.audit == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.dbf.timeout)
	defer cancel()
	a := rsql.NewCursorAuditTable(s.dbf.audit, rsql.WithCursorAuditDialect(s.cursorsDB.dialect))
	if err := a.CheckSchema(ctx, s.cursorsDB); err != nil {
		if errors.Is(err, rsql.ErrSchema) && !flagSet(fs, "audit") {
			return nil, nil
		}
		return nil, tableErr("audit", s.dbf.audit, err)
	}
	return a.List(ctx, s.cursorsDB, consumer, n)
}

// runningLine describes whether the consumer of row runs.
func runningLine(r *lagReport, row lagRow) string {
	switch {
	case row.Running == nil:
		return "unknown: no leases table (stop the consumer before moving its cursor)"
	case *row.Running:
		return "yes: lease " + *row.Lease
	}
	return "no (no held lease in " + r.leases + ")"
}

// movePlan is what a cursor set or reset does.
type movePlan struct {
	Consumer  string  `json:"consumer"`
	From      string  `json:"from"`
	To        string  `json:"to"`
	Direction string  `json:"direction"` // "back", "forward" or "none"
	Events    int64   `json:"events"`    // replayed (back) or skipped (forward)
	Running   *bool   `json:"running"`
	Lease     *string `json:"lease,omitempty"`
	DryRun    bool    `json:"dry_run"`
	Applied   bool    `json:"applied"`
	Forced    bool    `json:"forced"`
	AuditID   int64   `json:"audit_id,omitempty"`
	Reason    string  `json:"reason,omitempty"`

	from, to int64
}

func runCursorMove(ctx context.Context, e *env, args []string, c *command) error {
	fs := c.newFlags(e)
	var dbf dbFlags
	var (
		to      = fs.String("to", "", "target: an event `ID`, head, start, a duration ago (10m) or an RFC 3339 time")
		execute = fs.Bool("execute", false, "apply the move (default: dry run)")
		reason  = fs.String("reason", "", "who moves the cursor and why (`TEXT`), recorded in the audit table; required with --execute")
		force   = fs.Bool("force", false, "move the cursor even while the consumer runs")
		asJSON  = fs.Bool("json", false, "print one JSON object")
	)
	dbf.register(fs, e, tables{events: true, eventsDSN: true, cursors: true, leases: true, audit: true})
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return usageErr("%s takes one consumer NAME", c.name)
	case *to == "":
		return usageErr("%s needs --to ID|head|start|TIME", c.name)
	case *execute && *reason == "":
		return usageErr("--execute needs --reason: say who moves the cursor and why")
	}
	name := pos[0]
	s, err := openLagSource(ctx, fs, dbf)
	if err != nil {
		return err
	}
	defer s.close()
	r, err := s.report(ctx, []string{name})
	if err != nil {
		return err
	}
	row := r.rows[0]
	from, err := strconv.ParseInt(row.Cursor, 10, 64)
	if err != nil || from < 0 {
		return usageErr("%s moves int cursors only; the cursor of %s is %s", c.name, quote(name), quote(row.Cursor))
	}
	target, err := s.resolveTo(ctx, *to, r)
	if err != nil {
		return err
	}
	plan := movePlan{Consumer: name, From: row.Cursor, To: strconv.FormatInt(target, 10), Direction: "none",
		Running: row.Running, Lease: row.Lease, DryRun: !*execute, Reason: *reason, from: from, to: target}
	octx, cancel := context.WithTimeout(ctx, dbf.timeout)
	defer cancel()
	switch {
	case target < from:
		plan.Direction = "back"
		plan.Events, err = s.events.CountEvents(octx, s.eventDB, target, from)
	case target > from:
		plan.Direction = "forward"
		plan.Events, err = s.events.CountEvents(octx, s.eventDB, from, target)
	}
	if err != nil {
		return err
	}
	p := &printer{w: e.stdout, json: *asJSON}
	var refusal error
	switch {
	case c == cursorSetCmd && plan.Direction == "back":
		refusal = withCode(exitRefused, "cursor set moves cursors forward only: moving %s from %s back to %s would replay %d events; use reflex cursor reset",
			quote(name), plan.From, plan.To, plan.Events)
	case row.Running != nil && *row.Running && !*force:
		refusal = withCode(exitRefused, "consumer %s is running (lease %s): stop it first, or use --force", quote(name), *row.Lease)
	}
	if refusal != nil || plan.Direction == "none" || !*execute {
		if err := plan.print(p, r, refusal); err != nil {
			return err
		}
		return refusal
	}
	audit := rsql.NewCursorAuditTable(dbf.audit, rsql.WithCursorAuditDialect(s.cursorsDB.dialect))
	if err := audit.CheckSchema(octx, s.cursorsDB); err != nil {
		return tableErr("audit", dbf.audit, fmt.Errorf("%w (create it with rsql.CursorAuditSchema or rsql/schema/%s/cursor_audit.sql)", err, s.cursorsDB.dialect))
	}
	rec, err := audit.MoveCursor(octx, s.cursorsDB.DB, s.cursors, s.leases,
		rsql.CursorMove{Consumer: name, From: plan.From, To: plan.To, Reason: *reason, Force: *force})
	if err != nil {
		return err
	}
	plan.Applied, plan.Forced, plan.AuditID = true, rec.Forced, rec.ID
	return plan.print(p, r, nil)
}

// resolveTo returns the cursor that --to names.
func (s *lagSource) resolveTo(ctx context.Context, to string, r *lagReport) (int64, error) {
	switch to {
	case "head":
		return r.head, nil
	case "start", "beginning":
		return 0, nil
	}
	if n, err := strconv.ParseInt(to, 10, 64); err == nil {
		if n < 0 {
			return 0, usageErr("--to %d is negative", n)
		}
		if n > r.head {
			return 0, usageErr("--to %d is past the head %d of %s", n, r.head, s.dbf.events)
		}
		return n, nil
	}
	at, err := parseWhen("--to", to, r.at)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.dbf.timeout)
	defer cancel()
	return s.events.CursorAt(ctx, s.eventDB, at)
}

// print writes the plan and its outcome.
func (m movePlan) print(p *printer, r *lagReport, refusal error) error {
	if p.json {
		return p.object(m)
	}
	effect := "none: the cursor is already there"
	switch m.Direction {
	case "back":
		effect = fmt.Sprintf("replays %d events (IDs %d to %d)", m.Events, m.to+1, m.from)
	case "forward":
		effect = fmt.Sprintf("skips %d events (IDs %d to %d)", m.Events, m.from+1, m.to)
	}
	run := "unknown: no leases table (stop the consumer before moving its cursor)"
	switch {
	case m.Running == nil:
	case *m.Running:
		run = "yes: lease " + *m.Lease
	default:
		run = "no (no held lease in " + r.leases + ")"
	}
	if err := p.fields("consumer", m.Consumer, "cursor", m.From+" -> "+m.To, "effect", effect, "running", run); err != nil {
		return err
	}
	switch {
	case refusal != nil:
		fmt.Fprintln(p.w, "refused: nothing changed")
	case m.Applied:
		forced := ""
		if m.Forced {
			forced = " (forced)"
		}
		fmt.Fprintf(p.w, "applied: audit row %d%s, reason %q\n", m.AuditID, forced, m.Reason)
	case m.Direction == "none":
		fmt.Fprintln(p.w, "nothing to do")
	default:
		fmt.Fprintln(p.w, "dry run: nothing changed; apply with --execute --reason \"who: why\"")
	}
	return nil
}
