package rsql

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"strconv"
	"time"
	"unsafe"

	"github.com/seed-e488ba2e/reflex"
)

// Loads are layered, outer to inner: the noop filter, the read-through
// cache (unless disabled, and skipped by streams catching up), the gap
// detector, then the base loader (SQL or WithEventsLoader).

// batch is the result of one load.
type batch struct {
	events []*reflex.Event
	ids    []int64 // ids[i] is the ID of events[i]
	// next is where the following load starts: the ID of the last row
	// read, including noops the filter removed, or the load's prev.
	next int64
	// gap is set when the load stopped before a missing ID that may still
	// be committed or filled.
	gap bool
	// bytes is the memory the events pin (their chunk, strings and byte
	// slices, shared by the whole batch), 0 if unknown.
	bytes int
	// full is set when the base loader returned as many rows as asked, so
	// more rows probably follow.
	full bool
	// head is set when the SQL loader returned fewer rows than asked and
	// no gap, all of them in this batch: the batch reached the table's
	// head as of this load.
	head bool
	// headCh, set by EventsTable.load for a batch that reached the head
	// (directly, through a shared load or from the cache), is the head
	// watcher's broadcast channel when the query that found the head
	// started. A stream whose ticket holds the same channel knows that any
	// event committed since that query has closed it (or is caught by the
	// watcher's poll), so it may wait without an empty load.
	headCh <-chan struct{}
}

// load runs the whole stack for a stream at prev.
//
// gen, if not nil, returns the head watcher's current broadcast channel;
// load records it before querying to set the batch's headCh.
func (t *EventsTable) load(ctx context.Context, db *sql.DB, prev int64, lag time.Duration, limit int, catchUp bool, gen func() <-chan struct{}) (batch, error) {
	inner := t.loadGapped
	if gen != nil {
		inner = func(ctx context.Context, db *sql.DB, prev int64, lag time.Duration, limit int) (batch, error) {
			ch0 := gen()
			b, err := t.loadGapped(ctx, db, prev, lag, limit)
			if b.head {
				b.headCh = ch0
			}
			return b, err
		}
	}
	var (
		b   batch
		err error
	)
	if t.cache == nil || catchUp {
		b, err = inner(ctx, db, prev, lag, limit)
	} else {
		b, err = t.cache.load(ctx, db, prev, lag, limit, inner)
	}
	if err != nil {
		return batch{}, err
	}
	if !t.cfg.includeNoops {
		b = filterNoops(b)
	}
	return b, nil
}

// filterNoops removes noop events, keeping b.next. It never modifies the
// slices of b, which the cache may share.
func filterNoops(b batch) batch {
	n := 0
	for _, e := range b.events {
		if isNoopEvent(e) {
			n++
		}
	}
	if n == 0 {
		return b
	}
	evs := make([]*reflex.Event, 0, len(b.events)-n)
	ids := make([]int64, 0, len(b.events)-n)
	for i, e := range b.events {
		if !isNoopEvent(e) {
			evs = append(evs, e)
			ids = append(ids, b.ids[i])
		}
	}
	b.events, b.ids = evs, ids
	return b
}

func isNoopEvent(e *reflex.Event) bool {
	return e.Type != nil && isNoop(e.ForeignID, e.Type.ReflexType())
}

