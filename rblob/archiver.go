package rblob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gocloud.dev/blob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// Archiver defaults.
const (
	// DefaultArchiveMaxEvents is the number of events after which an
	// Archiver writes an object.
	DefaultArchiveMaxEvents = 10000
	// DefaultArchiveMaxAge is how long an Archiver holds an object's first
	// event before it writes the object.
	DefaultArchiveMaxAge = time.Minute
	// ArchiveKeySuffix ends the key of every object an Archiver writes.
	ArchiveKeySuffix = ".jsonl"
	// archiveIDWidth is the zero-padded width of the first event ID in a
	// key: every non-negative int64 fits, so keys sort in ID order.
	archiveIDWidth = 20
)

// ArchiverOption configures an Archiver.
type ArchiverOption func(*archiverConfig)

type archiverConfig struct {
	maxEvents int
	maxAge    time.Duration
	keyPrefix string
}

// WithArchiveMaxEvents sets how many events an object holds at most; the
// Archiver writes the object when it is full. The default is
// DefaultArchiveMaxEvents (10,000); n must be positive.
func WithArchiveMaxEvents(n int) ArchiverOption {
	return func(c *archiverConfig) { c.maxEvents = n }
}

// WithArchiveMaxAge sets how long after buffering an object's first event
// the Archiver writes the object, however few events it holds, so that a
// quiet stream is archived too. The default is DefaultArchiveMaxAge (1
// minute); 0 disables rolling by age (objects are then written only when
// full or on Flush); d must not be negative.
func WithArchiveMaxAge(d time.Duration) ArchiverOption {
	return func(c *archiverConfig) { c.maxAge = d }
}

// WithArchiveKeyPrefix sets a prefix for the keys of the objects written,
// such as "orders/" or "orders-". The default is "" (keys at the bucket's
// root). It must not contain "|". Stream such a bucket with a "prefix" URL
// parameter or blob.PrefixedBucket if other objects share it.
func WithArchiveKeyPrefix(prefix string) ArchiverOption {
	return func(c *archiverConfig) { c.keyPrefix = prefix }
}

// Archiver is a reflex.Consumer that writes the events of any reflex stream
// into a bucket, in the layout Bucket.Stream reads, so that an events table
// can be archived, trimmed, and its history replayed from the bucket.
//
// Layout: each object holds consecutive events as JSON lines (see
// DecodeArchived for the record format) and is named by the ID of its first
// event, zero-padded to 20 digits, after the key prefix:
// "00000000000000000042.jsonl". Event IDs must be increasing non-negative
// integers (as rsql's are), so keys sort in write order. An object is
// written when it holds WithArchiveMaxEvents events, WithArchiveMaxAge after
// its first event was buffered (measured on the local clock, not from the
// event's timestamp), when the next event belongs to an object already in
// the bucket, or on Flush, in a single atomic write.
//
// Cursor: the consumer's cursor must only advance past events that are in
// the bucket, so the Archiver sets it itself, through the store given to
// CursorStore or Spec: after writing an object it sets the cursor to the
// object's last event ID; the cursor Run sets after each event is
// discarded. After a crash, Run resumes after the last written object (or
// earlier, if the store had not flushed), so the buffered events are
// consumed again and nothing is lost.
//
// Idempotence: at the start of each Run (Reset) the Archiver lists the
// objects already written; an event that one of them holds is skipped (and
// counted in reflex_rblob_archive_skipped_events_total), and a new object
// ends before the next existing one, so re-consuming events never writes an
// event twice nor rewrites an object. Only one Archiver may write to a key
// prefix at a time.
//
// Consume, Flush and Close are safe for concurrent use; Consume blocks while
// an object is written. The store must be safe for concurrent use when
// WithArchiveMaxAge is on, as objects written by age set the cursor from the
// Archiver's own goroutine. Call Close to stop that goroutine.
type Archiver struct {
	bucket  *blob.Bucket
	name    string
	cfg     archiverConfig
	metrics *metrics.RBlobArchiver

	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	// kick wakes the age loop when an object starts; a buffer of one is
	// enough, as the loop reads the start time under mu.
	kick chan struct{}

	mu       sync.Mutex // protects the following fields
	store    reflex.CursorStore
	buf      bytes.Buffer
	n        int       // events in buf
	first    int64     // ID of buf's first event
	last     int64     // ID of buf's last event
	started  time.Time // when buf's first event was buffered
	lastSeen int64     // ID of the last event consumed this run; -1 before
	cursor   int64     // last cursor set in store; -1 before
	loaded   bool      // existing is loaded for this run
	existing []archived
	limit    int64 // first ID of the next existing object after buf; -1 if none
	bgErr    error // error of a write by age, returned by the next call
	closed   bool
}

