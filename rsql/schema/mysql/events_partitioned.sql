-- reflex rsql events table partitioned by ID range (MySQL/MariaDB), for
-- tables so large that trimming them row by row (rsql.Trimmer) costs too
-- much: whole partitions are dropped instead, which takes no row locks and
-- frees the space at once. Same columns as events.sql; the primary key is
-- the partitioning column, as MySQL requires of every unique key. Choose
-- the range width so that a partition holds a few days of events.
CREATE TABLE IF NOT EXISTS `events` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `foreign_id` VARCHAR(255) NOT NULL,
  `timestamp` DATETIME(6) NOT NULL,
  `type` INT NOT NULL,
  `metadata` BLOB NULL,
  `trace` BLOB NULL,
  PRIMARY KEY (`id`)
)
PARTITION BY RANGE (`id`) (
  PARTITION p0 VALUES LESS THAN (10000000),
  PARTITION p1 VALUES LESS THAN (20000000),
  PARTITION p2 VALUES LESS THAN (30000000),
  PARTITION pmax VALUES LESS THAN MAXVALUE
);

-- Keep empty partitions ahead of the head (a job, before the head
-- reaches the last bounded partition): split pmax.
--
--   ALTER TABLE `events` REORGANIZE PARTITION pmax INTO (
--     PARTITION p3 VALUES LESS THAN (40000000),
--     PARTITION pmax VALUES LESS THAN MAXVALUE);
--
-- Drop the oldest partition, p0 (IDs below 10000000), only once the
-- archiver has written event 10000000 and the trim marker is on it, in the
-- partition kept, so that streams below it fail with rsql.ErrTrimmed (and
-- tiered streams read the archive) instead of waiting at a gap that the
-- gap filler would fill:
--
--   r, err := trimmer.MarkTrimmed(ctx, 10000000) // the first ID of p1
--   // proceed only if err == nil && r.Through >= 10000000 && r.Through < 20000000
--   ALTER TABLE `events` DROP PARTITION p0;
--
-- The trimmer must have WithTrimArchive (MarkTrimmed never passes the
-- archiver's cursor). Do not run Trimmer.Trim or Run on this table: they
-- would delete the partitions' rows one chunk at a time.