// loadGapped is the gap detector over the base loader: it
// returns the events up to the first missing ID. A stream never passes a
// missing ID, because its transaction may still commit; the gap is offered
// to the table's gap listeners (see FillGaps) without blocking, and
// detected again by the next load if nobody took it.
func (t *EventsTable) loadGapped(ctx context.Context, db *sql.DB, prev int64, lag time.Duration, limit int) (batch, error) {
	var (
		b   batch
		err error
	)
	if t.cfg.loader != nil {
		b, err = t.loadCustom(ctx, db, prev, lag)
	} else {
		b, err = t.loadSQL(ctx, db, prev, lag, limit)
	}
	if err != nil {
		return batch{}, err
	}
	if b, err = t.beforeTrimMarker(prev, b); err != nil {
		return batch{}, err // trimmed IDs are not a gap (trim.go)
	}
	cur := prev
	for i, id := range b.ids {
		if id <= cur {
			return batch{}, fmt.Errorf("rsql: events table %s: loader returned event %d after %d: %w", t.name, id, cur, ErrConsecEvent)
		}
		if cur == 0 && i == 0 && id > 1 && t.cfg.loader == nil {
			// The first event of a stream from the beginning may have any
			// ID, but not while a lower ID is still in flight: it would
			// be skipped for ever.
			inFlight, err := t.d.lowerInFlight(ctx, t, db, id)
			if err != nil {
				return batch{}, err
			}
			if inFlight {
				b.events, b.ids, b.gap, b.full, b.head = nil, nil, true, false, false
				break
			}
		}
		if cur != 0 && id != cur+1 {
			t.m.GapDetected.Inc()
			t.gaps.offer(Gap{Prev: cur, Next: id})
			t.open.seen(cur + 1)
			b.events, b.ids, b.gap, b.full, b.head = b.events[:i], b.ids[:i], true, false, false
			break
		}
		cur = id
	}
	b.next = cur
	switch {
	case b.gap:
		t.m.BlockingGap.Set(1)
	case len(b.ids) > 0:
		t.m.BlockingGap.Set(0)
	}
	t.open.passed(cur, t.m)
	return b, nil
}

// lowerUncommitted reports whether a row with an ID below id exists,
// committed or not, with a READ UNCOMMITTED query (false where the
// engine has no such level).
func (t *EventsTable) lowerUncommitted(ctx context.Context, db *sql.DB, id int64) (bool, error) {
	opts := t.d.uncommittedTx()
	if opts == nil {
		return false, nil
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return false, fmt.Errorf("rsql: events table %s: check uncommitted events: %w", t.name, err)
	}
	defer tx.Rollback()
	var got int64
	s := t.q.below(id)
	err = tx.QueryRowContext(ctx, s.String(), s.args...).Scan(&got)
	switch {
	case err == sql.ErrNoRows:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("rsql: events table %s: check uncommitted events: %w", t.name, err)
	}
	return true, nil
}

// loadCustom runs a WithEventsLoader loader.
func (t *EventsTable) loadCustom(ctx context.Context, db *sql.DB, prev int64, lag time.Duration) (batch, error) {
	evs, err := t.cfg.loader(ctx, db, prev, lag)
	if err != nil {
		return batch{}, err
	}
	ids := make([]int64, len(evs))
	for i, e := range evs {
		id, err := parseID(e.ID)
		if err != nil {
			return batch{}, fmt.Errorf("rsql: events table %s: loaded event: %w", t.name, err)
		}
		ids[i] = id
	}
	return batch{events: evs, ids: ids}, nil
}

// parseID parses an event ID: a base-10 int64 >= 0. The error wraps
// ErrInvalidIntID and quotes at most bounded.QuoteBytes bytes of s.
func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("%w: %s", ErrInvalidIntID, bounded.Quote(s))
	}
	return id, nil
}

// parseStreamCursor parses a stream's cursor: "" (0) or an event ID. The
// error wraps reflex.ErrInvalidCursor and ErrInvalidIntID and quotes at
// most bounded.QuoteBytes bytes of s.
func parseStreamCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("%w: %w: %s", reflex.ErrInvalidCursor, ErrInvalidIntID, bounded.Quote(s))
	}
	return id, nil
}

// loadSQL is the base SQL loader: the events after prev in ID order, at
// most limit, only those older than lag if lag > 0. It uses a prepared
// statement: the binary protocol is cheaper for the server and the client
// than text for large batches.
func (t *EventsTable) loadSQL(ctx context.Context, db *sql.DB, prev int64, lag time.Duration, limit int) (batch, error) {
	hookQuery(t.q.table, "load")
	start := time.Now()
	var (
		rows *sql.Rows
		err  error
	)
	if lag > 0 {
		rows, err = t.stmts.query(ctx, db, t.q.loadLag, prev, lag.Microseconds(), limit)
	} else {
		rows, err = t.stmts.query(ctx, db, t.q.load, prev, limit)
	}
	if err != nil {
		return batch{}, fmt.Errorf("rsql: load events from %s: %w", t.name, checkEngine(t.d, err))
	}
	defer rows.Close()
	var dec decoder
	if limit > t.limit {
		// Catching up: the batch is probably full.
		dec.grow(limit)
	}
	var (
		id, typ          int64
		ts               time.Time
		fid, meta, trace sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&id, &fid, &ts, &typ, &meta, &trace); err != nil {
			return batch{}, fmt.Errorf("rsql: load events from %s: %w", t.name, err)
		}
		dec.add(id, fid, ts, typ, meta, trace)
	}
	if err := rows.Err(); err != nil {
		return batch{}, fmt.Errorf("rsql: load events from %s: %w", t.name, err)
	}
	b := dec.finish()
	b.full = len(b.ids) >= limit
	b.head = !b.full
	d := time.Since(start)
	t.m.Loading.Observe(d.Seconds())
	if n := len(b.ids); n > 0 {
		t.m.Deserialized.Add(float64(n))
		t.m.Deserialization.Observe(d.Seconds() / float64(n))
	}
	return b, nil
}

