package rsql_test

import (
	"context"
	"database/sql"
	"log"

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
