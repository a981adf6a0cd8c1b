-- reflex rsql events table: one row per event, inserted in the same
-- transaction as the data change it describes. Rename the table as needed
-- (one events table per data table); keep the column types.
--
-- The ID is an identity column whose sequence hands out one value at a
-- time (CACHE 1, also PostgreSQL's default): the gap filler relies on it
-- (IDs are taken in insert order; with a cache a session would write IDs
-- taken long before, which the filler could fill with noops). Inserts
-- refuse a table whose ID sequence caches more than one value. GENERATED
-- ALWAYS keeps applications from writing IDs ahead of the sequence; the
-- gap filler writes its noops with OVERRIDING SYSTEM VALUE.
CREATE TABLE IF NOT EXISTS "events" (
  "id" BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
  "foreign_id" VARCHAR(255) NOT NULL,
  "timestamp" TIMESTAMPTZ NOT NULL,
  "type" INTEGER NOT NULL,
  "metadata" BYTEA NULL,
  "trace" BYTEA NULL
);
