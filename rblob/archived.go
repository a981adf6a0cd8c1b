package rblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/seed-e488ba2e/reflex"
)

// StreamArchived is a reflex.StreamFunc over the objects an Archiver wrote
// to the bucket: it streams the archived events themselves, with the ID,
// type (an int-backed EventType: compare with reflex.IsType), foreign ID,
// timestamp, metadata and trace they had in the stream the Archiver
// consumed, so that a consumer of the bucket sees what a consumer of that
// stream (such as an rsql events table) saw, cursors included.
//
// after is "" (from the first event) or an event ID: the stream starts
// with the first event whose ID is greater, wherever it is. It finds the
// object that may hold it with one listing (objects are named by their
// first event ID), reads that object from its start and no object before
// it. A cursor that is not a non-negative decimal integer (without sign or
// leading zeros) returns an error wrapping ErrInvalidCursor (and so
// reflex.ErrInvalidCursor). After the last object the stream waits for
// new ones, listing the bucket again every backoff (see WithBackoff).
//
// The bucket (or its view, with a "prefix" URL parameter or
// blob.PrefixedBucket, for an Archiver with WithArchiveKeyPrefix) must
// hold only the Archiver's objects. Anything else ends the stream with an
// *ObjectError wrapping ErrNotArchived, naming the object and record: a key
// that an Archiver does not write, a record that DecodeArchived rejects,
// an event ID that is not a decimal integer, an object whose first event
// ID is not the one in its key, IDs that do not increase (within an object
// and from one object to the next). Events are never skipped silently.
//
// Options: WithStreamToHead makes Recv return reflex.ErrHeadReached once
// the last listed object is done and a new listing finds no newer one, so
// that at that moment the bucket held no later event. WithStreamFromHead
// starts after the newest object's last event, ignoring after.
// WithStreamLag(d) delivers an event only once its timestamp is d old.
// Ordering rules, WithEmptyObjects, read-ahead, blocking, errors and Close
// are as for Stream.
//
// Decoding is fast: records in the form the Archiver writes are decoded
// without encoding/json, and the memory of events is allocated in blocks
// of many events. So events share memory: an event, or any of its fields,
// kept after Consume returns keeps its block (up to 128 events, 16 KiB of
// metadata and traces and 4 KiB of IDs) in memory; copy what you keep for
// long if that matters. Changing an event's fields or the bytes of its
// MetaData or Trace changes no other event.
//
// StreamArchived is safe for concurrent use; each client is used by one
// goroutine at a time, except that Close may be called from any goroutine.
func (b *Bucket) StreamArchived(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	o, err := resolveStreamOptions(opts)
	if err != nil {
		return nil, err
	}
	s := &archiveState{after: -1, last: -1, arena: arena{block: true}}
	if after != "" && !o.StreamFromHead {
		id, ok := parseDecimal(after)
		if !ok {
			return nil, fmt.Errorf("%w %s: want a non-negative decimal event id", ErrInvalidCursor, quote(after))
		}
		s.after = id
	}
	return b.newClient(ctx, o, "", nil, s)
}

// archiveState is the state of a StreamArchived client across objects.
type archiveState struct {
	after int64 // deliver only events with IDs above; -1 for all
	last  int64 // ID of the last record read; -1 before the first
	arena arena
}

// locate returns the key to list after for the first listing, given its
// keys: the one before the last key whose first event ID is at most
// after+1 (the object that may hold the next event), or "".
func (s *archiveState) locate(keys []string) string {
	if s.after < 0 {
		return ""
	}
	i, found := slices.BinarySearch(keys, archiveKey("", uint64(s.after)+1))
	if !found && i > 0 {
		i--
	}
	if i == 0 {
		return ""
	}
	return keys[i-1]
}

// open starts reading an archive object.
func (s *archiveState) open(f *fetched, allowEmpty bool) (*archiveReader, error) {
	first, ok := parseArchiveKey("", f.key)
	if !ok {
		return nil, &ObjectError{Key: f.key, Offset: -1, Err: errNotArchiveKey("")}
	}
	if first <= s.last {
		return nil, &ObjectError{Key: f.key, Offset: -1, Err: fmt.Errorf("%w: first event id %d is not after the last one read, %d", ErrNotArchived, first, s.last)}
	}
	return &archiveReader{f: f, s: s, first: first, dec: newJSONDecoder(&f.src), allowEmpty: allowEmpty}, nil
}

// archiveReader is the objectReader of StreamArchived.
type archiveReader struct {
	f          *fetched
	s          *archiveState
	first      int64 // the first event ID, from the key
	dec        *jsonDecoder
	idx        int // index of the next record
	allowEmpty bool
	raw        rawRecord
}

func (r *archiveReader) object() *fetched { return r.f }

// next returns the next event after the cursor, or io.EOF.
func (r *archiveReader) next() (*reflex.Event, error) {
	for {
		e, id, err := r.read()
		if errors.Is(err, io.EOF) && r.idx == 0 && !r.allowEmpty {
			return nil, &ObjectError{Key: r.f.key, Offset: 0, Err: ErrEmptyObject}
		}
		if err != nil {
			return nil, err
		}
		if id > r.s.after {
			return e, nil
		}
	}
}

// read decodes and checks the next record, or returns io.EOF.
func (r *archiveReader) read() (*reflex.Event, int64, error) {
	d := r.dec
	for d.slow == nil {
		if err := d.skipSpace(); err != nil {
			return nil, 0, r.fail(err)
		}
		n, st := parseRecord(d.buf[d.pos:], &r.raw)
		if st == short && d.rerr == nil {
			d.fill()
			continue
		}
		if st != parsed {
			break
		}
		e, ok := r.raw.event(&r.s.arena)
		if !ok {
			break
		}
		d.pos += n
		return r.check(e, r.raw.id)
	}
	rec, err := d.next()
	if err != nil {
		return nil, 0, r.fail(err)
	}
	e, err := decodeRecordJSON(rec)
	if err != nil {
		return nil, 0, r.fail(err)
	}
	return r.check(e, []byte(e.ID))
}

func (r *archiveReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return &ObjectError{Key: r.f.key, Offset: r.idx, Err: err}
}

// check checks the ID of the record just read.
func (r *archiveReader) check(e *reflex.Event, rawID []byte) (*reflex.Event, int64, error) {
	id, ok := parseDecimal(rawID)
	switch {
	case !ok:
		return nil, 0, r.fail(fmt.Errorf("%w: event id %s is not a decimal integer", ErrNotArchived, quote(string(rawID))))
	case r.idx == 0 && id != r.first:
		return nil, 0, r.fail(fmt.Errorf("%w: first event id %d does not match the key", ErrNotArchived, id))
	case id <= r.s.last:
		return nil, 0, r.fail(fmt.Errorf("%w: event id %d after %d: ids must increase", ErrNotArchived, id, r.s.last))
	}
	r.s.last = id
	r.idx++
	return e, id, nil
}

// archiveKey returns the key of the archive object whose first event ID is
// first.
func archiveKey(prefix string, first uint64) string {
	return fmt.Sprintf("%s%0*d%s", prefix, archiveIDWidth, first, ArchiveKeySuffix)
}

// parseArchiveKey returns the first event ID of an archive object key.
func parseArchiveKey(prefix, key string) (int64, bool) {
	s, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ArchiveKeySuffix)
	if !ok || len(s) != archiveIDWidth {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil
}

func errNotArchiveKey(prefix string) error {
	return fmt.Errorf("%w: not an archive object key (want %q, %d digits, %q)", ErrNotArchived, prefix, archiveIDWidth, ArchiveKeySuffix)
}
