-- reflex rsql cursors table: one row per consumer holding the ID of the
-- last event it consumed (int cursors). Rename the table as needed.
-- Consumer names are compared byte by byte (COLLATE "C"): names that
-- differ only in case, accents or trailing spaces are different consumers.
CREATE TABLE IF NOT EXISTS "cursors" (
  "id" VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
  "last_event_id" BIGINT NOT NULL,
  "updated_at" TIMESTAMPTZ NOT NULL
);
