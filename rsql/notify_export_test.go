package rsql

// Internals for the tests of the PostgreSQL notify connection.

// PGSendGap is pgSendGap: the least time between a NOTIFY transaction
// that answered asked notify calls and the next.
var PGSendGap = pgSendGap
