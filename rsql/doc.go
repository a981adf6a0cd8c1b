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
// parseTime=true. Package rsqltest creates the tables in tests (package
// rsqltest/sqlitetest opens SQLite databases for them).
//
// # Values the columns cannot hold
//
// MySQL and MariaDB in a non-strict SQL mode store a value that does not
// fit its column cut or clamped, without an error. The SQL inserter of an
// [EventsTable] therefore reads the table's columns from the catalog once
// (at its first insert) and refuses, before writing anything, a foreign
// ID, metadata or trace longer than its column, text that is not valid
// UTF-8 (or outside a utf8mb3 column's characters), and a type or integer
// foreign ID outside its column's range: the error wraps [ErrInvalidValue]
// and names the table, the column and the limit, whatever the session's
// SQL mode. A table without the configured columns gives [ErrSchema].
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
// switch of [DisableCache]. The cache holds at most 10,000 events and
// about 4 MiB of them.
//
// # Leases and effectively-once consumers
//
// A [LeasesTable] keeps the leases with which the runners of package
// rpatterns (RunSharded, RunLeased, HoldLease) share a consumer's shards
// between processes: one row per (name, shard) with owner, epoch
// (incremented by every claim) and expiry in database time
// ([LeasesSchema]). Cursor writes through a store fenced by a lease
// ([LeaseStore.FenceCursorStore]) take effect only while it is held,
// checked in the write's own statement, which locks the lease row so that
// a claim waits for it: a process paused past its lease cannot move a
// cursor ([ErrLeaseLost]). A [TxConsumer] commits an event's effects and
// its cursor in one transaction (effectively once).
//
// # Goroutines
//
// The package starts these goroutines, each with an owner that stops it
// and waits for it:
//
//   - The gap-serving goroutine of an [EventsTable], which calls its gap
//     listeners and runs the gap filler of [FillGaps]: started by the
//     first [EventsTable.ListenGaps] or [FillGaps] on the table, or by
//     [EventsTable.Clone] of a table whose gaps FillGaps fills (on the
//     clone). Owner: the table; [EventsTable.Close],
//     [EventsTable.StopGapListener] and [StopFillingGaps] stop it.
//   - The poller of a head watcher, one per table name, ID column and
//     *sql.DB in the process, which queries the maximum ID while a stream
//     waits at the head: started when a stream starts waiting, it exits
//     when none waits. Owner: the streams of the table; the last of them
//     to release the watcher (a client's Close, or the end of a Recv)
//     cancels the poller's query if one runs and waits for it.
//   - The read-ahead goroutine of a stream client catching up, which loads
//     the next batch while the consumer handles the current one. Owner:
//     the client; its Close stops it and waits for it.
//   - The flush loop of a [CursorsTable] in asynchronous mode (the
//     default), which writes buffered cursors every period: started by
//     its first SetCursor. Owner: the table; [CursorsTable.Close] stops it
//     and waits for it. A [CursorStore] made by [CursorsTable.ToStore]
//     with options owns its own table's loop; its Close, or the Close of
//     the table it was made from, stops it.
//   - The batch goroutine of a [TxConsumer] run, which commits a batch
//     whose period is up: started by Reset. Owner: the run; it is stopped
//     and waited for when the run ends, or by Stop.
//
// # Locks
//
// Where two locks are held together, the head watcher registry's lock is
// taken before a watcher's lock. Every other lock of the events side (the
// cache, gap listeners, gap metrics, stream clients, notifiers) is never
// held while taking another; a table's prepared-statement lock (shared,
// while a load's query starts) and its columns' lock (while the catalog
// is read) are held only across database/sql calls. A [CursorsTable]
// takes its flush semaphore (flushes, and GetCursor in asynchronous mode),
// then its catalog locks (the lazily read columns), then its buffer lock,
// which is never held while taking another lock. An [ErrorsTable] has
// only its catalog locks. A TxConsumer's lifeMu and mu are never held
// together; its mu is taken before the catalog locks and before a lease's
// lost callback.
package rsql
