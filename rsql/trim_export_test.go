package rsql

import (
	"context"
	"database/sql"
)

// Hooks and internals for the trimming tests.

// SetTrimChunkHook sets a function each trim chunk calls inside its
// transaction, after its DELETE and before the marker's UPDATE and the
// commit; nil removes it.
func SetTrimChunkHook(f func()) {
	if f == nil {
		testHookTrimChunk.Store(nil)
		return
	}
	testHookTrimChunk.Store(&f)
}

// FillGap runs the gap filler of t over g at once.
func FillGap(ctx context.Context, t *EventsTable, db *sql.DB, g Gap) { t.fillGap(ctx, db, g) }
