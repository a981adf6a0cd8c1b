-- reflex rsql consumer errors table (dead-lettered events): one row per
-- (consumer, event). Its events go to an events table with a metadata
-- column, by default `consumer_errors_events` (see events.sql). Consumer
-- names are compared byte by byte (VARBINARY).
CREATE TABLE IF NOT EXISTS `consumer_errors` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `consumer` VARBINARY(255) NOT NULL,
  `event_id` BIGINT NOT NULL,
  `error_msg` TEXT NOT NULL,
  `created_at` DATETIME(6) NOT NULL,
  `updated_at` DATETIME(6) NOT NULL,
  `error_status` INT NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY (`consumer`, `event_id`)
);
