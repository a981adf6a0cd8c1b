package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, tty: isTerminal(os.Stdout)}
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// groups are the commands with subcommands.
var groups = map[string]string{
	"cursor": "read and move a consumer's cursor",
	"errors": "list, show, redrive and discard recorded consumer errors",
}

// commands lists every command, in the order of the help.
var commands = []*command{tailCmd, consumersCmd, cursorGetCmd, cursorSetCmd, cursorResetCmd,
	errorsListCmd, errorsShowCmd, errorsRedriveCmd, errorsDiscardCmd, gapsCmd}

// run runs the command of args and returns the process's exit code.
func run(ctx context.Context, e *env, args []string) int {
	err := dispatch(ctx, e, args)
	if err != nil && !errors.Is(err, errHelp) {
		fmt.Fprintf(e.stderr, "reflex: %v\n", err)
	}
	return exitCode(err)
}

func dispatch(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		printUsage(e.stderr)
		return usageErr("no command given")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return dispatch(ctx, e, append(args[1:], "--help"))
		}
		printUsage(e.stdout)
		return errHelp
	}
	name := args[0]
	rest := args[1:]
	if _, ok := groups[name]; ok {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			printGroup(e.stdout, name)
			if len(rest) > 0 && isHelp(rest[0]) {
				return errHelp
			}
			return usageErr("%s needs a subcommand", name)
		}
		name += " " + rest[0]
		rest = rest[1:]
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, e, rest)
		}
	}
	return usageErr("unknown command %s (see reflex help)", quote(name))
}

func isHelp(s string) bool {
	switch s {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `reflex inspects and operates reflex event streams: events tables, cursors,
consumer errors and gaps, in MySQL/MariaDB, SQLite or PostgreSQL databases,
or the events served by a reflex gRPC server.

Usage: reflex COMMAND [ARGS] [FLAGS]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "reflex COMMAND --help" for a command's arguments and flags. Every
command prints text for people, or one JSON object per line with --json.

Exit codes:
  0  done (dry runs included)
  1  an operation failed: a database or server error, a redrive that failed
  2  bad command line or value: unknown command or flag, missing argument,
     bad DSN, bad --to or --since
  3  unknown table, consumer, error row or event
  4  refused, nothing changed: the consumer is running, a set would move a
     cursor back, the cursor moved meanwhile, the error is already resolved
     or discarded
`)
}

func printGroup(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: reflex %s SUBCOMMAND [ARGS] [FLAGS]\n\nreflex %s: %s.\n\nSubcommands:\n", group, group, groups[group])
	for _, c := range commands {
		if sub, ok := strings.CutPrefix(c.name, group+" "); ok {
			fmt.Fprintf(w, "  %-10s %s\n", sub, c.summary)
		}
	}
}
