// Package rsql provides reflex event streams, cursor stores and
// consumer-error stores backed by SQL tables: MySQL/MariaDB (the default),
// PostgreSQL (see [PostgreSQL]) and SQLite (see [SQLite]).
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
// parseTime=true. PostgreSQL databases are opened with pgx's
// database/sql driver (import github.com/jackc/pgx/v5/stdlib; driver name
// "pgx"). Package rsqltest creates the tables in tests (packages
// rsqltest/sqlitetest and rsqltest/pgtest open SQLite and PostgreSQL
// databases for them).
//
// # Dialects
//
// Each table takes its dialect from an option (WithEventsDialect,
// WithCursorsDialect, WithErrorsDialect, WithLeasesDialect; MySQL by
// default); it is never guessed from the database, since a table is often
// used through a *sql.Tx, whose driver cannot be seen. A table whose
// dialect is not its database's fails at its first statement with an
// error wrapping [ErrWrongDialect]. Switching engines changes the DSN and
// these options, nothing else.
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
// PostgreSQL refuses a value that does not fit with an error rather than
// cutting it; rsql reads its catalog too and refuses the same values (and
// the NUL character, which its text types cannot hold) with
// ErrInvalidValue before sending them.
//
// # Events and gaps
//
// Event IDs are auto-increment integers, allocated when a row is inserted
// but visible only when its transaction commits, in any order. A stream
// therefore never passes a missing ID: it waits at the gap until the ID
// is committed or filled. [FillGaps] fills the IDs of rolled-back
// transactions with noop events (foreign ID "0", type 0) that streams
// skip, after checking that no transaction is still writing them (on
// MySQL with a read-uncommitted query). Without a gap filler a
// rolled-back insert blocks the table's streams for ever. A stream from
// the beginning also waits while an ID below its first event is being
// written.
//
// [FillGaps] fills, in every process that calls it, the gaps that the
// process's own streams detect. With several replicas of a service,
// [FillGapsLeased] fills a table's gaps in one process at a time: the one
// that holds the lease [GapFillerLeaseName] in a [LeasesTable] switches
// its filler on and streams the table itself (from the first open gap
// within 100,000 IDs of the head when it takes the lease), so that it
// finds the gaps that other processes' streams wait at; the others do not
// fill, and one of them takes over when the holder stops or dies.
//
// # Gaps on PostgreSQL
//
// A PostgreSQL identity ID is taken from its sequence while the INSERT
// runs, not at commit, so IDs commit out of order there too, and
// PostgreSQL has no read-uncommitted level to see a row still being
// written. Its unique index does see it, and FillGaps relies on that:
//
//   - A hole is told from a transaction still open by the ID's unique
//     index. After it first finds an ID missing below a committed one,
//     the filler waits 50 ms, reads again, then inserts a noop with each
//     ID still missing: INSERT ... OVERRIDING SYSTEM VALUE ... ON
//     CONFLICT (id) DO NOTHING, in its own transaction. An ID whose row a
//     transaction has written but not committed makes that INSERT wait
//     for the transaction: if it commits, the INSERT does nothing and the
//     stream delivers the event; if it rolls back (or the ID was never
//     used: nextval in a rolled-back transaction), the noop is inserted.
//     The wait is bounded by lock_timeout in the filler's transaction (1
//     s), after which it reads again and waits again; a stream waits at
//     the ID meanwhile.
//   - The race that remains: a writer that has taken its ID but not
//     written its row for longer than the 50 ms (the ID's default and the
//     index entry are one INSERT statement apart; a slow BEFORE trigger or
//     a paused server process sit between them) while a later ID commits.
//     The noop takes the ID first and the writer's INSERT fails with a
//     duplicate key, reported as [ErrIDFilled]: its transaction aborts
//     with its data change. No event is lost: none is skipped while it
//     may still commit, and the one that cannot commit was never
//     delivered; the writer sees the failure and retries.
//   - The sequence must hand out one value at a time (CACHE 1, the default
//     and the shipped DDL's): with a cache, each session would write IDs
//     taken long before, all of which the filler could take. Inserts
//     refuse an events table whose ID sequence caches more (ErrSchema).
//   - A stream from the beginning whose first row is not ID 1 waits until
//     every transaction that held a write lock on the table when it first
//     looked has ended (from pg_locks): any ID below that could still
//     commit belongs to one of them.
//
// The gap metrics are those of MySQL.
//
// # Tailing
//
// All streams of one table (same name and *sql.DB) in a process share one
// head watcher: while any of them waits at the head, a single goroutine
// queries the table's maximum ID every poll interval, 50 ms by default
// ([WithEventsBackoff]), and wakes the streams when it reaches the ID one
// of them needs next. Inserts in the process wake them at once
// through the [NotifyFunc] they return.
//
// On PostgreSQL, inserts in other processes wake them too, with
// LISTEN/NOTIFY on a channel per table ("reflex_" and the table's name):
// the NotifyFunc of an insert, called after the commit, makes the
// process's notify connection to that database send a NOTIFY, in its own
// short transaction, debounced: one NOTIFY transaction at a time, at
// least 1 ms after the last and 1 ms more per call the last one answered
// (at most 4 ms), carrying every NOTIFY asked for meanwhile, so a call
// waits at most 1 ms more while calls are sparse and at most 4 ms at
// thousands per second, when the server sees at most about 250 NOTIFY
// transactions per second; the head watcher of a table whose stream
// waits makes the same connection LISTEN, and wakes the streams on every
// notification from another process. A NOTIFY nobody listens to still
// costs the server a transaction, so NOTIFYs go only to channels another
// session listens on: a listening session holds the shared advisory lock
// (1919314040, hashtext(channel)) — the notify connection takes it with
// its LISTEN, and a session that LISTENs outside rsql must take it too
// (SELECT pg_advisory_lock_shared(1919314040, hashtext('reflex_events')))
// — and the notify connection looks for one (pg_try_advisory_xact_lock)
// before the first NOTIFY on a channel and then at most every 250 ms; a
// NotifyFunc of a channel without listeners returns at once. A process
// that starts listening is therefore notified at most 250 ms later; until
// then its poll finds new rows. The notify connection is one
// dedicated connection per database per process (application_name
// "reflex-notify"), made with the configuration of a connection of the
// caller's pool, never taken from the pool. When it starts listening,
// and again after it reconnected (it retries with a backoff of 100 ms to
// 5 s when the connection fails), it wakes the streams, so that they read
// what committed while nothing listened; meanwhile the watcher's poll,
// which runs at its interval regardless, finds new rows. A NOTIFY from a
// trigger on the events table (schema/postgres/events_notify_trigger.sql)
// is opt-in only: PostgreSQL serialises the commits of all transactions
// that notify on one lock, held through the commit, so every writer would
// wait for the others, and a full notification queue would fail the
// writers' commits. The read-through cache of an
// [EventsTable] serves the recent events to all its streams; streams far
// behind the head bypass it and read large batches ahead of the consumer.
// The head watchers are the package's only process-wide state, with the
// switch of [DisableCache]. The cache holds the events added in the last
// second and those a stream that loaded in the last one to two seconds
// has not read yet, at most 10,000 events and about 4 MiB: streams that
// keep up with the head cost it little memory, and a stream that pauses
// longer reads its next events from the database.
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
//     listeners and runs the gap filler of [FillGaps] and, while it holds
//     its lease, that of [FillGapsLeased]: started by the first
//     [EventsTable.ListenGaps] or [FillGaps] on the table, by
//     [EventsTable.Clone] of a table whose gaps FillGaps fills (on the
//     clone), or when FillGapsLeased takes the lease. Owner: the table;
//     [EventsTable.Close], [EventsTable.StopGapListener] and
//     [StopFillingGaps] stop it; FillGapsLeased stops it, and waits for
//     it, when it loses or releases the lease if no other listener is
//     left.
//   - The lease loop of [FillGapsLeased] (rpatterns.HoldLease) runs on the
//     caller's goroutine; the goroutine HoldLease starts while it holds
//     the lease runs the gap scan (a stream of the table, with its
//     read-ahead goroutine while far behind the head). Owner: the
//     FillGapsLeased call, which ends them when the lease is lost or its
//     context ends, and waits for them before it returns.
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
//   - The goroutine of a PostgreSQL notify connection, one per database in
//     the process, which holds the connection, LISTENs for waiting streams,
//     sends the NOTIFYs of NotifyFuncs and reconnects: started by the first
//     NotifyFunc call or waiting stream of an [EventsTable] on that
//     database. Owner: the EventsTables that used it; the [EventsTable.Close]
//     of the last stops it (after sending the pending NOTIFYs, within a
//     second) and waits for it. It also closes its connection and exits by
//     itself after a minute without a waiting stream or a notify (a table
//     never closed leaves no connection open); the next use starts it
//     again.
//   - The goroutine that registers a PostgreSQL head watcher with its
//     notify connection (it reads a pooled connection's configuration),
//     started when a stream first waits. Owner: the head watcher; its
//     last release waits for it.
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
// lost callback. On PostgreSQL, an EventsTable's lock of its notify
// connections is taken before the registry of notify connections, before
// a connection's own lock, which is never held while waking a watcher.
package rsql
