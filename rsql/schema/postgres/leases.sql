-- reflex rsql leases table: one row per (consumer name, shard) with its
-- owner, epoch (fencing token, incremented by every claim) and expiry,
-- computed and compared in database time. Rows with a negative shard are
-- the members of a consumer sharded across processes. Rename the table as
-- needed; keep it in the database of the cursors table (fenced cursor
-- writes join the two). Names and owners compare byte by byte (COLLATE "C").
CREATE TABLE IF NOT EXISTS "leases" (
  "name" VARCHAR(255) COLLATE "C" NOT NULL,
  "shard" INTEGER NOT NULL,
  "shards" INTEGER NOT NULL,
  "owner" VARCHAR(255) COLLATE "C" NOT NULL,
  "epoch" BIGINT NOT NULL,
  "expires_at" TIMESTAMPTZ NOT NULL,
  PRIMARY KEY ("name", "shard")
);
