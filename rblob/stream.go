package rblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocloud.dev/blob"

	"github.com/seed-e488ba2e/reflex"
)

// Stream is a reflex.StreamFunc over the bucket: it streams the records of
// the objects whose keys follow the cursor after, in key order, and then
// waits for new objects, listing the bucket again every backoff (see
// WithBackoff). after is "" (from the first object) or a cursor from a
// previous event's ID (see Cursor); an invalid cursor returns an error
// wrapping ErrInvalidCursor.
//
// Each event has ID = its Cursor, Timestamp = the object's modification
// time, MetaData = the record, Type 0 and no ForeignID. The stream decodes
// one record ahead to know which record is an object's last (whose cursor
// is key|eof). An object without records is an error (ErrEmptyObject)
// unless the bucket has WithEmptyObjects, when it emits nothing.
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
// Recv blocks, and returns ctx.Err() once ctx is done. Malformed or
// unreadable objects return an *ObjectError naming the object and record
// (see the package doc); resuming from key|NN|offset fails with
// ErrCursorOutOfRange or ErrCursorWasEOF if the object is shorter than the
// cursor says. Every Recv error is sticky and closes the open object.
//
// Stream is safe for concurrent use; each client is used by one goroutine
// at a time, except that Close may be called from any goroutine to end a
// blocked Recv. Clients implement io.Closer: Close releases the open object
// and makes Recv return ErrClientClosed; a second Close returns
// ErrClientClosed.
func (b *Bucket) Stream(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	o := reflex.ResolveOptions(opts...)
	if o.Lag < 0 {
		return nil, fmt.Errorf("rblob: negative stream lag %v", o.Lag)
	}
	var resume *Cursor
	if after != "" && !o.StreamFromHead {
		c, err := ParseCursor(after)
		if err != nil {
			return nil, err
		}
		if !c.EOF {
			resume = &c
		}
		after = c.Key
	} else {
		after = ""
	}

	cctx, cancel := context.WithCancel(ctx)
	c := &client{ctx: cctx, cancel: cancel, b: b, opts: o, key: after, resume: resume}
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

// client is a reflex.StreamClient over a Bucket.
type client struct {
	ctx    context.Context
	cancel context.CancelFunc
	b      *Bucket
	opts   reflex.StreamOptions
	closed atomic.Bool

	mu sync.Mutex // held by Recv and Close; protects the following fields
	// key is the key of the open object, or of the last object done (or the
	// cursor's key before the first); "" before the first object.
	key string
	// resume is the mid-object cursor to resume from, until applied.
	resume *Cursor
	// cur is the open object, nil between objects.
	cur *object
	// pending holds the sorted keys > key of the last listing, not yet opened.
	pending []string
	// known holds the sorted keys of the last listing, to detect objects
	// written below the position later; listed is false before the first
	// listing (known is nil after an empty one).
	known  []string
	listed bool
	timer  *time.Timer
	err    error // sticky
}

var (
	_ reflex.StreamClient = (*client)(nil)
	_ io.Closer           = (*client)(nil)
)

// object is an open object being read.
type object struct {
	key     string
	r       *blob.Reader
	dec     Decoder
	modTime time.Time
	next    []byte // record idx, read ahead
	idx     int
}

func (c *client) Recv() (*reflex.Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	e, err := c.recvLocked()
	if err != nil {
		if c.closed.Load() {
			err = ErrClientClosed
		}
		c.err = err
		c.closeObjectLocked()
		return nil, err
	}
	return e, nil
}

// Close releases the open object and ends the stream; see Stream.
func (c *client) Close() error {
	if c.closed.Swap(true) {
		return ErrClientClosed
	}
	c.cancel() // ends a concurrent Recv
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeObjectLocked()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.err = ErrClientClosed
	return nil
}

func (c *client) recvLocked() (*reflex.Event, error) {
	for {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		if c.cur != nil {
			return c.emitLocked()
		}
		if c.resume != nil {
			if err := c.openResumeLocked(*c.resume); err != nil {
				return nil, err
			}
			c.resume = nil
			continue
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

// emit returns the read-ahead record of the open object and reads the next.
func (c *client) emitLocked() (*reflex.Event, error) {
	o := c.cur
	rec, idx := o.next, o.idx
	next, err := o.dec.Decode()
	var id Cursor
	switch {
	case errors.Is(err, io.EOF):
		id = Cursor{Key: o.key, EOF: true}
		c.closeObjectLocked()
	case err != nil:
		return nil, c.decodeErr(o.key, idx+1, err)
	default:
		id = Cursor{Key: o.key, Offset: idx}
		o.next, o.idx = next, idx+1
	}
	return &reflex.Event{ID: id.String(), Type: eventType(0), Timestamp: o.modTime, MetaData: rec}, nil
}

// decodeErr wraps a decoding error, counting it unless the context ended.
func (c *client) decodeErr(key string, offset int, err error) error {
	if cerr := c.ctx.Err(); cerr != nil {
		return cerr
	}
	c.b.metrics.DecodeErrors.Inc()
	return &ObjectError{Key: key, Offset: offset, Err: err}
}

// nextKey returns the next key to open, listing the bucket and waiting as
// needed.
func (c *client) nextKeyLocked() (string, error) {
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
		if err := c.waitLocked(c.b.cfg.backoff); err != nil {
			return "", err
		}
	}
}

// list lists the bucket, setting pending to the sorted keys after key. A
// key at or before key that the previous listing did not hold is an
// object written out of order.
func (c *client) listLocked() error {
	lo := &blob.ListOptions{}
	if sa := c.b.cfg.startAfter; sa != nil && c.key != "" {
		after := c.key
		lo.BeforeList = func(as func(any) bool) error {
			sa(as, after)
			return nil
		}
	}
	it := c.b.bucket.List(lo)
	var keys []string
	for {
		obj, err := it.Next(c.ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if cerr := c.ctx.Err(); cerr != nil {
				return cerr
			}
			return fmt.Errorf("rblob: list bucket %q: %w", c.b.label, err)
		}
		if !obj.IsDir {
			keys = append(keys, obj.Key)
		}
	}
	// Drivers list in key order, but not all of them byte-wise (fileblob
	// walks directories), so sort.
	slices.Sort(keys)
	i, _ := slices.BinarySearch(keys, c.key)
	if i < len(keys) && keys[i] == c.key {
		i++
	}
	if c.listed {
		for _, k := range keys[:i] {
			if _, found := slices.BinarySearch(c.known, k); !found {
				c.b.metrics.DecodeErrors.Inc()
				return &ObjectError{Key: k, Offset: -1, Err: fmt.Errorf("%w: appeared after the stream passed it at %q", ErrOutOfOrder, c.key)}
			}
		}
	}
	c.b.metrics.ListSkip.Add(float64(i))
	c.known, c.listed = keys, true
	c.pending = keys[i:]
	return nil
}

// open opens the object key and reads its first record; an empty object
// is an error, or done at once with WithEmptyObjects.
func (c *client) openLocked(key string) error {
	o, err := c.openObjectLocked(key)
	if err != nil {
		return err
	}
	rec, err := o.dec.Decode()
	if errors.Is(err, io.EOF) {
		_ = o.r.Close()
		if !c.b.cfg.allowEmpty {
			return &ObjectError{Key: key, Offset: 0, Err: ErrEmptyObject}
		}
		c.key = key
		return nil
	}
	c.key = key
	if err != nil {
		_ = o.r.Close()
		return c.decodeErr(key, 0, err)
	}
	o.next = rec
	c.cur = o
	return nil
}

// openResume re-opens the cursor's object, skips the records up to and
// including its offset and reads the next one ahead.
func (c *client) openResumeLocked(cur Cursor) error {
	o, err := c.openObjectLocked(cur.Key)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		_ = o.r.Close()
		return err
	}
	for i := 0; i <= cur.Offset; i++ {
		_, err := o.dec.Decode()
		if errors.Is(err, io.EOF) {
			return fail(&ObjectError{Key: cur.Key, Offset: cur.Offset, Err: fmt.Errorf("%w: resuming from %q, the object has %d records", ErrCursorOutOfRange, cur, i)})
		}
		if err != nil {
			return fail(c.decodeErr(cur.Key, i, err))
		}
	}
	rec, err := o.dec.Decode()
	if errors.Is(err, io.EOF) {
		return fail(&ObjectError{Key: cur.Key, Offset: cur.Offset, Err: fmt.Errorf("%w: resuming from %q, its record is the object's last", ErrCursorWasEOF, cur)})
	}
	if err != nil {
		return fail(c.decodeErr(cur.Key, cur.Offset+1, err))
	}
	o.next, o.idx = rec, cur.Offset+1
	c.key = cur.Key
	c.cur = o
	return nil
}

// openObject opens key for reading, honouring the lag option.
func (c *client) openObjectLocked(key string) (*object, error) {
	if !validKey(key) {
		c.b.metrics.DecodeErrors.Inc()
		return nil, &ObjectError{Key: key, Offset: -1, Err: ErrInvalidKey}
	}
	r, err := c.b.bucket.NewReader(c.ctx, key, nil)
	if err != nil {
		if cerr := c.ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, &ObjectError{Key: key, Offset: -1, Err: err}
	}
	c.b.metrics.Read.Inc()
	mod := r.ModTime()
	if lag := c.opts.Lag; lag > 0 {
		if d := lag - time.Since(mod); d > 0 {
			if c.opts.StreamToHead {
				_ = r.Close()
				return nil, reflex.ErrHeadReached
			}
			if err := c.waitLocked(d); err != nil {
				_ = r.Close()
				return nil, err
			}
		}
	}
	dec, err := c.b.cfg.decoder(countingReader{r: r, n: c.b.metrics.ReadBytes})
	if err != nil {
		_ = r.Close()
		return nil, c.decodeErr(key, -1, err)
	}
	return &object{key: key, r: r, dec: dec, modTime: mod}, nil
}

func (c *client) closeObjectLocked() {
	if c.cur != nil {
		_ = c.cur.r.Close()
		c.cur = nil
	}
}

// wait blocks for d or until the stream's context is done.
func (c *client) waitLocked(d time.Duration) error {
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.ctx.Done():
		c.timer.Stop()
		return c.ctx.Err()
	case <-c.timer.C:
		return nil
	}
}

// countingReader counts the bytes read into a metric.
type countingReader struct {
	r io.Reader
	n prometheus.Counter
}

func (cr countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	if n > 0 {
		cr.n.Add(float64(n))
	}
	return n, err
}
