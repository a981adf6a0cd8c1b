package rsql_test

import (
	"context"
	"database/sql"
	"log"
	"os/signal"
	"syscall"
	"time"

	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// ExampleTrimmer keeps a week of events in the table: every replica runs
// this code, and the lease makes one of them trim at a time. The trimmer
// deletes only events the archiver (an rblob.Archiver named
// "events-archive", whose cursor is in the cursors table) has written;
// rblob's Bucket.StreamTiered serves the older ones from the archive.
func ExampleTrimmer() {
	db, err := sql.Open("mysql", "user:pass@tcp(localhost:3306)/app?parseTime=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	events := rsql.NewEventsTable("events", rsql.WithEventMetadataField("metadata"))
	cursors := rsql.NewCursorsTable("cursors")
	defer cursors.Close()
	trimmer, err := rsql.NewTrimmer(db, events, 7*24*time.Hour,
		rsql.WithTrimArchive(cursors.ToStore(db), "events-archive"))
	if err != nil {
		log.Fatal(err)
	}
	leases := rsql.NewLeasesTable("leases").ToStore(db)
	err = rpatterns.HoldLease(ctx, leases, "events-trimmer", func(ctx context.Context, _ rpatterns.Lease) error {
		return trimmer.Run(ctx) // a pass a minute
	})
	log.Print(err)
}
