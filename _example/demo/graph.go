package main

import (
	"context"
	"fmt"
	"io"

	"github.com/seed-e488ba2e/reflex/_example/exclient"
	"github.com/seed-e488ba2e/reflex/_example/exserver"
	"github.com/seed-e488ba2e/reflex/_example/internal/exdb"
	"github.com/seed-e488ba2e/reflex/monitoring/topology"
)

// demoGraph declares the demo's event network as the welcome service sees
// it: it consumes the users service's events over gRPC, keeping its
// cursor in its own cursors table. lag measures the consumer's lag.
func demoGraph(lag func(context.Context) (int64, error)) *topology.Graph {
	g := topology.New("welcome")
	users := g.Peer("users").Stream(exserver.EventsTable).Note("rsql, served over gRPC (TLS, bearer token)")
	cursors := g.CursorStore("cursors").Note("rsql table")
	g.Consumer(exclient.ConsumerName, cursors, users).Note("writes welcome_emails rows").Lag(lag)
	return g
}

// printGraph prints the demo's graph in format ("dot" or "mermaid") with
// the consumer's lag from the databases the demo would use.
func printGraph(ctx context.Context, format, dir, dbURL, prefix string, out io.Writer) error {
	write := (*topology.Graph).WriteDOT
	switch format {
	case "dot":
	case "mermaid":
		write = (*topology.Graph).WriteMermaid
	default:
		return fmt.Errorf("-graph %q: want dot or mermaid", format)
	}
	usersDB, err := exdb.Open(ctx, dbURL, dir, prefix+"_users")
	if err != nil {
		return err
	}
	defer usersDB.Close()
	welcomeDB, err := exdb.Open(ctx, dbURL, dir, prefix+"_welcome")
	if err != nil {
		return err
	}
	defer welcomeDB.Close()
	users, welcome := exserver.New(usersDB), exclient.New(welcomeDB)
	defer welcome.Close()
	if err := users.Migrate(ctx); err != nil {
		return err
	}
	if err := welcome.Migrate(ctx); err != nil {
		return err
	}
	g := demoGraph(func(ctx context.Context) (int64, error) {
		head, err := users.Head(ctx)
		if err != nil {
			return 0, err
		}
		cursor, err := welcome.Cursor(ctx)
		return head - cursor, err
	})
	return write(g, ctx, out, topology.WithLive())
}
