package rsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// A service delivers the events of the consumer errors that an operator
// asked to redrive (reflex errors redrive) through its own consumer.
func ExampleErrorsTable_RunRedriver() {
	var db *sql.DB // the database of the service's errors table
	events := rsql.NewEventsTable("user_events")
	errs := rsql.NewErrorsTable()
	welcome := reflex.NewConsumer("welcome_emails", func(ctx context.Context, e *reflex.Event) error {
		return nil // the consumer's logic, as given to reflex.Run
	})
	ctx := context.Background()
	// Blocks until ctx ends or a database error; run it again after one.
	if err := errs.RunRedriver(ctx, db, events.ToStream(db), welcome); err != nil {
		log.Print(err)
	}
}

// An operator's tool moves a cursor back one hour, with an audit row.
func ExampleCursorAuditTable_MoveCursor() {
	var db *sql.DB // the database of the cursors, audit and leases tables
	ctx := context.Background()
	events := rsql.NewEventsTable("user_events")
	cursors := rsql.NewCursorsTable("cursors")
	audit := rsql.NewCursorAuditTable("cursor_audit")
	leases := rsql.NewLeasesTable("leases")

	rows, err := cursors.ListCursors(ctx, db, "welcome_emails")
	if err != nil || len(rows) == 0 {
		log.Fatal("no cursor: ", err)
	}
	to, err := events.CursorAt(ctx, db, time.Now().Add(-time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	rec, err := audit.MoveCursor(ctx, db, cursors, leases, rsql.CursorMove{
		Consumer: "welcome_emails", From: rows[0].Cursor, To: fmt.Sprint(to),
		Reason: "alice: replay the last hour after the template fix",
	})
	if err != nil {
		log.Fatal(err) // rsql.ErrConsumerRunning while a lease is held
	}
	fmt.Println("moved, audit row", rec.ID)
}
