package rsql

import "github.com/jackc/pgx/v5"

// Internals for the tests of the PostgreSQL notify connection.

// PGSendGap is pgSendGap: the least time between a NOTIFY transaction
// that answered asked notify calls and the next.
var PGSendGap = pgSendGap

// PGConnInfoOf is what an insert through conn records of it (pgCapture).
func PGConnInfoOf(conn *pgx.Conn) { pgConnInfoOf(conn) }
