package rsqltest_test

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

func databases(t *testing.T) map[string]*sql.DB {
	return map[string]*sql.DB{"mysql": dbtest.Open(t), "sqlite": rsqltest.OpenSQLite(t)}
}

func dialect(name string) rsql.Dialect {
	if name == "sqlite" {
		return rsql.SQLite
	}
	return rsql.MySQL
}

func TestSchemaChecksPass(t *testing.T) {
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			d := dialect(name)
			rsqltest.CreateEventsTable(t, db, "events")
			rsqltest.CreateEventsTable(t, db, "int_events")
			rsqltest.CreateEventsTable(t, db, "id_events")
			rsqltest.CreateCursorsTable(t, db, "cursors")
			rsqltest.TestEventsTable(t, db, rsql.NewEventsTable("events", rsql.WithEventsDialect(d)))
			rsqltest.TestEventsTableInt(t, db, rsql.NewEventsTableInt("int_events", rsql.WithEventsDialect(d)))
			rsqltest.TestEventsTableWithID(t, db, rsql.NewEventsTable("id_events", rsql.WithEventsDialect(d)), "user-7")
			rsqltest.TestCursorsTable(t, db, rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(d), rsql.WithCursorAsyncDisabled()))

			id, err := rsqltest.GetLatestIDForTesting(context.Background(), t, db, "events", "id")
			if err != nil || id != 3 {
				t.Errorf("GetLatestIDForTesting = %d, %v; want 3", id, err)
			}
			evs, err := rsqltest.GetNextEventsForTesting(context.Background(), t, db, rsql.NewEventsTable("events", rsql.WithEventsDialect(d)), 1, 0)
			if err != nil || len(evs) != 2 || evs[0].ID != "2" {
				t.Errorf("GetNextEventsForTesting after 1 = %v, %v; want events 2 and 3", evs, err)
			}
			if _, err := rsqltest.GetLatestIDForTesting(context.Background(), t, db, "events; DROP TABLE x", "id"); err == nil {
				t.Error("GetLatestIDForTesting accepted an invalid table name")
			}
		})
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// run calls check with a recorder on its own goroutine (Fatalf exits it)
// and returns the recorded failures.
func run(t *testing.T, check func(tb testing.TB)) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	return r.failed
}

func TestSchemaChecksFail(t *testing.T) {
	db := dbtest.Open(t)
	// A table whose type column does not exist.
	if _, err := db.Exec("CREATE TABLE bad_events (id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, foreign_id varchar(255) NOT NULL, timestamp datetime(6) NOT NULL, kind int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if f := run(t, func(tb testing.TB) { rsqltest.TestEventsTable(tb, db, rsql.NewEventsTable("bad_events")) }); len(f) == 0 {
		t.Error("TestEventsTable passed a table without a type column")
	}
	// A cursors table that already holds the checked cursor.
	rsqltest.CreateCursorsTable(t, db, "cursors")
	ct := rsql.NewCursorsTable("cursors", rsql.WithCursorAsyncDisabled())
	if err := ct.SetCursor(context.Background(), db, "rsqltest", "20"); err != nil {
		t.Fatal(err)
	}
	if f := run(t, func(tb testing.TB) { rsqltest.TestCursorsTable(tb, db, ct) }); len(f) == 0 {
		t.Error("TestCursorsTable passed a table with an existing cursor")
	}
}
