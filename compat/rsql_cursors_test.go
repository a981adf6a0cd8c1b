package compat_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// TestRSQLCursorsAPI uses the cursors and errors tables of rsql as code
// written against luno/reflex does; it fails to build if a name or
// signature changes. The calls that need a database are built, not run.
func TestRSQLCursorsAPI(t *testing.T) {
	// Options are values of the option types.
	cursorOpts := []rsql.CursorsOption{
		rsql.WithCursorCursorField("`cursor`"),
		rsql.WithCursorIDField("id"),
		rsql.WithCursorTimeField("updated_at"),
		rsql.WithCursorAsyncPeriod(time.Second),
		rsql.WithCursorAsyncDisabled(),
		rsql.WithCursorSetCounter(func() {}),
		rsql.WithCursorStrings(),
	}
	var newCursors func(string, ...rsql.CursorsOption) *rsql.CursorsTable = rsql.NewCursorsTable
	ct := newCursors("cursors", cursorOpts...)
	var clone *rsql.CursorsTable = ct.Clone(rsql.WithCursorAsyncPeriod(time.Minute))
	_ = clone.Flush(context.Background())
	_ = clone.Close()

	// rsql.CursorType and its Cast.
	var typ rsql.CursorType = 1
	var cast func(string) (interface{}, error) = typ.Cast
	if v, err := cast("10"); err != nil || v != int64(10) {
		t.Errorf("CursorType(1).Cast(10) = %v, %v", v, err)
	}

	// Errors table: options are functions of *ErrorsTable, so users
	// write and compose their own.
	var userOpt rsql.ErrorsOption = func(et *rsql.ErrorsTable) {
		rsql.WithErrorTableName("dead_letters")(et)
		rsql.WithErrorRecordOnly()(et)
	}
	errorOpts := []rsql.ErrorsOption{
		userOpt,
		rsql.WithErrorIDField("id"),
		rsql.WithErrorCreatedAtField("created_at"),
		rsql.WithErrorUpdatedAtField("updated_at"),
		rsql.WithErrorEventIDField("event_id"),
		rsql.WithErrorEventConsumerField("consumer"),
		rsql.WithErrorMsgField("error_msg"),
		rsql.WithErrorStatusField("error_status"),
		rsql.WithErrorInserter(func(ctx context.Context, dbc rsql.DBC, consumer, eventID, errMsg string, status reflex.ErrorStatus) (string, error) {
			return "1", nil
		}),
		rsql.WithErrorEventInserter(func(ctx context.Context, dbc rsql.DBC, foreignID string, typ reflex.EventType, metadata []byte) (rsql.NotifyFunc, error) {
			return func() {}, nil
		}),
		rsql.WithErrorCounter(func(consumer string) {}),
	}
	var newErrors func(...rsql.ErrorsOption) *rsql.ErrorsTable = rsql.NewErrorsTable
	et := newErrors(errorOpts...)
	var inserter rsql.ErrorInserter = func(context.Context, rsql.DBC, string, string, string, reflex.ErrorStatus) (string, error) {
		return "", nil
	}
	var eventInserter rsql.ErrorEventInserter = func(context.Context, rsql.DBC, string, reflex.EventType, []byte) (rsql.NotifyFunc, error) {
		return nil, nil
	}
	_, _ = inserter, eventInserter
	var isDup func(error) bool = rsql.IsDuplicateErrorInsertion
	_ = isDup(nil)

	// Calls with a *sql.DB, as the luno/reflex signatures take it.
	_ = func(ctx context.Context, db *sql.DB) error {
		var store reflex.CursorStore = ct.ToStore(db)
		store = ct.ToStore(db, rsql.WithCursorAsyncDisabled())
		if _, err := store.GetCursor(ctx, "consumer"); err != nil {
			return err
		}
		if _, err := ct.GetCursor(ctx, db, "consumer"); err != nil {
			return err
		}
		if err := ct.SetCursor(ctx, db, "consumer", "10"); err != nil {
			return err
		}
		var insert reflex.ErrorInsertFunc = et.ToErrorInsertFunc(db)
		return insert(ctx, "consumer", "1", "msg")
	}
}
