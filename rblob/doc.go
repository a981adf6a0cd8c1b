// Package rblob streams reflex events from a gocloud.dev blob bucket and
// archives any reflex stream into one.
//
// A bucket read by rblob is an append-only, strictly ordered log: every
// object is immutable once written, and objects are written in the order of
// their keys (as Firehose writes YYYY/MM/DD/... keys, or as [Archiver]
// writes zero-padded event IDs). Each object holds a sequence of records,
// by default concatenated JSON values (see [JSONDecoder]); each record is
// one event.
//
// [Bucket.Stream] is a [reflex.StreamFunc]. Its events carry only ID (the
// cursor, see [Cursor]), Timestamp (the object's modification time) and
// MetaData (the record's bytes); Type is 0 and ForeignID is empty. Streams
// of objects written by an [Archiver] carry whole events in MetaData: turn
// them back with [DecodeArchived]. [Bucket.StreamArchived] is the
// [reflex.StreamFunc] of the archived events themselves, with their own IDs
// as cursors: it starts after any event ID without reading the objects
// before it, and decodes records without encoding/json, allocating memory
// for many events at a time.
//
// Any gocloud.dev driver works (file://, mem://, s3://, gs://, azblob://);
// the caller imports the driver package. Listing never depends on a
// driver's types: rblob lists the bucket (or the bucket view of a "prefix"
// URL parameter, which may end in the middle of a file name) and skips keys
// at or before its position itself. [WithListStartAfter] lets a caller plug
// a driver-specific hook, such as S3's StartAfter, to make the driver skip
// them instead.
//
// Malformed data is never skipped silently: a record that does not decode,
// a truncated object, an object without records (unless
// [WithEmptyObjects]), an object that appears below a stream's position
// after the stream passed it, or a key that cannot be part of a cursor ends
// the stream with an [*ObjectError] naming the object and record.
//
// Objects must appear whole: with fileblob, keep its default of writing to
// a temporary file outside the bucket folder (the "no_tmp_dir" URL
// parameter would let a stream list, and fail on, a half-written
// "<key>.<n>.tmp" file).
//
// Goroutines: each stream client (of Stream or StreamArchived) opens the
// next object and reads its first bytes (up to 8 MiB) on a goroutine of
// its own while the current object is consumed, one object at a time
// (for StreamArchived, it also decodes the events in those bytes); the
// client's Close (or a Recv error) cancels it and waits for it. An
// [Archiver] with a maximum age (WithArchiveMaxAge, on by default) runs
// one goroutine that writes objects by age; Archiver.Close stops it and
// waits for it. rblob starts no other goroutine.
//
// Lock order: a stream client's lock is held by Recv and Close; an
// Archiver's lock by Consume, Flush, Reset and its age goroutine. Neither
// is held while taking the other.
//
// Metrics (Prometheus, label bucket): reflex_rblob_read_total (objects
// opened), reflex_rblob_list_skip_total (listed keys skipped client-side),
// reflex_rblob_read_bytes_total and reflex_rblob_decode_errors_total
// (streams ended by an *ObjectError); an
// Archiver records reflex_rblob_archived_objects_total,
// reflex_rblob_archived_events_total and
// reflex_rblob_archive_skipped_events_total (label archiver).
package rblob
