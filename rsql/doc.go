// Package rsql provides reflex event streams, cursor stores and
// consumer-error stores backed by SQL tables: MySQL/MariaDB (the default)
// and SQLite (see [SQLite]).
//
// An [EventsTable] inserts events in the caller's transaction and streams
// them as a [reflex.StreamFunc]; a [CursorsTable] is a [reflex.CursorStore];
// an [ErrorsTable] records consumer errors for dead-lettering. Table and
// column names are validated when a table is constructed; every SQL
// difference between database engines lives behind one unexported dialect.
//
// # Schema
//
// [EventsSchema], [CursorsSchema] and [ErrorsSchema] return the DDL of
// each table; the same DDL, with default table names, ships as plain .sql
// files under schema/<dialect>/ for migration tools. MySQL DSNs must set
// parseTime=true. Package rsqltest creates the tables in tests.
//
// # Events and gaps
//
// Event IDs are auto-increment integers, allocated when a row is inserted
// but visible only when its transaction commits, in any order. A stream
// therefore never passes a missing ID: it waits at the gap until the ID
// is committed or filled. [FillGaps] fills the IDs of rolled-back
// transactions with noop events (foreign ID "0", type 0) that streams
// skip, after checking with a read-uncommitted query that no transaction
// is still writing them. Without a gap filler a rolled-back insert blocks
// the table's streams for ever. A stream from the beginning also waits
// while an ID below its first event is being written.
//
// # Tailing
//
// All streams of one table (same name and *sql.DB) in a process share one
// head watcher: while any of them waits at the head, a single goroutine
// queries the table's maximum ID every poll interval, 50 ms by default
// ([WithEventsBackoff]), and wakes the streams when it reaches the ID one
// of them needs next. Inserts in the process wake them at once
// through the [NotifyFunc] they return. The read-through cache of an
// [EventsTable] serves the recent events to all its streams; streams far
// behind the head bypass it and read large batches ahead of the consumer.
// The head watchers are the package's only process-wide state, with the
// switch of [DisableCache].
//
// # Locks
//
// Where two locks are held together, the head watcher registry's lock is
// taken before a watcher's lock. Every other lock of the events side (the
// cache, gap listeners, gap metrics, stream clients, notifiers) is never
// held while taking another. A [CursorsTable] takes its flush lock before
// its buffer lock.
package rsql
