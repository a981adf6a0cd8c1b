-- reflex rsql cursors table for string cursors (WithCursorStrings): one row
-- per consumer holding the ID of the last event it consumed. Consumer names
-- are compared byte by byte (VARBINARY); cursors are stored whole
-- (utf8mb4) and compared byte by byte.
CREATE TABLE IF NOT EXISTS `cursors` (
  `id` VARBINARY(255) NOT NULL,
  `last_event_id` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `updated_at` DATETIME(6) NOT NULL,
  PRIMARY KEY (`id`)
);
