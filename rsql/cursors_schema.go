package rsql

// CursorsSchema returns the DDL (CREATE TABLE IF NOT EXISTS) of a cursors
// table named table for int cursors in dialect d: columns id (the
// consumer name, primary key: varbinary(255) in MySQL, varchar(255)
// COLLATE "C" in PostgreSQL, text with the binary collation in SQLite, so
// that names compare byte by byte),
// last_event_id (bigint) and updated_at. The file
// schema/<dialect>/cursors.sql holds the same DDL with the default name
// "cursors", for migration tools. It panics with an "rsql:" message if table
// is not a valid identifier.
func CursorsSchema(d Dialect, table string) string {
	return schemaDDL(d, "cursors.sql", "cursors", table)
}

// StringCursorsSchema is CursorsSchema for string cursors
// (WithCursorStrings): last_event_id is a varchar(255) (utf8mb4_bin in
// MySQL).
func StringCursorsSchema(d Dialect, table string) string {
	return schemaDDL(d, "string_cursors.sql", "cursors", table)
}

// ErrorsSchema returns the DDL of a consumer-errors table named table in
// dialect d (see ErrorsTable): id (auto-increment), consumer (compared
// byte by byte, as the id of CursorsSchema), event_id
// (bigint), error_msg, created_at, updated_at, error_status, unique on
// (consumer, event_id). The events table that receives the "error
// recorded" events is an ordinary events table (EventsSchema, default name
// consumer_errors_events). The file schema/<dialect>/errors.sql holds the
// DDL with the default name "consumer_errors". It panics with an "rsql:"
// message if table is not a valid identifier.
func ErrorsSchema(d Dialect, table string) string {
	return schemaDDL(d, "errors.sql", "consumer_errors", table)
}
