package rsql

import (
	"embed"
	"fmt"
	"strings"
)

// schemaFS holds the DDL of every table of this package, one directory
// per dialect (named by dialect.name), each file with its table's default
// name.
//
//go:embed schema/*/*.sql
var schemaFS embed.FS

// schemaDDL returns the DDL of file in d's schema directory with its table
// renamed from def (the file's default name) to table. It panics with an
// "rsql:" message if table is not a valid identifier, or if d has no such
// file (a programming error).
func schemaDDL(d Dialect, file, def, table string) string {
	mustIdent("table", table)
	dd := d.impl()
	b, err := schemaFS.ReadFile("schema/" + dd.name() + "/" + file)
	if err != nil {
		panic(fmt.Sprintf("rsql: no %s schema for dialect %s: %v", file, dd.name(), err))
	}
	return strings.Replace(string(b), dd.quote(def), dd.quote(table), 1)
}

// EventsSchema returns the DDL (CREATE TABLE IF NOT EXISTS) of an events
// table named table in dialect d, with the default column names: id
// (auto-increment primary key; on PostgreSQL a bigint identity whose
// sequence caches one value, as the gap design needs), foreign_id
// (varchar(255)), timestamp (datetime(6); timestamptz on PostgreSQL),
// type (int) and the nullable blob (bytea) columns metadata and trace
// (use them with WithEventMetadataField("metadata") and
// WithEventTraceField("trace")). The file schema/<dialect>/events.sql
// holds the same DDL with the default name, for migration tools. It
// panics with an "rsql:" message if table is not a valid identifier.
func EventsSchema(d Dialect, table string) string {
	return schemaDDL(d, "events.sql", "events", table)
}
