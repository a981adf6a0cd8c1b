-- reflex rsql cursors table for string cursors (WithCursorStrings): one row
-- per consumer holding the ID of the last event it consumed. Consumer names
-- and cursors are compared byte by byte (COLLATE "C").
CREATE TABLE IF NOT EXISTS "cursors" (
  "id" VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
  "last_event_id" VARCHAR(255) COLLATE "C" NOT NULL,
  "updated_at" TIMESTAMPTZ NOT NULL
);
