-- reflex rsql cursors table: one row per consumer holding the ID of the
-- last event it consumed (int cursors). Rename the table as needed.
-- Consumer names are compared byte by byte (COLLATE BINARY, the default).
CREATE TABLE IF NOT EXISTS "cursors" (
  "id" TEXT COLLATE BINARY NOT NULL PRIMARY KEY,
  "last_event_id" INTEGER NOT NULL,
  "updated_at" DATETIME NOT NULL
);
