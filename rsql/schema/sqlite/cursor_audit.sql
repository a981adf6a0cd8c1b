-- reflex rsql cursor audit table: one row per cursor moved by an operator
-- (CursorAuditTable.MoveCursor, `reflex cursor set|reset --execute`): the
-- consumer, the cursor before and after, who and why, whether the move
-- was forced past a held lease, and when. Keep it in the database of the
-- cursors table (a move and its row are one transaction). Consumer names
-- compare byte by byte (COLLATE BINARY, the default). A small table:
-- listing it by consumer scans it.
CREATE TABLE IF NOT EXISTS "cursor_audit" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT,
  "consumer" TEXT COLLATE BINARY NOT NULL,
  "from_cursor" TEXT COLLATE BINARY NOT NULL,
  "to_cursor" TEXT COLLATE BINARY NOT NULL,
  "reason" TEXT NOT NULL,
  "forced" INTEGER NOT NULL,
  "created_at" DATETIME NOT NULL
);
