package rblob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gocloud.dev/blob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

var (
	// ErrArchiveGap is wrapped by the errors with which a tiered stream
	// (StreamTiered) ends when the archive lacks events it must hold:
	// the event through which the table is trimmed, any event after an
	// object that is missing before it, or, with WithTieredDense, any ID.
	// The error is an *ObjectError naming the object after the hole (or
	// the archive's last object) when there is one.
	ErrArchiveGap = errors.New("rblob: events missing from the archive")

	// ErrArchiveMismatch is wrapped by the errors with which a tiered
	// stream (StreamTiered) ends when the archive and the events table
	// hold different events with the same ID, or one holds an event the
	// other skipped where both should hold it: they belong to different
	// tables (or the table's stream shows fewer columns than the
	// archiver's did).
	ErrArchiveMismatch = errors.New("rblob: the archive does not match the events table")
)

// TrimmedFunc returns the ID through which an events table was trimmed:
// the events with IDs up to it are no longer in the table (only in its
// archive); 0 if none were trimmed. For an rsql events table:
//
//	func(ctx context.Context) (int64, error) { return table.TrimmedThrough(ctx, db) }
type TrimmedFunc func(ctx context.Context) (int64, error)

// TieredOption configures StreamTiered.
type TieredOption func(*tieredConfig)

type tieredConfig struct {
	// isNoop, if set, tells the noop events of a dense archive.
	isNoop func(*reflex.Event) bool
}

// WithTieredDense declares that the archive holds every ID of the table,
// its noop events included (the archiver streamed the table with its noop
// events, for rsql with WithIncludeNoopEvents), and isNoop tells them:
// the tiered stream skips them, as the table's stream does, and checks
// that IDs are consecutive, so that a missing object or record anywhere in
// the archive ends the stream with ErrArchiveGap. It requires a table
// whose IDs are consecutive (MySQL's auto_increment_increment of 1). By
// default the archive holds only the events the table's stream delivered,
// and missing IDs are checked only where the table was trimmed (see
// StreamTiered).
func WithTieredDense(isNoop func(*reflex.Event) bool) TieredOption {
	return func(c *tieredConfig) { c.isNoop = isNoop }
}

// testHookTiered, if set, is called by tiered clients at the switch
// points: "switch" after deciding to read the table and before opening it,
// "table" after opening it and before its first Recv, and "back" after the
// table reported that the events the client needs were trimmed and before
// the bucket is opened again.
var testHookTiered atomic.Pointer[func(stage string)]

func hookTiered(stage string) {
	if h := testHookTiered.Load(); h != nil {
		(*h)(stage)
	}
}

// tiered is the StreamFunc of StreamTiered.
type tiered struct {
	b       *Bucket
	table   reflex.StreamFunc
	trimmed TrimmedFunc
	cfg     tieredConfig
}

