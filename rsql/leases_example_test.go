package rsql_test

import (
	"context"
	"database/sql"
	"log"
	"os/signal"
	"syscall"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// ExampleLeasesTable runs one consumer split into 8 shards across every
// replica of a service: each replica runs this same code; the shards are
// shared fairly between the live replicas, each run by one replica at a
// time, and handed over when a replica stops or dies. The leases and the
// cursors are tables of the database that holds the events.
func ExampleLeasesTable() {
	db, err := sql.Open("mysql", "user:pass@tcp(localhost:3306)/app?parseTime=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	for _, ddl := range []string{rsql.LeasesSchema(rsql.MySQL, "leases"), rsql.CursorsSchema(rsql.MySQL, "cursors")} {
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			log.Fatal(err)
		}
	}

	events := rsql.NewEventsTable("events")
	cursors := rsql.NewCursorsTable("cursors")
	defer cursors.Close()
	leases := rsql.NewLeasesTable("leases")

	// Blocks until SIGTERM, then hands this replica's shards over.
	err = rpatterns.RunSharded(ctx, leases.ToStore(db), "order-projector", 8,
		events.ToStream(db), cursors.ToStore(db),
		func(ctx context.Context, e *reflex.Event) error {
			// Events of one foreign ID come to one shard, in order.
			return nil
		})
	log.Print(err)
}

// ExampleNewTxConsumer writes each event's effects and the consumer's
// cursor in one transaction, so that the effects happen exactly once; the
// consumer is sharded across replicas, each shard's cursor write fenced by
// its lease.
func ExampleNewTxConsumer() {
	var db *sql.DB // opened elsewhere
	ctx := context.Background()
	events := rsql.NewEventsTable("events")
	cursors := rsql.NewCursorsTable("cursors")
	defer cursors.Close()
	leases := rsql.NewLeasesTable("leases").ToStore(db)

	project := func(ctx context.Context, tx *sql.Tx, e *reflex.Event) error {
		// A duplicate event ID fails the transaction: never ignore it.
		_, err := tx.ExecContext(ctx, "INSERT INTO order_totals (event_id, order_id) VALUES (?, ?)", e.IDInt(), e.ForeignID)
		return err
	}
	err := rpatterns.RunShardedSpecs(ctx, leases, "order-totals", 4, cursors.ToStore(db),
		func(shard rpatterns.ConsumerShard, store reflex.CursorStore) reflex.Spec {
			tc := rsql.NewTxConsumer(shard.Name, db, store, project,
				rsql.WithTxConsumerOptions(reflex.WithEventFilter(shard.GetFilter())))
			return rsql.NewTxSpec(events.ToStream(db), tc)
		})
	log.Print(err)
}