// decoder turns scanned rows into events with few allocations: the rows
// of a batch are collected first, then their events are allocated in one
// chunk of exactly the batch's size (so that an event kept by the
// read-through cache pins no more than its own batch), and the strings and
// byte slices of a batch share one backing buffer each.
type decoder struct {
	rows []decodedRow
	ids  []int64
	str  []byte // ID then foreign ID of every row
	bin  []byte // metadata then trace of every row
}

// decodedRow is a scanned row whose strings and byte slices are in
// decoder.str and decoder.bin.
type decodedRow struct {
	ts  time.Time
	typ int64
	rowOffsets
}

// rowOffsets locate a row's strings in decoder.str and byte slices in
// decoder.bin; a negative start is a NULL.
type rowOffsets struct {
	idEnd, fidEnd        int32
	metaStart, metaEnd   int32
	traceStart, traceEnd int32
}

// eventSize is the memory of one decoded event besides its strings and
// byte slices: the event and its pointer and ID in a batch.
const eventSize = int(unsafe.Sizeof(reflex.Event{})) + 2*8

// grow makes room for n rows.
func (d *decoder) grow(n int) {
	d.rows = make([]decodedRow, 0, n)
	d.ids = make([]int64, 0, n)
	d.str = make([]byte, 0, 16*n)
}

func (d *decoder) add(id int64, fid []byte, ts time.Time, typ int64, meta, trace []byte) {
	r := decodedRow{ts: ts, typ: typ}
	d.str = strconv.AppendInt(d.str, id, 10)
	r.idEnd = int32(len(d.str))
	d.str = append(d.str, fid...)
	r.fidEnd = int32(len(d.str))
	r.metaStart, r.metaEnd = d.appendBin(meta)
	r.traceStart, r.traceEnd = d.appendBin(trace)
	d.rows = append(d.rows, r)
	d.ids = append(d.ids, id)
}

func (d *decoder) appendBin(b []byte) (int32, int32) {
	if b == nil {
		return -1, -1
	}
	start := int32(len(d.bin))
	d.bin = append(d.bin, b...)
	return start, int32(len(d.bin))
}

func (d *decoder) finish() batch {
	n := len(d.rows)
	if n == 0 {
		return batch{}
	}
	chunk := make([]reflex.Event, n)
	evs := make([]*reflex.Event, n)
	s := string(d.str)
	var start int32
	for i := range d.rows {
		r := &d.rows[i]
		e := &chunk[i]
		e.ID = s[start:r.idEnd]
		e.ForeignID = s[r.idEnd:r.fidEnd]
		start = r.fidEnd
		e.Timestamp = r.ts
		e.Type = eventtype.Type(r.typ)
		if r.metaStart >= 0 {
			e.MetaData = nonNil(d.bin[r.metaStart:r.metaEnd:r.metaEnd])
		}
		if r.traceStart >= 0 {
			e.Trace = nonNil(d.bin[r.traceStart:r.traceEnd:r.traceEnd])
		}
		evs[i] = e
	}
	return batch{
		events: evs,
		ids:    d.ids,
		next:   d.ids[n-1],
		bytes:  n*eventSize + (cap(d.ids)-n)*8 + len(s) + cap(d.bin),
	}
}

// nonNil keeps an empty, non-NULL value distinct from NULL (a slice of a
// nil buffer is nil).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
