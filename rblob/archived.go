package rblob

import (
	"context"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
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
// without encoding/json, the next object is read and decoded ahead (on the
// client's read-ahead goroutine, see Stream) while the current one is
// consumed (so a client holds the events of up to 8 MiB of records
// ahead), and the memory of events is allocated in blocks of many events.
// So events share memory: an event, or any of its fields,
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
	s := &archiveState{after: -1, last: -1, allowEmpty: b.cfg.allowEmpty}
	if after != "" && !o.StreamFromHead {
		id, ok := parseDecimal(after)
		if !ok {
			return nil, fmt.Errorf("%w %s: want a non-negative decimal event id", ErrInvalidCursor, bounded.Quote(after))
		}
		s.after = id
	}
	return b.newClient(ctx, o, "", nil, s)
}

// archiveState is the state of a StreamArchived client across objects.
type archiveState struct {
	after      int64 // deliver only events with IDs above; -1 for all
	last       int64 // ID of the last record read; -1 before the first
	allowEmpty bool
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

// prepare runs on the read-ahead goroutine once an object is fetched: it
// decodes the events of the bytes read, so that the client's goroutine
// only hands them out. It uses no state the client changes.
func (s *archiveState) prepare(ctx context.Context, f *fetched) {
	r, err := newArchiveReader(f, s.after, s.allowEmpty)
	if err != nil {
		f.preErr = err
		return
	}
	r.decodeAhead(ctx)
	f.pre = r
}

// open returns the reader of an archive object, prepared ahead or not.
func (s *archiveState) open(f *fetched) (*archiveReader, error) {
	r, _ := f.pre.(*archiveReader)
	err := f.preErr
	if r == nil && err == nil {
		r, err = newArchiveReader(f, s.after, s.allowEmpty)
	}
	if err != nil {
		return nil, err
	}
	if r.first <= s.last {
		return nil, &ObjectError{Key: f.key, Offset: -1, Err: fmt.Errorf("%w: first event id %d is not after the last one read, %d", ErrNotArchived, r.first, s.last)}
	}
	r.s = s
	return r, nil
}

// newArchiveReader starts reading an archive object; it delivers the
// events with IDs above after.
func newArchiveReader(f *fetched, after int64, allowEmpty bool) (*archiveReader, error) {
	first, ok := parseArchiveKey("", f.key)
	if !ok {
		return nil, &ObjectError{Key: f.key, Offset: -1, Err: errNotArchiveKey("")}
	}
	return &archiveReader{
		f: f, first: first, after: after, last: -1, allowEmpty: allowEmpty,
		dec: newJSONDecoder(&f.src), arena: arena{block: true},
	}, nil
}

// archiveReader is the objectReader of StreamArchived.
type archiveReader struct {
	f          *fetched
	s          *archiveState // the client's, once open; nil before
	first      int64         // the first event ID, from the key
	after      int64         // deliver only events with IDs above
	last       int64         // ID of the last record read; -1 before
	dec        *jsonDecoder
	idx        int // index of the next record
	allowEmpty bool
	raw        rawRecord
	arena      arena
	// ready holds events decoded ahead, to deliver before decoding more;
	// readyErr, if set, follows them.
	ready    []*reflex.Event
	readyErr error
}

func (r *archiveReader) object() *fetched { return r.f }

// decodeAhead decodes the records of the bytes already read, in the form
// the Archiver writes, into ready; it stops before anything else (more
// input to read, another form) or at an error, which then follows ready.
// It checks ctx every checkEvery records.
func (r *archiveReader) decodeAhead(ctx context.Context) {
	const checkEvery = 1024
	d := r.dec
	for i := 1; d.slow == nil; i++ {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return
		}
		for d.pos < len(d.buf) && isSpace(d.buf[d.pos]) {
			d.pos++
		}
		if d.pos == len(d.buf) {
			return
		}
		n, st := parseRecord(d.buf[d.pos:], &r.raw)
		if st != parsed {
			return
		}
		e, ok := r.raw.event(&r.arena)
		if !ok {
			return
		}
		d.pos += n
		id, err := r.check(r.raw.id)
		if err != nil {
			r.readyErr = err
			return
		}
		if id > r.after {
			r.ready = append(r.ready, e)
		}
	}
}

// next returns the next event after the cursor, or io.EOF.
func (r *archiveReader) next() (*reflex.Event, error) {
	if len(r.ready) > 0 {
		e := r.ready[0]
		r.ready[0] = nil
		r.ready = r.ready[1:]
		return e, nil
	}
	if r.readyErr != nil {
		return nil, r.readyErr
	}
	for {
		e, id, err := r.read()
		switch {
		case errors.Is(err, io.EOF) && r.idx == 0 && !r.allowEmpty:
			return nil, &ObjectError{Key: r.f.key, Offset: 0, Err: ErrEmptyObject}
		case errors.Is(err, io.EOF):
			if r.s != nil {
				r.s.last = r.last
			}
			return nil, io.EOF
		case err != nil:
			return nil, err
		case id > r.after:
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
		e, ok := r.raw.event(&r.arena)
		if !ok {
			break
		}
		d.pos += n
		id, err := r.check(r.raw.id)
		return e, id, err
	}
	rec, err := d.next()
	if err != nil {
		return nil, 0, r.fail(err)
	}
	e, err := decodeRecordJSON(rec)
	if err != nil {
		return nil, 0, r.fail(err)
	}
	id, err := r.check([]byte(e.ID))
	return e, id, err
}

func (r *archiveReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return &ObjectError{Key: r.f.key, Offset: r.idx, Err: err}
}

// check checks the ID of the record just read.
func (r *archiveReader) check(rawID []byte) (int64, error) {
	id, ok := parseDecimal(rawID)
	switch {
	case !ok:
		return 0, r.fail(fmt.Errorf("%w: event id %s is not a decimal integer", ErrNotArchived, bounded.Quote(string(rawID))))
	case r.idx == 0 && id != r.first:
		return 0, r.fail(fmt.Errorf("%w: first event id %d does not match the key", ErrNotArchived, id))
	case id <= r.last:
		return 0, r.fail(fmt.Errorf("%w: event id %d after %d: ids must increase", ErrNotArchived, id, r.last))
	}
	r.last = id
	r.idx++
	return id, nil
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
