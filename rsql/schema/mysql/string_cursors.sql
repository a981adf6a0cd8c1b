-- reflex rsql cursors table for string cursors (WithCursorStrings): one row
-- per consumer holding the ID of the last event it consumed.
CREATE TABLE IF NOT EXISTS `cursors` (
  `id` VARCHAR(255) NOT NULL,
  `last_event_id` VARCHAR(255) NOT NULL,
  `updated_at` DATETIME(6) NOT NULL,
  PRIMARY KEY (`id`)
);
