-- reflex rsql cursors table for string cursors (WithCursorStrings): one row
-- per consumer holding the ID of the last event it consumed.
CREATE TABLE IF NOT EXISTS "cursors" (
  "id" TEXT NOT NULL PRIMARY KEY,
  "last_event_id" TEXT NOT NULL,
  "updated_at" DATETIME NOT NULL
);
