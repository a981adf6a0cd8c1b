package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

const errorsTableHelp = `
The errors table is an rsql.ErrorsTable (rsql.ErrorsSchema; default name
consumer_errors): one row per consumer and event that the consumer could
not process (dead letters), with a status: recorded, redrive-requested,
resolved or discarded.`

var errorsListCmd = &command{
	name:    "errors list",
	summary: "list recorded consumer errors, per consumer and status",
	usage:   "errors list --dsn DSN [--errors TABLE] [--consumer NAME] [--status S,...|all] [--after ID] [--limit N] [--json]",
	help:    "Lists the rows of the errors table in id order, 100 at a time (--after for the next page).\n" + errorsTableHelp,
}

var errorsShowCmd = &command{
	name:    "errors show",
	summary: "show one recorded consumer error in full",
	usage:   "errors show ID --dsn DSN [--errors TABLE] [--json]",
	help:    "Shows every column of the error row ID, with its whole message.\n" + errorsTableHelp,
}

var errorsRedriveCmd = &command{
	name:    "errors redrive",
	summary: "ask the consumer's service to deliver the events of recorded errors again",
	usage:   "errors redrive (ID... | --consumer NAME --all) --dsn DSN [--errors TABLE] [--wait DURATION] [--json]",
	help: `
Redrive needs the consumer's logic, which only its service has: this
command marks the rows redrive-requested (in one transaction; rows that are
resolved or discarded are refused with exit 4, nothing changed), and the
service's redriver (rsql.ErrorsTable.RunRedriver, or Redrive/RedriveTx
called by the service) delivers each event through the consumer and marks
the row resolved in the transaction that commits only after the consumer
succeeded, or back to recorded with the new error. With --wait it waits
that long for the outcome and exits 1 if a delivery failed or is still
waiting.` + errorsTableHelp,
}

var errorsDiscardCmd = &command{
	name:    "errors discard",
	summary: "discard recorded consumer errors (never delivered again)",
	usage:   "errors discard ID... --dsn DSN [--errors TABLE] [--consumer NAME] [--json]",
	help: `
Marks the rows discarded, in one transaction; rows that are resolved or
discarded already are refused (exit 4, nothing changed).` + errorsTableHelp,
}

func init() {
	errorsListCmd.run = runErrorsList
	errorsShowCmd.run = runErrorsShow
	errorsRedriveCmd.run = runErrorsRedrive
	errorsDiscardCmd.run = runErrorsDiscard
}

// openErrors opens the database and checks the errors table.
func openErrors(ctx context.Context, dbf dbFlags) (*database, *rsql.ErrorsTable, error) {
	db, err := dbf.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	t := rsql.NewErrorsTable(rsql.WithErrorTableName(dbf.errors), rsql.WithErrorsDialect(db.dialect), rsql.WithErrorRecordOnly())
	octx, cancel := context.WithTimeout(ctx, dbf.timeout)
	defer cancel()
	if err := t.CheckSchema(octx, db); err != nil {
		db.Close()
		return nil, nil, tableErr("errors", dbf.errors, err)
	}
	return db, t, nil
}

// errorJSON is an error row in --json output.
type errorJSON struct {
	ID        string  `json:"id"`
	Consumer  string  `json:"consumer"`
	EventID   string  `json:"event_id"`
	Status    string  `json:"status"`
	Message   string  `json:"message"`
	CreatedAt *string `json:"created_at"`
	UpdatedAt *string `json:"updated_at"`
}

func toJSON(r reflex.ConsumerError) errorJSON {
	return errorJSON{ID: r.ID, Consumer: r.ConsumerName, EventID: r.EventID, Status: rsql.ErrorStatusName(r.Status),
		Message: r.Message, CreatedAt: jsonTime(r.CreatedAt), UpdatedAt: jsonTime(r.UpdatedAt)}
}

// maxShownMessage caps the message in tables.
const maxShownMessage = 72