// StreamTiered returns a reflex.StreamFunc over the whole history of an
// events table whose oldest events were moved to this archive bucket: an
// Archiver consuming the table wrote the archive, and a trimmer (such as
// rsql's Trimmer) deleted from the table only events the archive holds.
// table is the table's StreamFunc and trimmed tells through which event ID
// the table was trimmed.
//
// Cursors are event IDs, as for the table's stream: a cursor at or above
// the table's trimmed-through ID reads the table; a lower one (or "" for
// all history) reads the archive (StreamArchived) and then the table from
// the next ID, with no event skipped or repeated. So a consumer of the
// table keeps its cursor when it moves to the tiered stream, and a new
// consumer replays everything from "". If the table is trimmed past a
// reader while it reads the table (the table's stream then fails with an
// error that has a method Trimmed() (cursor, through int64), as rsql's
// *TrimmedError has; for other errors the stream asks trimmed), the reader
// goes back to the archive at its cursor, and to the table again once past
// the trimmed range: trimming never makes it lose or repeat an event. A
// cursor that is not "" or a non-negative decimal integer (without sign or
// leading zeros) returns an error wrapping ErrInvalidCursor.
//
// Options: WithStreamFromHead opens the table from its head (the archive
// is read only if the table is trimmed past the reader later).
// WithStreamToHead returns reflex.ErrHeadReached at the table's head.
// WithStreamLag holds back events of either source until they are as old
// as the lag (with WithStreamToHead, a too recent event returns
// ErrHeadReached and is delivered by a later Recv). The options go to the
// table's stream, without WithStreamFromHead after the first opening.
//
// Checks: the archive and the table must be of one table, and the archive
// must hold every event the table lost. When the stream opens below the
// trimmed-through ID T, before it delivers anything, it checks that the
// archive holds the event T (the table's trimmer overwrites the row of a
// real event with its marker, so the archive has it), and that the first
// event after T is the same in both (ID, type, foreign ID, timestamp,
// metadata, trace) if both have one; it checks the same at each switch
// from the archive to the table, and that the archive reaches T. A failed
// check ends the stream with ErrArchiveGap (the archive lacks events: an
// object is missing, it ends before the table starts, it is another
// table's archive or the table was trimmed unarchived) or
// ErrArchiveMismatch, naming the objects concerned. A corrupt object ends
// it with the *ObjectError of StreamArchived. These checks cannot see an
// object missing from the middle of the archive below T when its IDs could
// be noop events of the table (rolled-back inserts) that the archive never
// held; WithTieredDense makes every ID checked. Nor can they see a missing
// first object (history then starts later). These errors are sticky.
//
// Recv blocks as the source read blocks; the client implements io.Closer
// (Close ends a blocked Recv, closes the source streams and waits for
// their goroutines; Recv then returns ErrClientClosed, which wraps
// context.Canceled). Errors of the table's stream other than trimming are
// returned as they are, and the client goes on after them as the table's
// client does. The client starts no goroutine of its own: the source
// streams' (the archive's read-ahead, the table's) belong to it and stop
// with it. StreamTiered panics if table or trimmed is nil or an option is
// nil; the StreamFunc is safe for concurrent use, each client is used by
// one goroutine at a time, and Close may be called from any.
func (b *Bucket) StreamTiered(table reflex.StreamFunc, trimmed TrimmedFunc, opts ...TieredOption) reflex.StreamFunc {
	switch {
	case table == nil:
		panic("rblob: StreamTiered: nil table StreamFunc")
	case trimmed == nil:
		panic("rblob: StreamTiered: nil TrimmedFunc")
	}
	s := &tiered{b: b, table: table, trimmed: trimmed}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("rblob: StreamTiered: option %d is nil", i))
		}
		o(&s.cfg)
	}
	return s.open
}

