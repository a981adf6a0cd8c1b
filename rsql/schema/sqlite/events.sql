-- reflex rsql events table: one row per event, inserted in the same
-- transaction as the data change it describes. Rename the table as needed
-- (one events table per data table); keep the column types. AUTOINCREMENT
-- keeps IDs of deleted rows from being reused.
CREATE TABLE IF NOT EXISTS "events" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT,
  "foreign_id" TEXT NOT NULL,
  "timestamp" DATETIME NOT NULL,
  "type" INTEGER NOT NULL,
  "metadata" BLOB NULL,
  "trace" BLOB NULL
);