// oneLine is s on one line, cut at n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		cut := n
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// printErrors writes rows as a table or as objects.
func printErrors(p *printer, rows []reflex.ConsumerError) error {
	if p.json {
		for _, r := range rows {
			if err := p.object(toJSON(r)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := p.table()
	fmt.Fprintln(tw, "ID\tCONSUMER\tEVENT\tSTATUS\tUPDATED\tMESSAGE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.ConsumerName, r.EventID, rsql.ErrorStatusName(r.Status),
			fmtTime(r.UpdatedAt), oneLine(r.Message, maxShownMessage))
	}
	return tw.Flush()
}

// parseIDs parses positional error ids.
func parseIDs(pos []string) ([]int64, error) {
	ids := make([]int64, 0, len(pos))
	for _, s := range pos {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return nil, usageErr("bad error id %s: want a positive integer", quote(s))
		}
		ids = append(ids, n)
	}
	return ids, nil
}

func runErrorsList(ctx context.Context, e *env, args []string) error {
	c := errorsListCmd
	fs := c.newFlags(e)
	var dbf dbFlags
	var (
		consumer = fs.String("consumer", "", "list only the errors of consumer `NAME`")
		status   = fs.String("status", "all", "list only errors with these `statuses`: recorded, redrive-requested, resolved, discarded (comma-separated), or all")
		after    = fs.Int64("after", 0, "list errors with ids above `ID` (the next page)")
		limit    = fs.Int("limit", 100, "list at most `N` errors")
		asJSON   = fs.Bool("json", false, "print one JSON object per error")
	)
	dbf.register(fs, e, tables{errors: true})
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("errors list takes no arguments")
	}
	if *limit < 1 {
		return usageErr("--limit %d: want at least 1", *limit)
	}
	q := rsql.ErrorsQuery{Consumer: *consumer, AfterID: *after, Limit: *limit}
	if *status != "all" {
		for _, s := range strings.Split(*status, ",") {
			st, ok := rsql.ParseErrorStatus(strings.TrimSpace(s))
			if !ok {
				return usageErr("--status %s: want recorded, redrive-requested, resolved, discarded or all", quote(s))
			}
			q.Statuses = append(q.Statuses, st)
		}
	}
	db, t, err := openErrors(ctx, dbf)
	if err != nil {
		return err
	}
	defer db.Close()
	octx, cancel := context.WithTimeout(ctx, dbf.timeout)
	defer cancel()
	rows, err := t.ListErrors(octx, db, q)
	if err != nil {
		return err
	}
	p := &printer{w: e.stdout, json: *asJSON}
	if err := printErrors(p, rows); err != nil {
		return err
	}
	if !p.json && len(rows) == *limit {
		fmt.Fprintf(e.stdout, "(first %d; next page: --after %s)\n", *limit, rows[len(rows)-1].ID)
	}
	return nil
}

func runErrorsShow(ctx context.Context, e *env, args []string) error {
	c := errorsShowCmd
	fs := c.newFlags(e)
	var dbf dbFlags
	asJSON := fs.Bool("json", false, "print one JSON object")
	dbf.register(fs, e, tables{errors: true})
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("errors show takes one error ID")
	}
	ids, err := parseIDs(pos)
	if err != nil {
		return err
	}
	db, t, err := openErrors(ctx, dbf)
	if err != nil {
		return err
	}
	defer db.Close()
	octx, cancel := context.WithTimeout(ctx, dbf.timeout)
	defer cancel()
	rows, err := t.ListErrors(octx, db, rsql.ErrorsQuery{IDs: ids, Limit: 1})
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return withCode(exitNotFound, "no error %d in table %s", ids[0], dbf.errors)
	}
	r := rows[0]
	p := &printer{w: e.stdout, json: *asJSON}
	if p.json {
		return p.object(toJSON(r))
	}
	if err := p.fields("id", r.ID, "consumer", r.ConsumerName, "event", r.EventID, "status", rsql.ErrorStatusName(r.Status),
		"created", fmtTime(r.CreatedAt), "updated", fmtTime(r.UpdatedAt)); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "message:\n%s\n", r.Message)
	return err
}

func runErrorsDiscard(ctx context.Context, e *env, args []string) error {
	c := errorsDiscardCmd
	fs := c.newFlags(e)
	var dbf dbFlags
	consumer := fs.String("consumer", "", "refuse ids that are not errors of consumer `NAME`")
	asJSON := fs.Bool("json", false, "print one JSON object per error")
	dbf.register(fs, e, tables{errors: true})
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("errors discard takes one or more error IDs")
	}
	ids, err := parseIDs(pos)
	if err != nil {
		return err
	}
	db, t, err := openErrors(ctx, dbf)
	if err != nil {
		return err
	}
	defer db.Close()
	octx, cancel := context.WithTimeout(ctx, dbf.timeout)
	defer cancel()
	rows, err := t.Discard(octx, db.DB, *consumer, ids...)
	if err != nil {
		return err
	}
	p := &printer{w: e.stdout, json: *asJSON}
	if err := printErrors(p, rows); err != nil {
		return err
	}
	if !p.json {
		fmt.Fprintf(e.stdout, "discarded %d errors\n", len(rows))
	}
	return nil
}

