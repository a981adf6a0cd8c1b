-- reflex rsql consumer errors table (dead-lettered events): one row per
-- (consumer, event). Its events go to an events table with a metadata
-- column, by default "consumer_errors_events" (see events.sql). Consumer
-- names are compared byte by byte (COLLATE BINARY, the default).
CREATE TABLE IF NOT EXISTS "consumer_errors" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT,
  "consumer" TEXT COLLATE BINARY NOT NULL,
  "event_id" INTEGER NOT NULL,
  "error_msg" TEXT NOT NULL,
  "created_at" DATETIME NOT NULL,
  "updated_at" DATETIME NOT NULL,
  "error_status" INTEGER NOT NULL,
  UNIQUE ("consumer", "event_id")
);
