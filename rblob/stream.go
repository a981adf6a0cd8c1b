package rblob

import (
	"context"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// Stream is a reflex.StreamFunc over the bucket: it streams the records of
// the objects whose keys follow the cursor after, in key order, and then
// waits for new objects, listing the bucket again every backoff (see
// WithBackoff). after is "" (from the first object) or a cursor from a
// previous event's ID (see Cursor); an invalid cursor returns an error
// wrapping ErrInvalidCursor (and so reflex.ErrInvalidCursor).
//
// Each event has ID = its Cursor, Timestamp = the object's modification
// time, MetaData = the record, Type 0 and no ForeignID. The stream decodes
// one record ahead to know which record is an object's last (whose cursor
// is key|eof), and reads the next object ahead while the current one is
// consumed (its first 8 MiB). An object without records is an error
// (ErrEmptyObject) unless the bucket has WithEmptyObjects, when it emits
// nothing.
//
// Options: WithStreamToHead makes Recv return reflex.ErrHeadReached once
// the last listed object is done and a new listing finds no newer one.
// WithStreamFromHead lists the bucket when Stream is called and starts after
// the newest object's last record (from the beginning if the bucket is
// empty), ignoring after; a listing error is returned. WithStreamLag(d)
// delivers an object's records only once its modification time is d old
// (Recv waits, or returns ErrHeadReached with WithStreamToHead); a negative
// lag is an error.
//
// Ordering: each listing must hold every object below the stream's
// position that the previous listing held, and no new one. An object that
// appears below the position later (written out of key order, even one
// sorting before an object listed but not yet read) ends the stream with
// an *ObjectError wrapping ErrOutOfOrder, once the stream lists the bucket
// again (after the objects of the previous listing): it is never skipped
// silently. luno/reflex lists the bucket before each object instead, and
// reads such an object if it appears before the stream passes its key.
//
// Recv blocks, and returns ctx.Err() once ctx is done. Malformed or
// unreadable objects return an *ObjectError naming the object and record
// (see the package doc); resuming from key|NN|offset fails with
// ErrCursorOutOfRange or ErrCursorWasEOF if the object is shorter than the
// cursor says. Every Recv error is sticky and releases the open objects.
//
// Stream is safe for concurrent use; each client is used by one goroutine
// at a time, except that Close may be called from any goroutine to end a
// blocked Recv. Clients implement io.Closer: Close ends a blocked Recv,
// stops the read-ahead goroutine and waits for it, releases the open
// objects, and returns nil, every time; Recv then returns ErrClientClosed,
// which wraps context.Canceled.
func (b *Bucket) Stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	o, err := resolveStreamOptions(opts)
	if err != nil {
		return nil, err
	}
	var key string
	var resume *Cursor
	if after != "" && !o.StreamFromHead {
		c, err := ParseCursor(after)
		if err != nil {
			return nil, err
		}
		if !c.EOF {
			resume = &c
		}
		key = c.Key
	}
	return b.newClient(ctx, o, key, resume, nil)
}

func resolveStreamOptions(opts []reflex.StreamOption) (reflex.StreamOptions, error) {
	for i, o := range opts {
		if o == nil {
			return reflex.StreamOptions{}, fmt.Errorf("rblob: stream option %d is nil", i)
		}
	}
	o := reflex.ResolveOptions(opts...)
	if o.Lag < 0 {
		return o, fmt.Errorf("rblob: negative stream lag %v", o.Lag)
	}
	return o, nil
}

// newClient returns a client positioned after key (resuming inside the
// object resume names, if set); arch is set for StreamArchived.
func (b *Bucket) newClient(ctx context.Context, o reflex.StreamOptions, key string, resume *Cursor, arch *archiveState) (*client, error) {
	cctx, cancel := context.WithCancel(ctx)
	c := &client{ctx: cctx, cancel: cancel, b: b, opts: o, key: key, resume: resume, arch: arch}
	if o.StreamFromHead {
		// The head is resolved now, not at the first Recv, so that events
		// written in between are delivered. c is not shared yet: no lock.
		if err := c.listLocked(); err != nil {
			cancel()
			return nil, err
		}
		if n := len(c.pending); n > 0 {
			c.key = c.pending[n-1]
			c.pending = nil
		}
	}
	return c, nil
}

// client is a reflex.StreamClient over a Bucket, of records (Stream) or of
// archived events (StreamArchived).
type client struct {
	ctx       context.Context
	cancel    context.CancelFunc
	b         *Bucket
	opts      reflex.StreamOptions
	closed    atomic.Bool
	closeOnce sync.Once

	mu sync.Mutex // held by Recv and Close; protects the following fields
	// key is the key of the open object, or of the last object done (or the
	// cursor's key before the first); "" before the first object.
	key string
	// resume is the mid-object cursor to resume from, until applied.
	resume *Cursor
	// arch is the state of a StreamArchived client; nil for Stream.
	arch *archiveState
	// cur is the open object, nil between objects.
	cur objectReader
	// pending holds the sorted keys > key of the last listing, not yet opened.
	pending []string
	// known holds the sorted keys of the last listing, to detect objects
	// written below the position later; listed is false before the first
	// listing (known is nil after an empty one).
	known  []string
	listed bool
	// ahead reads pending[0] ahead while cur is consumed.
	ahead readAhead
	// spare is the read buffer of the last object done, for the next.
	spare []byte
	timer wait.Timer
	err   error // sticky
}

