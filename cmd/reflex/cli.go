package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// Exit codes: stable, documented in doc.go and by "reflex help".
const (
	exitOK       = 0 // done (a dry run included)
	exitFailure  = 1 // an operation failed: database or server errors, redrives that failed or timed out
	exitUsage    = 2 // bad command line or value: unknown command or flag, missing argument, bad DSN, bad --to or --since
	exitNotFound = 3 // unknown table, consumer, error row or event
	exitRefused  = 4 // refused, nothing changed: consumer running, set backwards, cursor moved meanwhile, error already resolved or discarded
)

// cliError is an error with the exit code it ends the command with.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func withCode(code int, format string, args ...any) error {
	return &cliError{code: code, err: fmt.Errorf(format, args...)}
}

func usageErr(format string, args ...any) error { return withCode(exitUsage, format, args...) }

// errHelp ends a command whose help was printed.
var errHelp = errors.New("help printed")

// exitCode returns the exit code of the error a command returned:
// the one it chose, else one derived from the library's sentinels.
func exitCode(err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	if e, ok := errors.AsType[*cliError](err); ok {
		return e.code
	}
	switch {
	case errors.Is(err, rsql.ErrSchema), errors.Is(err, rsql.ErrCursorNotFound), errors.Is(err, rsql.ErrErrorNotFound),
		errors.Is(err, rsql.ErrEventNotFound):
		return exitNotFound
	case errors.Is(err, rsql.ErrConsumerRunning), errors.Is(err, rsql.ErrCursorChanged), errors.Is(err, rsql.ErrErrorClosed):
		return exitRefused
	case errors.Is(err, rsql.ErrInvalidValue), errors.Is(err, rsql.ErrInvalidCursor):
		return exitUsage
	}
	return exitFailure
}

// env is what commands use of the process: output, environment, clock.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// tty reports whether stdout is a terminal (--watch redraws in
	// place).
	tty bool
}

// command is one command of the tool.
type command struct {
	name    string // as typed: "cursor set"
	summary string // one line for the command list
	usage   string // the synopsis after "reflex "
	help    string // paragraphs after the synopsis
	run     func(ctx context.Context, e *env, args []string) error
}

// newFlags returns the flag set of c, printing its help to e.stdout.
func (c *command) newFlags(e *env) *flag.FlagSet {
	fs := flag.NewFlagSet("reflex "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args with fs, accepting flags before, between and after
// positional arguments (which it returns), and prints the help on -h or
// --help.
func (c *command) parse(e *env, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printHelp(e.stdout, fs)
				return nil, errHelp
			}
			return nil, usageErr("%v (see reflex %s --help)", err, c.name)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// printHelp writes the command's usage, help and flags.
func (c *command) printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: reflex %s\n\n%s\n", c.usage, strings.TrimSpace(c.help))
	if fs == nil {
		return
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n      %s", line, usage)
		// Defaults of secrets (from the environment) are not shown.
		if d := f.DefValue; d != "" && d != "false" && d != "0" && !secretFlags[f.Name] {
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	})
}

// secretFlags are the flags whose defaults may hold credentials.
var secretFlags = map[string]bool{"dsn": true, "events-dsn": true, "token": true}

// printer writes a command's results: aligned text for people, or one
// JSON object per line with --json.
type printer struct {
	w    io.Writer
	json bool
}

// object writes v as one JSON line (json mode only).
func (p *printer) object(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table returns a tab-aligned writer; flush it.
func (p *printer) table() *tabwriter.Writer {
	return tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
}

// fields writes "key  value" lines, aligned.
func (p *printer) fields(kv ...string) error {
	tw := p.table()
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(tw, "%s\t%s\n", kv[i], kv[i+1])
	}
	return tw.Flush()
}

// Times are shown in UTC with milliseconds; JSON has full precision.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeLayout)
}

func jsonTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

// fmtAge writes a duration for people: "350ms", "12.4s", "3m7s",
// "2h5m", "3d4h".
func fmtAge(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	days := d / (24 * time.Hour)
	return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
}

// quote bounds user input echoed in messages.
func quote(s string) string { return bounded.Quote(s) }

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