// archived is an object already in the bucket.
type archived struct {
	key   string
	first int64
	last  int64 // -1 until read
}

var (
	_ reflex.Consumer    = (*Archiver)(nil)
	_ reflex.ResetterCtx = (*Archiver)(nil)
)

// NewArchiver returns an Archiver writing to bucket as the consumer name
// (which keys its cursor). It panics (a programming error) if bucket is nil
// or an option is invalid. Close it when done.
func NewArchiver(bucket *blob.Bucket, name string, opts ...ArchiverOption) *Archiver {
	cfg := archiverConfig{maxEvents: DefaultArchiveMaxEvents, maxAge: DefaultArchiveMaxAge}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("rblob: NewArchiver: option %d is nil", i))
		}
		o(&cfg)
	}
	switch {
	case bucket == nil:
		panic("rblob: NewArchiver: nil *blob.Bucket")
	case cfg.maxEvents <= 0:
		panic(fmt.Sprintf("rblob: WithArchiveMaxEvents(%d): must be positive", cfg.maxEvents))
	case cfg.maxAge < 0:
		panic(fmt.Sprintf("rblob: WithArchiveMaxAge(%v): must not be negative", cfg.maxAge))
	case strings.Contains(cfg.keyPrefix, "|"):
		panic(fmt.Sprintf("rblob: WithArchiveKeyPrefix(%q): must not contain \"|\"", cfg.keyPrefix))
	}
	a := &Archiver{
		bucket:   bucket,
		name:     name,
		cfg:      cfg,
		metrics:  metrics.NewRBlobArchiver(name),
		kick:     make(chan struct{}, 1),
		lastSeen: -1,
		cursor:   -1,
		limit:    -1,
	}
	ctx, cancel := context.WithCancel(context.Background()) // the archiver's lifetime
	a.stop = cancel
	if cfg.maxAge > 0 {
		a.wg.Go(func() { a.ageLoop(ctx) })
	}
	return a
}

// Name returns the consumer name.
func (a *Archiver) Name() string { return a.name }

// CursorStore returns a store that serves the archiver's cursor from inner
// but ignores the cursors Run sets for it (other consumers' cursors pass
// through), and binds the archiver to inner so that it sets its cursor
// there itself once events are written. A later call rebinds it.
func (a *Archiver) CursorStore(inner reflex.CursorStore) reflex.CursorStore {
	a.mu.Lock()
	a.store = inner
	a.mu.Unlock()
	return archiverStore{a: a, inner: inner}
}

// Spec returns reflex.NewSpec(stream, a.CursorStore(store), a, opts...).
func (a *Archiver) Spec(stream reflex.StreamFunc, store reflex.CursorStore, opts ...reflex.StreamOption) reflex.Spec {
	return reflex.NewSpec(stream, a.CursorStore(store), a, opts...)
}

// Reset discards the events buffered by a previous run (their cursor was
// never set, so the new run consumes them again) and makes the next
// Consume list the objects already written. Run calls it at the start of
// every run.
func (a *Archiver) Reset(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf.Reset()
	a.n = 0
	a.lastSeen = -1
	a.loaded = false
	a.existing = nil
	a.limit = -1
	a.bgErr = nil
	return nil
}