var (
	_ reflex.StreamClient = (*client)(nil)
	_ io.Closer           = (*client)(nil)
)

// objectReader yields the events of one open object.
type objectReader interface {
	// next returns the object's next event, or io.EOF after its last.
	next() (*reflex.Event, error)
	// object returns the fetched object, to release.
	object() *fetched
}

func (c *client) Recv() (*reflex.Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	e, err := c.recvLocked()
	if err != nil {
		switch {
		case c.closed.Load():
			err = ErrClientClosed
		case c.ctx.Err() != nil:
			err = c.ctx.Err()
		default:
			if _, ok := errors.AsType[*ObjectError](err); ok {
				c.b.metrics.DecodeErrors.Inc()
			}
		}
		c.err = err
		c.releaseLocked()
		return nil, err
	}
	return e, nil
}

// Close ends the stream; see Stream.
func (c *client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.cancel() // ends a concurrent Recv
		c.mu.Lock()
		defer c.mu.Unlock()
		c.releaseLocked()
		c.err = ErrClientClosed
	})
	return nil
}

// releaseLocked closes the open object, stops the read-ahead goroutine and
// waits for it.
func (c *client) releaseLocked() {
	c.closeObjectLocked()
	c.ahead.stop()
	c.timer.Stop()
}

func (c *client) recvLocked() (*reflex.Event, error) {
	for {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		if c.cur != nil {
			e, err := c.cur.next()
			if errors.Is(err, io.EOF) {
				c.closeObjectLocked()
				continue
			}
			if err != nil {
				return nil, err
			}
			if err := c.lagLocked(e); err != nil {
				return nil, err
			}
			return e, nil
		}
		key, err := c.nextKeyLocked()
		if err != nil {
			return nil, err
		}
		if err := c.openLocked(key); err != nil {
			return nil, err
		}
	}
}

// lagLocked waits until e is as old as the lag option asks, or returns
// reflex.ErrHeadReached if the stream goes to the head only.
func (c *client) lagLocked(e *reflex.Event) error {
	return waitLag(c.ctx, &c.timer, c.opts, e)
}

// waitLag waits on timer until e is as old as opts.Lag, or returns
// reflex.ErrHeadReached if the stream goes to the head only (or ctx's
// error when ctx ends first). It returns at once without a lag.
func waitLag(ctx context.Context, timer *wait.Timer, opts reflex.StreamOptions, e *reflex.Event) error {
	if opts.Lag <= 0 {
		return nil
	}
	d := opts.Lag - time.Since(e.Timestamp)
	if d <= 0 {
		return nil
	}
	if opts.StreamToHead {
		return reflex.ErrHeadReached
	}
	return timer.Sleep(ctx, d)
}

// nextKeyLocked returns the next key to open (the resume cursor's first),
// listing the bucket and waiting as needed.
func (c *client) nextKeyLocked() (string, error) {
	if c.resume != nil {
		return c.resume.Key, nil
	}
	for {
		if len(c.pending) > 0 {
			k := c.pending[0]
			c.pending = c.pending[1:]
			return k, nil
		}
		if err := c.listLocked(); err != nil {
			return "", err
		}
		if len(c.pending) > 0 {
			continue
		}
		if c.opts.StreamToHead {
			return "", reflex.ErrHeadReached
		}
		if err := c.timer.Sleep(c.ctx, c.b.cfg.backoff); err != nil {
			return "", err
		}
	}
}

// listLocked lists the bucket, setting pending to the sorted keys after
// key. A key at or before key that the previous listing did not hold is an
// object written out of order. The first listing of a StreamArchived
// client from a cursor starts at the object that may hold the cursor's
// next event.
func (c *client) listLocked() error {
	lo := &blob.ListOptions{}
	if sa := c.b.cfg.startAfter; sa != nil && c.key != "" {
		after := c.key
		lo.BeforeList = func(as func(any) bool) error {
			sa(as, after)
			return nil
		}
	}
	keys, err := listKeys(c.ctx, c.b.bucket, lo)
	if err != nil {
		if cerr := c.ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("rblob: list bucket %q: %w", c.b.label, err)
	}
	if !c.listed && c.arch != nil {
		c.key = c.arch.locate(keys)
	}
	i, _ := slices.BinarySearch(keys, c.key)
	if i < len(keys) && keys[i] == c.key {
		i++
	}
	if c.listed {
		for _, k := range keys[:i] {
			if _, found := slices.BinarySearch(c.known, k); !found {
				return &ObjectError{Key: k, Offset: -1, Err: fmt.Errorf("%w: appeared after the stream passed it at %s", ErrOutOfOrder, bounded.Quote(c.key))}
			}
		}
	}
	c.b.metrics.ListSkip.Add(float64(i))
	c.known, c.listed = keys, true
	c.pending = keys[i:]
	return nil
}

