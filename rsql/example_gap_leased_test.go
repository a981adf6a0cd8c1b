package rsql_test

import (
	"context"
	"database/sql"
	"log"
	"os/signal"
	"syscall"

	"github.com/seed-e488ba2e/reflex/rsql"
)

// ExampleFillGapsLeased fills the gaps of an events table from one
// replica of a service at a time: every replica runs this same code; the
// one holding the lease "rsql_gap_filler_events" fills, and another takes
// over within about the lease TTL (15 s by default) when it stops or
// dies. The leases table is in the database of the events.
func ExampleFillGapsLeased() {
	db, err := sql.Open("mysql", "user:pass@tcp(localhost:3306)/app?parseTime=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if _, err := db.ExecContext(ctx, rsql.LeasesSchema(rsql.MySQL, "leases")); err != nil {
		log.Fatal(err)
	}

	events := rsql.NewEventsTable("events")
	defer events.Close()
	leases := rsql.NewLeasesTable("leases").ToStore(db)

	// Blocks until SIGTERM, then stops filling and releases the lease.
	err = rsql.FillGapsLeased(ctx, db, events, leases)
	log.Print(err)
}
