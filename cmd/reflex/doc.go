// Command reflex inspects and operates reflex event streams: what is in a
// stream, how far behind each consumer is, moving a cursor safely, and
// what failed and how to deliver it again.
//
// Install it with
//
//	go install github.com/seed-e488ba2e/reflex/cmd/reflex@latest
//
// Commands (each has --help; each prints text for people, or one JSON
// object per line with --json):
//
//	reflex tail             events of an events table (--dsn) or of a reflex gRPC server (--grpc),
//	                        from an ID, the head or a time (--since 10m), filtered by type and
//	                        foreign ID, optionally following new events
//	reflex consumers        every cursor with the head, the lag in events and in seconds, the last
//	                        update and whether the consumer runs (a held lease); --watch
//	reflex cursor get       one consumer's cursor, lag and last moves
//	reflex cursor set       move a cursor forward (skip); dry run unless --execute --reason
//	reflex cursor reset     move a cursor anywhere (replay or skip); dry run unless --execute --reason
//	reflex errors list      recorded consumer errors per consumer and status
//	reflex errors show      one error in full
//	reflex errors redrive   ask the consumer's service to deliver the events again (--wait for the outcome)
//	reflex errors discard   discard errors
//	reflex gaps             open gaps of an events table and their age
//
// # Connections
//
// --dsn (or $REFLEX_DSN) names the database: mysql://user:pass@tcp(host:3306)/db
// (a go-sql-driver/mysql DSN; mysql://user:pass@host:3306/db also works;
// the session uses the UTC time zone unless the DSN sets time_zone),
// sqlite:PATH (an existing file), or postgres://user:pass@host:5432/db (a
// pgx URL). --events-dsn names another database for the events
// table. --grpc ADDR reads a reflex gRPC server (tail only), over TLS with
// the system's roots or --tls-ca FILE, with a bearer token from --token,
// --token-file or $REFLEX_TOKEN; --insecure for plaintext without a token.
//
// Tables have the default names of package rsql (events, cursors,
// consumer_errors, leases, cursor_audit); flags rename them.
//
// # Exit codes
//
//	0  done (dry runs included)
//	1  an operation failed: a database or server error, a redrive that failed or timed out
//	2  bad command line or value: unknown command or flag, missing argument, bad DSN,
//	   bad --to or --since (unparseable, in the future, past the head)
//	3  unknown table, consumer, error row or event
//	4  refused, nothing changed: the consumer is running, a set would move a cursor back,
//	   the cursor moved meanwhile, the error is already resolved or discarded
//
// # Moving cursors
//
// cursor set and cursor reset are dry runs unless --execute: they print
// the cursor before and after and how many events the move replays or
// skips. --execute needs --reason (who and why) and writes the move and a
// row of the cursor audit table (rsql.CursorAuditTable) in one
// transaction, only if the cursor did not move since it was read. They
// refuse while the consumer runs, that is while a lease of it (or of its
// sharded consumer) is held in the leases table, unless --force.
//
// # Redrive
//
// Delivering a recorded event again needs the consumer's logic, which only
// its service has. reflex errors redrive marks the rows redrive-requested;
// the service runs rsql.ErrorsTable.RunRedriver (or calls Redrive or
// RedriveTx), which delivers each requested event through the consumer and
// marks its row resolved only once the consumer succeeded.
package main
