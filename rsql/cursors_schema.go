package rsql

import (
	"embed"
	"fmt"
	"strings"
)

// cursorsSchemaFS holds the DDL of cursors and errors tables, one directory
// per dialect, with the default table names.
//
//go:embed schema/*/cursors.sql schema/*/string_cursors.sql schema/*/errors.sql
var cursorsSchemaFS embed.FS

// CursorsSchema returns the DDL (CREATE TABLE IF NOT EXISTS) of a cursors
// table named table for int cursors in dialect d: columns id (the
// consumer name, primary key: varbinary(255) in MySQL, text with the
// binary collation in SQLite, so that names compare byte by byte),
// last_event_id (bigint) and updated_at. The file
// schema/<dialect>/cursors.sql holds the same DDL with the default name
// "cursors", for migration tools. It panics with an "rsql:" message if table
// is not a valid identifier.
func CursorsSchema(d Dialect, table string) string {
	return tableDDL(cursorsSchemaFS, d, "cursors.sql", "cursors", table)
}

// StringCursorsSchema is CursorsSchema for string cursors
// (WithCursorStrings): last_event_id is a varchar(255) (utf8mb4_bin in
// MySQL).
func StringCursorsSchema(d Dialect, table string) string {
	return tableDDL(cursorsSchemaFS, d, "string_cursors.sql", "cursors", table)
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
	return tableDDL(cursorsSchemaFS, d, "errors.sql", "consumer_errors", table)
}

// tableDDL reads file of d's directory under schema/ in fsys and renames
// its table from def to table. It panics with an "rsql:" message if table
// is not a valid identifier.
func tableDDL(fsys embed.FS, d Dialect, file, def, table string) string {
	mustIdent("table", table)
	dd := d.impl()
	b, err := fsys.ReadFile("schema/" + dd.name() + "/" + file)
	if err != nil {
		panic(fmt.Sprintf("rsql: no %s schema for dialect %s: %v", file, dd.name(), err))
	}
	return strings.Replace(string(b), dd.quote(def), dd.quote(table), 1)
}