func (s *tiered) open(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
	o, err := resolveStreamOptions(opts)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &tieredClient{ctx: cctx, cancel: cancel, s: s, opts: o}
	if err := c.start(after); err != nil {
		_ = c.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	return c, nil
}

// phase is the source a tiered client reads.
type phase int

const (
	phaseBucket phase = iota
	phaseTable
)

// tieredClient is the reflex.StreamClient of StreamTiered.
type tieredClient struct {
	ctx       context.Context
	cancel    context.CancelFunc
	s         *tiered
	opts      reflex.StreamOptions
	closed    atomic.Bool
	closeOnce sync.Once

	// The fields below are used by Recv (and start) only.
	phase phase
	// pos is the ID of the last event passed (delivered, or a skipped
	// noop), or the start cursor; known is false only for a stream from
	// the head before its first event.
	pos    int64
	known  bool
	passed bool  // pos is an ID of the stream (not the start of history)
	thru   int64 // the table's trimmed-through ID, as last learnt
	// pending is an archived event held back by the lag.
	pending *reflex.Event
	// peek is the archive's first event after the switch to the table,
	// to compare with the table's first; nil if none.
	peek  *reflex.Event
	timer wait.Timer
	err   error // sticky

	mu          sync.Mutex // protects the following fields
	inner       reflex.StreamClient
	innerCancel context.CancelFunc
}

var (
	_ reflex.StreamClient = (*tieredClient)(nil)
	_ io.Closer           = (*tieredClient)(nil)
)

// errSwitch and errBack are internal signals of recvBucket and recvTable.
var (
	errSwitch = errors.New("rblob: switch to the table")
	errBack   = errors.New("rblob: back to the archive")
)

// start positions the client and opens its first source.
func (c *tieredClient) start(after string) error {
	if c.opts.StreamFromHead {
		c.phase = phaseTable
		return c.openTable(true)
	}
	if after != "" {
		id, ok := parseDecimal(after)
		if !ok {
			return fmt.Errorf("%w %s: want a non-negative decimal event id", ErrInvalidCursor, bounded.Quote(after))
		}
		c.pos, c.passed = id, true
	}
	c.known = true
	thru, err := c.trimmedThrough()
	if err != nil {
		return err
	}
	c.thru = thru
	if c.pos >= c.thru {
		c.phase = phaseTable
		return c.openTable(false)
	}
	if err := c.probe(); err != nil {
		return err
	}
	c.phase = phaseBucket
	return c.openBucket()
}

func (c *tieredClient) trimmedThrough() (int64, error) {
	t, err := c.s.trimmed(c.ctx)
	if err != nil {
		if cerr := c.ctx.Err(); cerr != nil {
			return 0, cerr
		}
		return 0, fmt.Errorf("rblob: tiered stream: where the table starts: %w", err)
	}
	return t, nil
}

func (c *tieredClient) Recv() (*reflex.Event, error) {
	if c.closed.Load() {
		return nil, ErrClientClosed
	}
	if c.err != nil {
		return nil, c.err
	}
	e, err := c.recv()
	if err != nil {
		switch {
		case c.closed.Load():
			err = ErrClientClosed
		case c.ctx.Err() != nil:
			err = c.ctx.Err()
		}
		return nil, err
	}
	return e, nil
}

func (c *tieredClient) recv() (*reflex.Event, error) {
	for {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		var (
			e   *reflex.Event
			err error
		)
		if c.phase == phaseBucket {
			e, err = c.recvBucket()
		} else {
			e, err = c.recvTable()
		}
		switch {
		case err == nil:
			return e, nil
		case errors.Is(err, errSwitch):
			c.peekArchive()
			hookTiered("switch")
			if err := c.openTable(false); err != nil {
				return nil, err
			}
			c.phase = phaseTable
			hookTiered("table")
		case errors.Is(err, errBack):
			hookTiered("back")
			if err := c.openBucket(); err != nil {
				return nil, err
			}
			c.phase, c.peek = phaseBucket, nil
		default:
			return nil, err
		}
	}
}

// recvBucket returns the next archived event, or errSwitch once the
// client has passed the table's trimmed-through ID.
func (c *tieredClient) recvBucket() (*reflex.Event, error) {
	for {
		if e := c.pending; e != nil {
			if err := c.lagged(e); err != nil {
				return nil, err
			}
			c.pending = nil
			return e, nil
		}
		if c.pos >= c.thru {
			// Past the trimmed range as last learnt: the table may have
			// been trimmed further meanwhile.
			thru, err := c.trimmedThrough()
			if err != nil {
				return nil, err
			}
			c.thru = max(c.thru, thru)
			if c.pos >= c.thru {
				return nil, errSwitch
			}
		}
		in := c.current()
		if in == nil {
			return nil, ErrClientClosed
		}
		e, err := in.Recv()
		if reflex.IsHeadReachedErr(err) {
			return nil, c.fail(c.gapError(c.pos, 0))
		}
		if err != nil {
			return nil, err
		}
		id, ok := parseDecimal(e.ID)
		if !ok || (c.passed && id <= c.pos) {
			return nil, c.fail(fmt.Errorf("rblob: tiered stream: archived event %s after %d", bounded.Quote(e.ID), c.pos))
		}
		switch {
		case c.s.cfg.isNoop != nil && c.passed && id != c.pos+1:
			return nil, c.fail(c.gapError(c.pos, id))
		case c.pos < c.thru && id > c.thru:
			// The archive lacks the event the table's marker replaced.
			return nil, c.fail(c.gapError(c.pos, id))
		}
		c.pos, c.passed = id, true
		if c.s.cfg.isNoop != nil && c.s.cfg.isNoop(e) {
			continue
		}
		c.pending = e
	}
}

// lagged waits until e is as old as the lag, or returns
// reflex.ErrHeadReached if the stream goes to the head only.
func (c *tieredClient) lagged(e *reflex.Event) error {
	return waitLag(c.ctx, &c.timer, c.opts, e)
}

// peekArchive reads the archive's next event after the switch point, for
// the overlap check with the table's first event; it gives up quietly
// (the archive may end here, or its next object may not be needed).
func (c *tieredClient) peekArchive() {
	c.peek = nil
	in := c.current()
	if in == nil {
		return
	}
	for {
		e, err := in.Recv()
		if err != nil {
			return
		}
		if c.s.cfg.isNoop == nil || !c.s.cfg.isNoop(e) {
			c.peek = e
			return
		}
	}
}

// recvTable returns the table's next event, or errBack if the table was
// trimmed past the client.
func (c *tieredClient) recvTable() (*reflex.Event, error) {
	in := c.current()
	if in == nil {
		return nil, ErrClientClosed
	}
	e, err := in.Recv()
	if err != nil {
		if c.trimmedUnder(err) {
			return nil, errBack
		}
		return nil, err
	}
	id, ok := parseDecimal(e.ID)
	switch {
	case !ok:
		return nil, fmt.Errorf("rblob: tiered stream: table event id %s is not a decimal integer", bounded.Quote(e.ID))
	case c.known && c.passed && id <= c.pos:
		return nil, fmt.Errorf("rblob: tiered stream: table event %d after %d", id, c.pos)
	}
	if p := c.peek; p != nil {
		c.peek = nil
		if err := compareEvents(p, e); err != nil {
			return nil, c.fail(err)
		}
	}
	c.pos, c.known, c.passed = id, true, true
	return e, nil
}

// trimmedUnder reports whether err, from the table's stream, means that
// the events the client needs next were trimmed: then the client reads
// them from the archive.
func (c *tieredClient) trimmedUnder(err error) bool {
	if c.ctx.Err() != nil || reflex.IsHeadReachedErr(err) {
		return false
	}
	var tr interface {
		Trimmed() (cursor, through int64)
	}
	if errors.As(err, &tr) {
		cur, thru := tr.Trimmed()
		if !c.known {
			c.pos, c.known, c.passed = cur, true, cur > 0
		}
		c.thru = max(c.thru, thru)
	} else if c.known {
		thru, terr := c.s.trimmed(c.ctx)
		if terr != nil {
			return false // the table's error tells more
		}
		c.thru = max(c.thru, thru)
	}
	return c.known && c.pos < c.thru
}

// probe checks, before the client reads the archive up to the table's
// trimmed-through ID T, that the archive holds T and that the first event
// after T is the same in both sources. It retries (three times at most)
// while the table is trimmed further under it.
func (c *tieredClient) probe() error {
	for range 3 {
		retry, err := c.probeOnce()
		if !retry {
			return err
		}
		thru, err := c.trimmedThrough()
		if err != nil {
			return err
		}
		c.thru = max(c.thru, thru)
	}
	return nil // the table moves on: the checks at the switch remain
}

func (c *tieredClient) probeOnce() (retry bool, err error) {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	t := c.thru
	bc, err := c.s.b.StreamArchived(ctx, strconv.FormatInt(t-1, 10), reflex.WithStreamToHead())
	if err != nil {
		return false, err
	}
	defer closeSource(bc, nil)
	e, err := bc.Recv()
	switch {
	case reflex.IsHeadReachedErr(err):
		return false, c.gapError(t-1, 0)
	case err != nil:
		return false, err
	}
	if id, _ := parseDecimal(e.ID); id != t {
		return false, c.gapError(t-1, id)
	}
	var next *reflex.Event
	for {
		e, err := bc.Recv()
		if reflex.IsHeadReachedErr(err) {
			break
		}
		if err != nil {
			return false, err
		}
		if c.s.cfg.isNoop == nil || !c.s.cfg.isNoop(e) {
			next = e
			break
		}
	}
	tc, err := c.s.table(ctx, strconv.FormatInt(t, 10), reflex.WithStreamToHead())
	if err != nil {
		return false, fmt.Errorf("rblob: tiered stream: open the table after %d: %w", t, err)
	}
	defer closeSource(tc, nil)
	first, err := tc.Recv()
	switch {
	case reflex.IsHeadReachedErr(err):
		return false, nil
	case err != nil:
		var tr interface {
			Trimmed() (cursor, through int64)
		}
		if errors.As(err, &tr) {
			return true, nil
		}
		return false, fmt.Errorf("rblob: tiered stream: read the table after %d: %w", t, err)
	}
	if next == nil {
		return false, nil
	}
	return false, compareEvents(next, first)
}

// compareEvents checks that the archive's event a and the table's event b,
// each the first after the same ID, are the same event.
func compareEvents(a, b *reflex.Event) error {
	var what string
	switch {
	case a.ID != b.ID:
		return fmt.Errorf("%w: the next event is %s in the archive but %s in the table", ErrArchiveMismatch, bounded.Quote(a.ID), bounded.Quote(b.ID))
	case typeOf(a) != typeOf(b):
		what = fmt.Sprintf("type %d and %d", typeOf(a), typeOf(b))
	case a.ForeignID != b.ForeignID:
		what = fmt.Sprintf("foreign id %s and %s", bounded.Quote(a.ForeignID), bounded.Quote(b.ForeignID))
	case !a.Timestamp.Equal(b.Timestamp):
		what = fmt.Sprintf("timestamp %s and %s", a.Timestamp.Format(time.RFC3339Nano), b.Timestamp.Format(time.RFC3339Nano))
	case !bytes.Equal(a.MetaData, b.MetaData):
		what = fmt.Sprintf("metadata (%d and %d bytes)", len(a.MetaData), len(b.MetaData))
	case !bytes.Equal(a.Trace, b.Trace):
		what = fmt.Sprintf("trace (%d and %d bytes)", len(a.Trace), len(b.Trace))
	default:
		return nil
	}
	return fmt.Errorf("%w: event %s differs: the archive's and the table's have %s", ErrArchiveMismatch, bounded.Quote(a.ID), what)
}

func typeOf(e *reflex.Event) int {
	if e.Type == nil {
		return 0
	}
	return e.Type.ReflexType()
}

// gapError describes events missing from the archive after prev (the last
// event read, 0 for none): up to next (the next event read), or to the end
// of the archive if next is 0, which the table's trimmed-through ID lies
// beyond. It names the objects around the hole, listing the bucket.
func (c *tieredClient) gapError(prev, next int64) error {
	keys, lerr := listKeys(c.ctx, c.s.b.bucket, &blob.ListOptions{})
	// holder returns the key of the object that holds id: the last whose
	// first event is at most id.
	holder := func(id int64) (string, int64) {
		key, first := "", int64(-1)
		for _, k := range keys {
			f, ok := parseArchiveKey("", k)
			if ok && f <= id {
				key, first = k, f
			}
		}
		return key, first
	}
	if next == 0 {
		why := fmt.Sprintf("the archive holds no event after %d but the table is trimmed through event %d: its later objects are missing, or it is not this table's archive, or the table was trimmed without archiving", prev, c.thru)
		if key, _ := holder(prev); key != "" {
			return &ObjectError{Key: key, Offset: -1, Err: fmt.Errorf("%w: %s", ErrArchiveGap, why)}
		}
		if lerr != nil {
			why += fmt.Sprintf(" (listing the bucket: %v)", lerr)
		}
		return fmt.Errorf("rblob: tiered stream: bucket %q: %w: %s", c.s.b.label, ErrArchiveGap, why)
	}
	need := ""
	if c.s.cfg.isNoop == nil {
		need = fmt.Sprintf(" (among them event %d, through which the table is trimmed)", c.thru)
	}
	key, first := holder(next)
	prevKey, _ := holder(prev)
	var why string
	switch {
	case key != "" && first == next && prevKey != key:
		why = fmt.Sprintf("events %d to %d%s are missing between object %s and this one: an object is missing, or the archive is not this table's", prev+1, next-1, need, bounded.Quote(prevKey))
	case key != "":
		why = fmt.Sprintf("events %d to %d%s are missing inside this object", prev+1, next-1, need)
	default:
		return fmt.Errorf("rblob: tiered stream: bucket %q: %w: events %d to %d%s are missing", c.s.b.label, ErrArchiveGap, prev+1, next-1, need)
	}
	return &ObjectError{Key: key, Offset: -1, Err: fmt.Errorf("%w: %s", ErrArchiveGap, why)}
}

// fail makes err sticky.
func (c *tieredClient) fail(err error) error {
	c.err = err
	return err
}

// current returns the open source stream, nil after Close.
func (c *tieredClient) current() reflex.StreamClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inner
}