// Consume buffers e as a record of the current object, writing the object
// when it is full. It skips (returns nil for) events already in the bucket.
// It returns ErrArchiverNoStore without a bound store, an error wrapping
// ErrArchiveEventID for a non-integer or non-increasing ID, an
// *ObjectError for an unreadable existing object, ErrArchiverClosed after
// Close, and write, list and cursor errors; after an error Run ends and
// the next run resumes from the last written object.
func (a *Archiver) Consume(ctx context.Context, e *reflex.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.usableLocked(); err != nil {
		return err
	}
	if a.store == nil {
		return ErrArchiverNoStore
	}
	id, err := strconv.ParseInt(e.ID, 10, 64)
	if err != nil || id < 0 {
		return fmt.Errorf("%w: event id %q", ErrArchiveEventID, e.ID)
	}
	if id <= a.lastSeen {
		return fmt.Errorf("%w: event id %d after %d", ErrArchiveEventID, id, a.lastSeen)
	}
	if !a.loaded {
		if err := a.loadExistingLocked(ctx); err != nil {
			return err
		}
	}
	a.lastSeen = id

	if a.n > 0 && a.limit >= 0 && id >= a.limit {
		// The event reaches the next existing object: end this one before it.
		if err := a.writeLocked(ctx); err != nil {
			return err
		}
	}
	if a.n == 0 {
		skip, err := a.skipLocked(ctx, id)
		if err != nil || skip {
			return err
		}
	}
	line, err := encodeRecord(e)
	if err != nil {
		return err
	}
	if a.n == 0 {
		a.first, a.started = id, time.Now()
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	a.buf.Write(line)
	a.n++
	a.last = id
	if a.n >= a.cfg.maxEvents {
		return a.writeLocked(ctx)
	}
	return nil
}

// Flush writes the buffered events as an object now, if there are any, and
// sets the cursor to the last of them. Call it before Close for a graceful
// shutdown, or after a to-head Run to archive the tail. It returns
// ErrArchiverClosed after Close, or the write or cursor error.
func (a *Archiver) Flush(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.usableLocked(); err != nil {
		return err
	}
	if a.n == 0 {
		return nil
	}
	return a.writeLocked(ctx)
}

// Close stops the age loop and waits for it; buffered events are not
// written (their cursor was not set, so the next run consumes them again):
// call Flush first to keep them. Later Consume and Flush calls return
// ErrArchiverClosed. Close is idempotent, safe for concurrent use, and
// returns nil.
func (a *Archiver) Close() error {
	a.closeOnce.Do(func() {
		a.stop()
		a.wg.Wait()
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
	})
	return nil
}

func (a *Archiver) usableLocked() error {
	if a.closed {
		return ErrArchiverClosed
	}
	if err := a.bgErr; err != nil {
		a.bgErr = nil
		return err
	}
	return nil
}

// ageLoop writes the current object once its first event is maxAge old.
// Consume wakes it (kick) when an object starts.
func (a *Archiver) ageLoop(ctx context.Context) {
	var t wait.Timer
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		}
		for {
			d, ok := a.writeIfDue(ctx)
			if !ok {
				break
			}
			if t.Sleep(ctx, d) != nil {
				return
			}
		}
	}
}

// writeIfDue writes the current object if its first event is maxAge old;
// else it returns how long until it is. ok is false if there is no object
// to wait for.
func (a *Archiver) writeIfDue(ctx context.Context) (d time.Duration, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == 0 || a.closed {
		return 0, false
	}
	if d := time.Until(a.started.Add(a.cfg.maxAge)); d > 0 {
		return d, true
	}
	if err := a.writeLocked(ctx); err != nil && ctx.Err() == nil {
		a.bgErr = err
	}
	return 0, false
}

