package rsql_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/seed-e488ba2e/reflex/rsql"
)

// ExampleErrorsTable records a consumer's failure to process an event in
// consumer_errors, with an "error recorded" event in
// consumer_errors_events, in one transaction.
func ExampleErrorsTable() {
	db, err := sql.Open("mysql", "user:pass@tcp(localhost:3306)/app?parseTime=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for _, ddl := range []string{
		rsql.ErrorsSchema(rsql.MySQL, "consumer_errors"),
		rsql.EventsSchema(rsql.MySQL, "consumer_errors_events"),
	} {
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			log.Fatal(err)
		}
	}

	deadLetter := rsql.NewErrorsTable().ToErrorInsertFunc(db)
	// Typically passed to rpatterns.NewDeadLetterConsumer.
	if err := deadLetter(ctx, "my-consumer", "1234", "payment provider said no"); err != nil {
		log.Fatal(err)
	}

	// Consumers of the dead-letter events stream them like any other.
	errEvents := rsql.NewEventsTable("consumer_errors_events", rsql.WithEventMetadataField("metadata"))
	_ = errEvents.ToStream(db)
}