// openBucket opens the archive after pos (to its head: its end is
// checked) in place of the current source.
func (c *tieredClient) openBucket() error {
	ctx, cancel := context.WithCancel(c.ctx)
	after := ""
	if c.passed {
		after = strconv.FormatInt(c.pos, 10)
	}
	cl, err := c.s.b.StreamArchived(ctx, after, reflex.WithStreamToHead())
	if err != nil {
		cancel()
		return err
	}
	return c.setInner(cl, cancel)
}

// openTable opens the table after pos (or from its head first) in place
// of the current source.
func (c *tieredClient) openTable(fromHead bool) error {
	o := c.opts
	o.StreamFromHead = fromHead
	after := ""
	if c.passed {
		after = strconv.FormatInt(c.pos, 10)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	cl, err := c.s.table(ctx, after, func(so *reflex.StreamOptions) { *so = o })
	if err != nil {
		cancel()
		if cerr := c.ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("rblob: tiered stream: open the table after %s: %w", bounded.Quote(after), err)
	}
	return c.setInner(cl, cancel)
}

// setInner makes cl the current source, closing the previous one.
func (c *tieredClient) setInner(cl reflex.StreamClient, cancel context.CancelFunc) error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		closeSource(cl, cancel)
		return ErrClientClosed
	}
	old, oldCancel := c.inner, c.innerCancel
	c.inner, c.innerCancel = cl, cancel
	c.mu.Unlock()
	closeSource(old, oldCancel)
	return nil
}

// Close closes the client; see StreamTiered.
func (c *tieredClient) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.cancel()
		c.mu.Lock()
		in, cancel := c.inner, c.innerCancel
		c.inner, c.innerCancel = nil, nil
		c.mu.Unlock()
		closeSource(in, cancel)
	})
	return nil
}

// closeClient cancels a source stream's context and closes it.
func closeSource(cl reflex.StreamClient, cancel context.CancelFunc) {
	if cancel != nil {
		cancel()
	}
	if cl == nil {
		return
	}
	if cc, ok := cl.(io.Closer); ok {
		_ = cc.Close()
	}
}
