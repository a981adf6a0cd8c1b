-- reflex rsql events table: one row per event, inserted in the same
-- transaction as the data change it describes. Rename the table as needed
-- (one events table per data table); keep the column types.
CREATE TABLE IF NOT EXISTS `events` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `foreign_id` VARCHAR(255) NOT NULL,
  `timestamp` DATETIME(6) NOT NULL,
  `type` INT NOT NULL,
  `metadata` BLOB NULL,
  `trace` BLOB NULL,
  PRIMARY KEY (`id`)
);
