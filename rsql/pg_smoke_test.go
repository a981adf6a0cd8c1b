package rsql_test

import (
	"testing"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

func TestPGSmoke(t *testing.T) {
	db := dbtest.OpenPG(t)
	tables := rsqltest.Tables{Dialect: rsql.PostgreSQL}
	tables.CreateEventsTable(t, db, "events")
	tables.CreateCursorsTable(t, db, "cursors")
	tables.CreateErrorsTables(t, db)
	et := rsql.NewEventsTable("events", rsql.WithEventsDialect(rsql.PostgreSQL), rsql.WithEventMetadataField("metadata"))
	defer et.Close()
	rsqltest.TestEventsTable(t, db, et)
	rsqltest.TestCursorsTable(t, db, rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(rsql.PostgreSQL), rsql.WithCursorAsyncDisabled()))
	errs := rsql.NewErrorsTable(rsql.WithErrorsDialect(rsql.PostgreSQL))
	if err := errs.ToErrorInsertFunc(db)(t.Context(), "c", "5", "boom"); err != nil {
		t.Fatal(err)
	}
	if err := errs.ToErrorInsertFunc(db)(t.Context(), "c", "5", "boom"); err != nil {
		t.Fatal(err)
	}
}
