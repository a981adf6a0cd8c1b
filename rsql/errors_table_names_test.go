package rsql_test

import (
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
)

// TestErrorsTableNames: consumer names of the errors table follow the rule
// of cursors tables: byte-wise keys with the shipped DDL, bad names refused
// with ErrInvalidValue in strict and non-strict sessions (nothing stored
// cut), and a folding consumer column refused with ErrSchema.
func TestErrorsTableNames(t *testing.T) {
	strict, dsn := dbtest.OpenDSN(t)
	loose := nonStrictDB(t, dsn)
	rsqltest.CreateErrorsTables(t, strict)
	for _, sess := range []struct {
		name string
		db   *sql.DB
	}{{"Strict", strict}, {"NonStrict", loose}} {
		t.Run(sess.name, func(t *testing.T) {
			db, ctx := sess.db, t.Context()
			if _, err := db.ExecContext(ctx, "DELETE FROM consumer_errors"); err != nil {
				t.Fatal(err)
			}
			f := rsql.NewErrorsTable(rsql.WithErrorRecordOnly()).ToErrorInsertFunc(db)
			good := []string{"Orders", "orders", "\u00e9", "e\u0301", "e", "e ", strings.Repeat("n", 255)}
			for _, c := range good {
				if err := f(ctx, c, "7", "m"); err != nil {
					t.Fatalf("record %q: %v", c, err)
				}
			}
			for _, c := range []string{strings.Repeat("n", 256), strings.Repeat("é", 128), "bad\xff", strings.Repeat("x", 1<<20)} {
				err := f(ctx, c, "7", "m")
				if !errors.Is(err, rsql.ErrDeadLetter) || !errors.Is(err, rsql.ErrInvalidValue) || len(err.Error()) > 400 {
					t.Errorf("record a name of %d bytes = %.200v, want ErrDeadLetter and ErrInvalidValue with a bounded message", len(c), err)
				}
			}
			rows := errRows(t, db, "consumer_errors")
			if len(rows) != len(good) {
				t.Fatalf("%d rows, want %d (one per name)", len(rows), len(good))
			}
			for i, r := range rows {
				if r.consumer != good[i] {
					t.Errorf("row %d consumer %q, want %q", i, r.consumer, good[i])
				}
			}
		})
	}

	t.Run("FoldingColumn", func(t *testing.T) {
		if _, err := strict.ExecContext(t.Context(), "CREATE TABLE folding_errors (id BIGINT AUTO_INCREMENT PRIMARY KEY, consumer VARCHAR(255) NOT NULL, "+
			"event_id BIGINT NOT NULL, error_msg TEXT NOT NULL, created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL, "+
			"error_status INT NOT NULL, UNIQUE (consumer, event_id))"); err != nil {
			t.Fatal(err)
		}
		f := rsql.NewErrorsTable(rsql.WithErrorTableName("folding_errors"), rsql.WithErrorRecordOnly()).ToErrorInsertFunc(strict)
		err := f(t.Context(), "Orders", "1", "m")
		if !errors.Is(err, rsql.ErrDeadLetter) || !errors.Is(err, rsql.ErrSchema) || !strings.Contains(err.Error(), "utf8mb4_general_ci") {
			t.Errorf("record into a folding table = %v, want ErrDeadLetter and ErrSchema naming the collation", err)
		}
	})
}

// TestErrorsOptionComposed: as in luno/reflex, an ErrorsOption is a
// function of the table, so users compose options in their own.
func TestErrorsOptionComposed(t *testing.T) {
	db := dbtest.Open(t)
	if _, err := db.ExecContext(t.Context(), rsql.ErrorsSchema(rsql.MySQL, "dead_letters")); err != nil {
		t.Fatal(err)
	}
	var counted []string
	mine := func(et *rsql.ErrorsTable) {
		rsql.WithErrorTableName("dead_letters")(et)
		rsql.WithErrorRecordOnly()(et)
		rsql.WithErrorCounter(func(c string) { counted = append(counted, c) })(et)
	}
	var opt rsql.ErrorsOption = mine
	if err := rsql.NewErrorsTable(opt).ToErrorInsertFunc(db)(t.Context(), "c", "3", "m"); err != nil {
		t.Fatal(err)
	}
	if rows := errRows(t, db, "dead_letters"); len(rows) != 1 || rows[0].consumer != "c" || rows[0].eventID != 3 {
		t.Errorf("dead_letters rows = %+v", rows)
	}
	if len(counted) != 1 {
		t.Errorf("counter calls = %v", counted)
	}
}
