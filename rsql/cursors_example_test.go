package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"log"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// ExampleCursorsTable consumes an events table, storing the consumer's
// cursor in a cursors table (created from rsql.CursorsSchema) that flushes
// every 5 s; Close writes the last cursors on shutdown.
func ExampleCursorsTable() {
	db, err := sql.Open("mysql", "user:pass@tcp(localhost:3306)/app?parseTime=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, rsql.CursorsSchema(rsql.MySQL, "cursors")); err != nil {
		log.Fatal(err)
	}

	events := rsql.NewEventsTable("events")
	cursors := rsql.NewCursorsTable("cursors")
	defer cursors.Close()

	consumer := reflex.NewConsumer("send-welcome-email",
		func(ctx context.Context, e *reflex.Event) error {
			// Look up the entity e.ForeignID and act on it.
			return nil
		})
	spec := reflex.NewSpec(events.ToStream(db), cursors.ToStore(db), consumer)
	err = reflex.Run(ctx, spec) // blocks; run it again after an error
	log.Print(err)
}

// ExampleCursorsTable_sync writes each cursor before SetCursor returns,
// refusing a cursor that does not move forward.
func ExampleCursorsTable_sync() {
	var db *sql.DB // opened elsewhere
	ctx := context.Background()
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncDisabled())
	defer cursors.Close()

	if err := cursors.SetCursor(ctx, db, "my-consumer", "42"); err != nil {
		log.Fatal(err)
	}
	cur, err := cursors.GetCursor(ctx, db, "my-consumer")
	if err != nil {
		log.Fatal(err)
	}
	log.Print(cur) // 42
}

// ExampleCursorsTable_ToStore gives one consumer a store with its own
// flush period; the store owns that table's background flush and stops it
// on Close. A run that ends with ErrConcurrentWriter met a second process
// running the same consumer name.
func ExampleCursorsTable_ToStore() {
	var db *sql.DB // opened elsewhere
	ctx := context.Background()
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorFlushTimeout(5*time.Second))
	defer cursors.Close() // also closes the stores made with options

	store := cursors.ToStore(db, rsql.WithCursorAsyncPeriod(time.Second))
	defer store.Close() // stops its flush, writes its last cursors within 5 s

	events := rsql.NewEventsTable("events")
	consumer := reflex.NewConsumer("audit-log", func(context.Context, *reflex.Event) error { return nil })
	err := reflex.Run(ctx, reflex.NewSpec(events.ToStream(db), store, consumer))
	if errors.Is(err, rsql.ErrConcurrentWriter) {
		log.Print("another process runs audit-log too: ", err)
	}
}