// writeLocked writes the buffered events as one object and sets the cursor
// to the last of them.
func (a *Archiver) writeLocked(ctx context.Context) error {
	key := archiveKey(a.cfg.keyPrefix, uint64(a.first))
	opts := &blob.WriterOptions{ContentType: "application/x-ndjson"}
	if err := a.bucket.WriteAll(ctx, key, a.buf.Bytes(), opts); err != nil {
		return fmt.Errorf("rblob: archiver %q: write %q: %w", a.name, key, err)
	}
	a.metrics.Objects.Inc()
	a.metrics.Events.Add(float64(a.n))
	last := a.last
	a.buf.Reset()
	a.n = 0
	return a.setCursorLocked(ctx, last)
}

func (a *Archiver) setCursorLocked(ctx context.Context, id int64) error {
	if id <= a.cursor {
		return nil
	}
	if err := a.store.SetCursor(ctx, a.name, strconv.FormatInt(id, 10)); err != nil {
		return fmt.Errorf("rblob: archiver %q: set cursor: %w", a.name, err)
	}
	a.cursor = id
	return nil
}

// loadExistingLocked lists the objects already written.
func (a *Archiver) loadExistingLocked(ctx context.Context) error {
	keys, err := listKeys(ctx, a.bucket, &blob.ListOptions{Prefix: a.cfg.keyPrefix})
	if err != nil {
		return fmt.Errorf("rblob: archiver %q: list: %w", a.name, err)
	}
	ex := make([]archived, 0, len(keys))
	for _, k := range keys {
		first, ok := parseArchiveKey(a.cfg.keyPrefix, k)
		if !ok {
			return &ObjectError{Key: k, Offset: -1, Err: errNotArchiveKey(a.cfg.keyPrefix)}
		}
		ex = append(ex, archived{key: k, first: first, last: -1})
	}
	// Keys of equal width sort in ID order.
	a.existing = ex
	a.loaded = true
	return nil
}

// skipLocked reports whether an existing object holds the event id, and
// otherwise sets limit for the object that id starts.
func (a *Archiver) skipLocked(ctx context.Context, id int64) (bool, error) {
	i := sort.Search(len(a.existing), func(i int) bool { return a.existing[i].first > id })
	a.limit = -1
	if i < len(a.existing) {
		a.limit = a.existing[i].first
	}
	if i == 0 {
		return false, nil
	}
	o := &a.existing[i-1]
	if o.last < 0 {
		last, err := a.readLast(ctx, o)
		if err != nil {
			return false, err
		}
		o.last = last
	}
	if id > o.last {
		return false, nil
	}
	a.metrics.Skipped.Inc()
	if id == o.last {
		return true, a.setCursorLocked(ctx, id)
	}
	return true, nil
}

// readLast returns the ID of the last record of an existing object,
// checking the object as StreamArchived does.
func (a *Archiver) readLast(ctx context.Context, o *archived) (int64, error) {
	f := fetch(ctx, a.bucket, o.key, nil, nil)
	defer f.release()
	if err := f.err; err != nil {
		return 0, &ObjectError{Key: o.key, Offset: -1, Err: err}
	}
	r := &archiveReader{f: f, first: o.first, after: math.MaxInt64, last: -1, allowEmpty: true, dec: newJSONDecoder(&f.src)}
	if _, err := r.next(); !errors.Is(err, io.EOF) {
		return 0, err // every event is at most after: next reads to the end
	}
	if r.idx == 0 {
		return 0, &ObjectError{Key: o.key, Offset: -1, Err: fmt.Errorf("%w: empty archive object", ErrNotArchived)}
	}
	return r.last, nil
}

// archiverStore is the reflex.CursorStore of Archiver.CursorStore.
type archiverStore struct {
	a     *Archiver
	inner reflex.CursorStore
}

func (s archiverStore) GetCursor(ctx context.Context, name string) (string, error) {
	return s.inner.GetCursor(ctx, name)
}

func (s archiverStore) SetCursor(ctx context.Context, name, cursor string) error {
	if name == s.a.name {
		return nil // the archiver sets its cursor once events are written
	}
	return s.inner.SetCursor(ctx, name, cursor)
}

func (s archiverStore) Flush(ctx context.Context) error { return s.inner.Flush(ctx) }
