// Package rsql provides reflex event streams, cursor stores and
// consumer-error stores backed by SQL tables (MySQL/MariaDB).
//
// An [EventsTable] inserts events in the caller's transaction and streams
// them as a [reflex.StreamFunc]; a [CursorsTable] is a [reflex.CursorStore];
// an [ErrorsTable] records consumer errors for dead-lettering.
//
// Table and column names are validated when a table is constructed; every
// SQL difference between database engines lives behind one unexported
// dialect.
package rsql
