-- reflex rsql cursors table: one row per consumer holding the ID of the
-- last event it consumed (int cursors). Rename the table as needed.
-- Consumer names are compared byte by byte (VARBINARY): names that differ
-- only in case, accents or trailing spaces are different consumers.
CREATE TABLE IF NOT EXISTS `cursors` (
  `id` VARBINARY(255) NOT NULL,
  `last_event_id` BIGINT NOT NULL,
  `updated_at` DATETIME(6) NOT NULL,
  PRIMARY KEY (`id`)
);