// listKeys returns the sorted keys of the objects b lists.
func listKeys(ctx context.Context, b *blob.Bucket, lo *blob.ListOptions) ([]string, error) {
	it := b.List(lo)
	var keys []string
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if !obj.IsDir {
			keys = append(keys, obj.Key)
		}
	}
	// Drivers list in key order, but not all of them byte-wise (fileblob
	// walks directories), so sort.
	slices.Sort(keys)
	return keys, nil
}

// openLocked opens the object key, taking it from the read-ahead goroutine
// if that read it, and starts reading the next pending object ahead.
func (c *client) openLocked(key string) error {
	if !validKey(key) {
		return &ObjectError{Key: key, Offset: -1, Err: ErrInvalidKey}
	}
	f := c.ahead.take(key)
	if f == nil {
		f = fetch(c.ctx, c.b.bucket, key, c.takeSpareLocked(), c.b.metrics)
	}
	if err := f.err; err != nil {
		f.release()
		if cerr := c.ctx.Err(); cerr != nil {
			return cerr
		}
		if c.resume != nil && c.resume.Key == key && gcerrors.Code(err) == gcerrors.NotFound {
			// The cursor names an object that does not exist: no retry
			// can make it valid.
			err = fmt.Errorf("%w: %w", reflex.ErrInvalidCursor, err)
		}
		return &ObjectError{Key: key, Offset: -1, Err: err}
	}
	var r objectReader
	var err error
	if c.arch != nil {
		r, err = c.arch.open(f)
	} else {
		r, err = c.openRecords(f, c.resume)
		c.resume = nil
	}
	c.key = key
	if err != nil {
		f.release()
		return err
	}
	c.cur = r
	if len(c.pending) > 0 {
		var prepare func(context.Context, *fetched)
		if c.arch != nil {
			prepare = c.arch.prepare
		}
		c.ahead.start(c.ctx, c.b.bucket, c.pending[0], c.takeSpareLocked(), c.b.metrics, prepare)
	}
	return nil
}

func (c *client) takeSpareLocked() []byte {
	b := c.spare
	c.spare = nil
	return b
}

func (c *client) closeObjectLocked() {
	if c.cur != nil {
		c.spare = c.cur.object().release()
		c.cur = nil
	}
}

// recordReader is the objectReader of Stream: the records of the bucket's
// Decoder, with cursors.
type recordReader struct {
	f    *fetched
	dec  Decoder
	rec  []byte // record idx, read ahead
	idx  int
	done bool
}

func (r *recordReader) object() *fetched { return r.f }

// openRecords starts decoding f, skipping the records up to and including
// the resume cursor's offset if resume is set, and reads the first record
// ahead. An empty object is an error, or done at once with allowEmpty.
func (c *client) openRecords(f *fetched, resume *Cursor) (*recordReader, error) {
	dec, err := c.b.cfg.decoder(&f.src)
	if err != nil {
		return nil, &ObjectError{Key: f.key, Offset: -1, Err: err}
	}
	r := &recordReader{f: f, dec: dec}
	if resume != nil {
		for i := 0; i <= resume.Offset; i++ {
			_, err := dec.Decode()
			if errors.Is(err, io.EOF) {
				return nil, &ObjectError{Key: f.key, Offset: resume.Offset, Err: fmt.Errorf("%w: %w: resuming from %s, the object has %d records", ErrCursorOutOfRange, reflex.ErrInvalidCursor, bounded.Quote(resume.String()), i)}
			}
			if err != nil {
				return nil, &ObjectError{Key: f.key, Offset: i, Err: err}
			}
		}
		r.idx = resume.Offset + 1
	}
	r.rec, err = dec.Decode()
	switch {
	case errors.Is(err, io.EOF) && resume != nil:
		return nil, &ObjectError{Key: f.key, Offset: resume.Offset, Err: fmt.Errorf("%w: %w: resuming from %s, its record is the object's last", ErrCursorWasEOF, reflex.ErrInvalidCursor, bounded.Quote(resume.String()))}
	case errors.Is(err, io.EOF) && c.b.cfg.allowEmpty:
		r.done = true
	case errors.Is(err, io.EOF):
		return nil, &ObjectError{Key: f.key, Offset: 0, Err: ErrEmptyObject}
	case err != nil:
		return nil, &ObjectError{Key: f.key, Offset: r.idx, Err: err}
	}
	return r, nil
}

// next returns the record read ahead and reads the next.
func (r *recordReader) next() (*reflex.Event, error) {
	if r.done {
		return nil, io.EOF
	}
	rec, idx := r.rec, r.idx
	next, err := r.dec.Decode()
	var id Cursor
	switch {
	case errors.Is(err, io.EOF):
		id = Cursor{Key: r.f.key, EOF: true}
		r.done = true
	case err != nil:
		return nil, &ObjectError{Key: r.f.key, Offset: idx + 1, Err: err}
	default:
		id = Cursor{Key: r.f.key, Offset: idx}
		r.rec, r.idx = next, idx+1
	}
	return &reflex.Event{ID: id.String(), Type: eventtype.Type(0), Timestamp: r.f.modTime, MetaData: rec}, nil
}
