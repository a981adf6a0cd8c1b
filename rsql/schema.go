package rsql

import (
	"embed"
	"fmt"
	"strings"
)

// eventsSchemaFS holds the DDL of events tables, one directory per
// dialect, with the default table name "events".
//
//go:embed schema/*/events.sql
var eventsSchemaFS embed.FS

// EventsSchema returns the DDL (CREATE TABLE IF NOT EXISTS) of an events
// table named table in dialect d, with the default column names: id
// (auto-increment primary key), foreign_id (varchar(255)), timestamp
// (datetime(6)), type (int) and the nullable blob columns metadata and
// trace (use them with WithEventMetadataField("metadata") and
// WithEventTraceField("trace")). The file schema/<dialect>/events.sql
// holds the same DDL with the default name, for migration tools. It
// panics with an "rsql:" message if table is not a valid identifier.
func EventsSchema(d Dialect, table string) string {
	mustIdent("events table", table)
	dd := d.impl()
	b, err := eventsSchemaFS.ReadFile("schema/" + dd.name() + "/events.sql")
	if err != nil {
		panic(fmt.Sprintf("rsql: no events schema for dialect %s: %v", dd.name(), err))
	}
	return strings.Replace(string(b), dd.quote("events"), dd.quote(table), 1)
}
