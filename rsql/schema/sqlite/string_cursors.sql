-- reflex rsql cursors table for string cursors (WithCursorStrings): one row
-- per consumer holding the ID of the last event it consumed. Names and
-- cursors are compared byte by byte (COLLATE BINARY, the default).
CREATE TABLE IF NOT EXISTS "cursors" (
  "id" TEXT COLLATE BINARY NOT NULL PRIMARY KEY,
  "last_event_id" TEXT COLLATE BINARY NOT NULL,
  "updated_at" DATETIME NOT NULL
);
