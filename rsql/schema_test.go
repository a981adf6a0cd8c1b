package rsql_test

import (
	"os"
	"strings"
	"testing"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

func TestEventsSchema(t *testing.T) {
	ddl := rsql.EventsSchema(rsql.MySQL, "user_events")
	for _, want := range []string{"CREATE TABLE IF NOT EXISTS `user_events`", "`metadata` BLOB NULL", "`trace` BLOB NULL", "DATETIME(6)"} {
		if !strings.Contains(ddl, want) {
			t.Errorf("EventsSchema lacks %q:\n%s", want, ddl)
		}
	}
	if strings.Contains(ddl, "`events`") {
		t.Errorf("EventsSchema still names the default table:\n%s", ddl)
	}
	if got := rsql.EventsSchema(rsql.Dialect{}, "x"); got != rsql.EventsSchema(rsql.MySQL, "x") {
		t.Error("the zero Dialect is not MySQL")
	}
	if ddl := rsql.EventsSchema(rsql.SQLite, "user_events"); !strings.Contains(ddl, `CREATE TABLE IF NOT EXISTS "user_events"`) {
		t.Errorf("SQLite EventsSchema:\n%s", ddl)
	}
	defer func() {
		if r, _ := recover().(string); !strings.HasPrefix(r, "rsql: ") {
			t.Errorf("EventsSchema with a bad name: panic %q, want an rsql: message", r)
		}
	}()
	rsql.EventsSchema(rsql.MySQL, "x; DROP TABLE y")
}

// TestEventsSchemaFile runs the shipped .sql file as a migration tool
// would, then uses the table.
func TestEventsSchemaFile(t *testing.T) {
	db := dbtest.Open(t)
	b, err := os.ReadFile("schema/mysql/events.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(b)); err != nil {
		t.Fatalf("events.sql: %v", err)
	}
	table := rsql.NewEventsTable("events", rsql.WithEventMetadataField("metadata"), rsql.WithEventTraceField("trace"))
	if _, err := table.InsertWithMetadata(t.Context(), db, "1", testType(1), []byte("m")); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, table.ToStream(db), ""); len(got) != 1 || string(got[0].MetaData) != "m" {
		t.Fatalf("streamed %v", ids(got))
	}
	// The DDL is idempotent.
	if _, err := db.Exec(rsql.EventsSchema(rsql.MySQL, "events")); err != nil {
		t.Fatalf("EventsSchema on an existing table: %v", err)
	}
}
