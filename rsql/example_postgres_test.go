package rsql_test

import (
	"context"
	"database/sql"
	"errors"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// Use the tables on PostgreSQL: the DSN and the dialect options are all
// that differ from MySQL. The NotifyFunc of an insert wakes the streams
// of every process through LISTEN/NOTIFY.
func Example_postgreSQL() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://app@db:5432/users")
	if err != nil {
		return
	}
	events := rsql.NewEventsTable("user_events", rsql.WithEventsDialect(rsql.PostgreSQL))
	defer events.Close() // stops the gap filler and the notify connection
	cursors := rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(rsql.PostgreSQL))
	defer cursors.Close()
	for _, ddl := range []string{rsql.EventsSchema(rsql.PostgreSQL, "user_events"), rsql.CursorsSchema(rsql.PostgreSQL, "cursors")} {
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			return
		}
	}
	if err := rsql.FillGaps(db, events); err != nil {
		return
	}

	// The writer: the event in the caller's transaction.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return
	}
	defer tx.Rollback()
	var id int64
	if err := tx.QueryRowContext(ctx, "INSERT INTO users (name) VALUES ($1) RETURNING id", "alice").Scan(&id); err != nil {
		return
	}
	notify, err := rsql.NewEventsTableInt("user_events", rsql.WithEventsDialect(rsql.PostgreSQL)).Insert(ctx, tx, id, userCreated)
	if errors.Is(err, rsql.ErrIDFilled) {
		return // a gap filler took the event's ID: retry the transaction
	} else if err != nil {
		return
	}
	if err := tx.Commit(); err != nil {
		return
	}
	notify()

	// A consumer, in any process.
	consumer := reflex.NewConsumer("welcome", func(ctx context.Context, e *reflex.Event) error { return nil })
	_ = reflex.Run(ctx, reflex.NewSpec(events.ToStream(db), cursors.ToStore(db), consumer))
}
