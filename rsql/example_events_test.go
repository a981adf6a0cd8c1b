package rsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

type userEvent int

func (t userEvent) ReflexType() int { return int(t) }

const userCreated userEvent = 1

var userEvents = rsql.NewEventsTable("user_events", rsql.WithEventMetadataField("metadata"))

// Insert an event in the same transaction as the data change it
// describes, and notify the table's streams after the commit.
func ExampleEventsTable_Insert() {
	var db *sql.DB // opened with sql.Open("mysql", "...?parseTime=true")
	ctx := context.Background()

	createUser := func(ctx context.Context, name string) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		res, err := tx.ExecContext(ctx, "INSERT INTO users (name) VALUES (?)", name)
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		notify, err := rsql.NewEventsTableInt("user_events").Insert(ctx, tx, id, userCreated)
		if err != nil {
			return err
		}
		defer notify() // after the commit
		return tx.Commit()
	}
	_ = createUser(ctx, "alice")
}

// Stream a table's events into a consumer, with the cursor in a cursors
// table, while a gap filler lets the streams pass rolled-back IDs.
func ExampleEventsTable_ToStream() {
	var db *sql.DB
	ctx := context.Background()

	table := userEvents.Clone()
	defer table.Close() // stops the gap filler and waits for it
	if err := rsql.FillGaps(db, table); err != nil {
		return
	}

	consumer := reflex.NewConsumer("welcome_mailer", func(ctx context.Context, e *reflex.Event) error {
		if reflex.IsType(e.Type, userCreated) {
			// Send a welcome mail to user e.ForeignID.
		}
		return nil
	})
	spec := reflex.NewSpec(table.ToStream(db), rsql.NewCursorsTable("cursors").ToStore(db), consumer)
	for {
		err := reflex.Run(ctx, spec) // runs until an error
		if errors.Is(err, context.Canceled) {
			return
		}
	}
}

// Insert many events with one statement.
func ExampleEventsTable_InsertMany() {
	var tx *sql.Tx
	notify, err := userEvents.InsertMany(context.Background(), tx, []rsql.EventToInsert{
		{ForeignID: "1", Type: userCreated},
		{ForeignID: "2", Type: userCreated, MetaData: []byte(`{"source":"import"}`)},
	})
	if err != nil {
		return
	}
	if err := tx.Commit(); err == nil {
		notify()
	}
}

// Wrap the table's SQL loader, here to count the events loaded.
func ExampleEventsTable_LoadEvents() {
	var (
		table  *rsql.EventsTable
		loaded int
	)
	count := func(ctx context.Context, db *sql.DB, prev int64, lag time.Duration) ([]*reflex.Event, error) {
		evs, err := table.LoadEvents(ctx, db, prev, lag)
		loaded += len(evs)
		return evs, err
	}
	table = rsql.NewEventsTable("user_events", rsql.WithEventsLoader(count))
	_ = table
}

// Check a table name from configuration before NewEventsTable, which
// panics on an invalid one.
func ExampleCheckName() {
	for _, name := range []string{"user_events", "shop.order_events", "events; DROP TABLE users"} {
		fmt.Println(name, rsql.CheckName(name) == nil)
	}
	// Output:
	// user_events true
	// shop.order_events true
	// events; DROP TABLE users false
}

// Measure how far a consumer's cursor is behind the head of its table.
func ExampleEventsTable_Head() {
	var db *sql.DB
	ctx := context.Background()
	head, err := userEvents.Head(ctx, db)
	if err != nil {
		return
	}
	cursor, err := rsql.NewCursorsTable("cursors").GetCursor(ctx, db, "welcome_mailer")
	if err != nil {
		return
	}
	var at int64
	if cursor != "" {
		fmt.Sscan(cursor, &at)
	}
	fmt.Println("events behind:", head-at)
}
