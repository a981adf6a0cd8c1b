-- reflex rsql cursors table: one row per consumer holding the ID of the
-- last event it consumed (int cursors). Rename the table as needed.
CREATE TABLE IF NOT EXISTS "cursors" (
  "id" TEXT NOT NULL PRIMARY KEY,
  "last_event_id" INTEGER NOT NULL,
  "updated_at" DATETIME NOT NULL
);