func runErrorsRedrive(ctx context.Context, e *env, args []string) error {
	c := errorsRedriveCmd
	fs := c.newFlags(e)
	var dbf dbFlags
	var (
		consumer = fs.String("consumer", "", "refuse ids that are not errors of consumer `NAME`; with --all, the consumer to redrive")
		all      = fs.Bool("all", false, "redrive every recorded error of --consumer")
		waitFor  = fs.Duration("wait", 0, "wait up to `DURATION` for the service's redriver to deliver the events, and report")
		poll     = fs.Duration("poll", 500*time.Millisecond, "status check `interval` of --wait")
		asJSON   = fs.Bool("json", false, "print one JSON object per error")
	)
	dbf.register(fs, e, tables{errors: true})
	pos, err := c.parse(e, fs, args)
	if err != nil {
		return err
	}
	switch {
	case *all && (len(pos) > 0 || *consumer == ""):
		return usageErr("--all takes --consumer NAME and no ids")
	case !*all && len(pos) == 0:
		return usageErr("errors redrive takes error IDs, or --consumer NAME --all")
	case *waitFor < 0 || *poll <= 0:
		return usageErr("--wait must not be negative and --poll must be positive")
	}
	ids, err := parseIDs(pos)
	if err != nil {
		return err
	}
	db, t, err := openErrors(ctx, dbf)
	if err != nil {
		return err
	}
	defer db.Close()
	octx, cancel := context.WithTimeout(ctx, dbf.timeout)
	defer cancel()
	if *all {
		for after := int64(0); ; {
			rows, err := t.ListErrors(octx, db, rsql.ErrorsQuery{Consumer: *consumer, AfterID: after,
				Statuses: []reflex.ErrorStatus{reflex.EventErrorRecorded}, Limit: 1000})
			if err != nil {
				return err
			}
			for _, r := range rows {
				id, _ := strconv.ParseInt(r.ID, 10, 64)
				ids, after = append(ids, id), id
			}
			if len(rows) < 1000 {
				break
			}
		}
		if len(ids) == 0 {
			fmt.Fprintf(e.stdout, "no recorded errors of consumer %s\n", quote(*consumer))
			return nil
		}
	}
	rows, err := t.RequestRedrive(octx, db.DB, *consumer, ids...)
	if err != nil {
		return err
	}
	p := &printer{w: e.stdout, json: *asJSON}
	if *waitFor == 0 {
		if err := printErrors(p, rows); err != nil {
			return err
		}
		if !p.json {
			fmt.Fprintf(e.stdout, "requested %d redrives: the consumer's service delivers them (rsql.ErrorsTable.RunRedriver)\n", len(rows))
		}
		return nil
	}
	rows, err = waitRedrives(ctx, db, t, ids, *waitFor, *poll)
	if err != nil {
		return err
	}
	if err := printErrors(p, rows); err != nil {
		return err
	}
	var resolved, failed, waiting int
	for _, r := range rows {
		switch r.Status {
		case rsql.ErrorResolved:
			resolved++
		case rsql.ErrorRedriveRequested:
			waiting++
		default:
			failed++
		}
	}
	if !p.json {
		fmt.Fprintf(e.stdout, "%d resolved, %d failed, %d still waiting\n", resolved, failed, waiting)
	}
	switch {
	case waiting > 0:
		return withCode(exitFailure, "%d redrives still waiting after %v: is the consumer's redriver (rsql.ErrorsTable.RunRedriver) running?", waiting, *waitFor)
	case failed > 0:
		return withCode(exitFailure, "%d redrives failed (see their messages)", failed)
	}
	return nil
}

// waitRedrives polls the rows ids until none is redrive-requested or
// waitFor passed, and returns them.
func waitRedrives(ctx context.Context, db *database, t *rsql.ErrorsTable, ids []int64, waitFor, poll time.Duration) ([]reflex.ConsumerError, error) {
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, poll+10*time.Second)
		rows, err := t.ListErrors(qctx, db, rsql.ErrorsQuery{IDs: ids, Limit: len(ids)})
		cancel()
		if err != nil {
			return nil, err
		}
		pending := false
		for _, r := range rows {
			pending = pending || r.Status == rsql.ErrorRedriveRequested
		}
		if !pending || time.Now().After(deadline) {
			return rows, nil
		}
		select {
		case <-ctx.Done():
			return rows, nil
		case <-tick.C:
		}
	}
}
