-- reflex rsql cursor audit table: one row per cursor moved by an operator
-- (CursorAuditTable.MoveCursor, `reflex cursor set|reset --execute`): the
-- consumer, the cursor before and after, who and why, whether the move
-- was forced past a held lease, and when. Keep it in the database of the
-- cursors table (a move and its row are one transaction). Consumer names
-- compare byte by byte (VARBINARY), as in the cursors table.
CREATE TABLE IF NOT EXISTS `cursor_audit` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `consumer` VARBINARY(255) NOT NULL,
  `from_cursor` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `to_cursor` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `reason` VARCHAR(1024) CHARACTER SET utf8mb4 NOT NULL,
  `forced` TINYINT NOT NULL,
  `created_at` DATETIME(6) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `consumer_id` (`consumer`, `id`)
);
