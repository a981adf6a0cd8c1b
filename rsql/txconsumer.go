package rsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

const (
	// defaultTxBatchLen is the most events a TxConsumer commits in one
	// transaction by default: enough to make the commit's cost small per
	// event, few enough to keep row locks short.
	defaultTxBatchLen = 500
	// defaultTxBatchPeriod is how long a TxConsumer keeps a transaction
	// open after its first event by default, so that a slow stream's
	// effects are committed promptly.
	defaultTxBatchPeriod = 100 * time.Millisecond
	// defaultTxIdleTimeout is how long the server lets a TxConsumer's
	// transaction sit idle by default before it rolls it back: far longer
	// than the gaps between its statements, short enough that a paused
	// process releases its row locks soon after its lease expired.
	defaultTxIdleTimeout = 10 * time.Second
)

// TxFunc writes the effects of event e in tx, the transaction in which
// the consumer's cursor moves past e. It must write only through tx (not
// commit or roll it back); an error rolls back the effects of every event
// of the transaction, which are delivered again.
type TxFunc func(ctx context.Context, tx *sql.Tx, e *reflex.Event) error

// TxOption configures a TxConsumer; see NewTxConsumer.
type TxOption func(*txConfig)

type txConfig struct {
	batchLen int
	period   time.Duration
	idle     time.Duration
	copts    []reflex.ConsumerOption
}

// WithTxBatch sets how many events a transaction holds at most (n, default
// 500) and how long it stays open after its first event at most (d,
// default 100 ms; 0 means no time limit: a transaction is committed only
// when it holds n events or when the run ends). NewTxConsumer panics if n
// < 1 or d < 0.
func WithTxBatch(n int, d time.Duration) TxOption {
	return func(c *txConfig) { c.batchLen, c.period = n, d }
}

// WithTxIdleTimeout makes the database server roll back a transaction of
// the consumer whose session has been idle (no statement running) for d,
// rounded up to whole seconds: a process paused or cut off in the middle
// of a transaction would otherwise keep its row locks (on the cursor row,
// on the lease row of a fenced write, on the effects it inserted) until
// the server notices the dead connection, blocking the member that took
// its lease over. Default 10 s; 0 disables it. With MySQL/MariaDB each run
// of the consumer keeps one connection for its transactions, sets its
// session's wait_timeout when it takes it and restores it when it gives
// it back (Stop); the server closes the connection if the consumer is
// idle for longer (no event to consume), and the next transaction takes
// another. SQLite needs nothing. Keep d well above the batch period and
// the time the TxFunc takes for one event. NewTxConsumer panics if d < 0.
func WithTxIdleTimeout(d time.Duration) TxOption {
	return func(c *txConfig) { c.idle = d }
}

// WithTxConsumerOptions sets the options of the instrumented consumer that
// NewTxSpec builds around the TxConsumer (see reflex.NewConsumer): filters,
// recovery, metrics. Events that a filter skips move the cursor with the
// next transaction, without calling the TxFunc.
func WithTxConsumerOptions(opts ...reflex.ConsumerOption) TxOption {
	return func(c *txConfig) { c.copts = append(c.copts, opts...) }
}

// TxConsumer is an effectively-once consumer: its TxFunc writes the
// effects of each event in a transaction of the database that holds the
// cursors table, and the consumer writes its cursor in the same
// transaction before committing, so the effects of every event are
// committed exactly once, together with the cursor that moves past it, or
// not at all. Run it with NewTxSpec.
//
// A transaction holds up to n events or stays open up to d after its first
// event (WithTxBatch: 500 events, 100 ms by default; a consumer that was
// idle may wait up to twice d), then is committed: the cursor write is its
// last statement, so the cursor row (and the lease row, if fenced) is
// locked only while it commits. The cursor write is conditioned on the
// stored cursor being the one the consumer read or last committed, so a
// second process running the same consumer name cannot commit the same
// events: its transaction fails with ErrConcurrentWriter and is rolled
// back. Built on a cursor store fenced by a lease (LeaseStore.
// FenceCursorStore, as given by rpatterns.RunShardedSpecs), the write is
// also conditioned on the lease: a holder that lost it gets ErrLeaseLost
// and its transaction is rolled back.
//
// Effects in other systems (messages, HTTP calls) cannot be in the
// transaction and stay at-least-once: an event is delivered again after a
// failed or rolled-back transaction. Make them idempotent with the event
// ID as the key (for example an idempotency key or a unique column in the
// other system). Also use the event ID as a unique key in the effects
// tables of the transaction itself and let duplicate-key errors fail the
// transaction (never INSERT IGNORE them): they are the sign of a bug.
//
// A TxConsumer serves one run at a time. The goroutine that commits a
// transaction when its time is up is started by each run (Reset) and
// stopped at the end of the run or by Stop; the transaction left open when
// a run ends is committed by the run's final Flush, or rolled back.
type TxConsumer struct {
	name  string
	db    *sql.DB
	t     *CursorsTable
	f     *fence // nil: not fenced
	fn    TxFunc
	cfg   txConfig
	store *txStore

	mu sync.Mutex // protects the following fields
	// committed is the stored cursor (if state is stateKnown), read by
	// GetCursor and moved by each commit; the next commit writes over it.
	committed cursorVal
	state     storedState
	tx        *sql.Tx   // the open transaction, or nil
	conn      *sql.Conn // the run's connection, when its session is changed
	first     time.Time // when the open batch got its first event
	count     int       // events in the open batch (cursor notes)
	pending   cursorVal // the cursor to commit, if dirty
	dirty     bool
	inflight  bool  // an event's effects are in tx but its cursor is not noted yet
	failed    error // returned by Consume and SetCursor until the next run

	lifeMu sync.Mutex // protects stop; never held with mu taken first
	stop   context.CancelFunc
	wg     sync.WaitGroup // the period goroutine
}

var (
	_ reflex.ResetterCtx = (*TxConsumer)(nil)
	_ reflex.Stopper     = (*TxConsumer)(nil)
)

// NewTxConsumer returns an effectively-once consumer named name (also its
// cursor's name) that calls fn for each event in a transaction of db and
// keeps its cursor in the cursors table of store: a *CursorStore
// (CursorsTable.ToStore) or a store fenced by a lease
// (LeaseStore.FenceCursorStore). The cursors table must be in db; its
// asynchronous buffer is not used (the cursor is written in the
// transaction). Run it with NewTxSpec.
//
// It panics with an "rsql:" message for a nil db or fn, a store of
// another kind, or invalid options: these are programming errors.
func NewTxConsumer(name string, db *sql.DB, store reflex.CursorStore, fn TxFunc, opts ...TxOption) *TxConsumer {
	cfg := txConfig{batchLen: defaultTxBatchLen, period: defaultTxBatchPeriod, idle: defaultTxIdleTimeout}
	for _, o := range opts {
		if o == nil {
			panic("rsql: NewTxConsumer: nil option")
		}
		o(&cfg)
	}
	if db == nil || fn == nil {
		panic("rsql: NewTxConsumer: nil *sql.DB or TxFunc")
	}
	if cfg.batchLen < 1 || cfg.period < 0 || cfg.idle < 0 {
		panic(fmt.Sprintf("rsql: NewTxConsumer(%q): batch of %d events or %v, idle timeout %v: need at least 1 event, a period >= 0 and an idle timeout >= 0",
			name, cfg.batchLen, cfg.period, cfg.idle))
	}
	tc := &TxConsumer{name: name, db: db, fn: fn, cfg: cfg}
	switch s := store.(type) {
	case *CursorStore:
		tc.t = s.t
	case *fencedStore:
		tc.t, tc.f = s.s.t, s.f
	default:
		panic(fmt.Sprintf("rsql: NewTxConsumer(%q): store %T is not an rsql cursor store (CursorsTable.ToStore or LeaseStore.FenceCursorStore)", name, store))
	}
	tc.store = &txStore{tc: tc}
	return tc
}

// NewTxSpec returns a spec that runs tc over stream, instrumented with the
// consumer options of WithTxConsumerOptions. Run's cursor calls go to tc:
// GetCursor reads the stored cursor, SetCursor adds the event to the open
// transaction (committing it when it is full), Flush commits it. Run
// resets tc at the start of each run; Spec.Stop stops it.
func NewTxSpec(stream reflex.StreamFunc, tc *TxConsumer, opts ...reflex.StreamOption) reflex.Spec {
	c := reflex.NewConsumer(tc.name, tc.Consume, tc.cfg.copts...)
	return reflex.NewSpec(stream, tc.store, &txLifecycle{Consumer: c, tc: tc}, opts...)
}

// Name returns the consumer's name.
func (tc *TxConsumer) Name() string { return tc.name }

// Consume calls the TxFunc for e in the open transaction, beginning one if
// none is open. An error from the TxFunc rolls back the transaction (the
// effects of its earlier events too) and is returned; so is the error of
// a transaction that failed in the background, until the next run. Run
// calls it through the spec of NewTxSpec, which also moves the cursor.
func (tc *TxConsumer) Consume(ctx context.Context, e *reflex.Event) error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.failed != nil {
		return tc.failed
	}
	if err := tc.beginLocked(ctx); err != nil {
		return err
	}
	if err := tc.fn(ctx, tc.tx, e); err != nil {
		tc.rollbackLocked(ctx)
		return err
	}
	tc.inflight = true
	return nil
}

// beginLocked begins the batch's transaction if none is open. The
// transaction does not end with the run's context: the run's final Flush
// commits it.
func (tc *TxConsumer) beginLocked(ctx context.Context) error {
	if tc.tx != nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	var (
		tx  *sql.Tx
		err error
	)
	if set, _ := tc.t.d.txIdleTimeout(tc.cfg.idle); set != "" && tc.cfg.idle > 0 {
		// The run's transactions share one connection whose session has
		// the idle timeout; the server may have closed it while it was
		// idle between transactions: then take a new one, once.
		for attempt := 0; attempt < 2; attempt++ {
			if tc.conn == nil {
				var conn *sql.Conn
				if conn, err = tc.db.Conn(ctx); err != nil {
					break
				}
				if _, err = conn.ExecContext(ctx, set); err != nil {
					tc.closeConn(ctx, conn, false)
					continue
				}
				tc.conn = conn
			}
			if tx, err = tc.conn.BeginTx(ctx, nil); err == nil {
				break
			}
			tc.releaseConnLocked(ctx, false)
		}
	} else {
		tx, err = tc.db.BeginTx(ctx, nil)
	}
	if err != nil {
		return fmt.Errorf("rsql: consumer %s: begin transaction: %w", bounded.Quote(tc.name), err)
	}
	tc.tx = tx
	if tc.count == 0 && !tc.dirty {
		tc.first = time.Now()
	}
	return nil
}

// note records that the event with ID id is consumed: its cursor is
// committed with the batch, which is committed now if full or due.
func (tc *TxConsumer) note(ctx context.Context, id string) error {
	c, err := tc.t.parse(tc.name, id)
	if err != nil {
		return err
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.failed != nil {
		return tc.failed
	}
	if tc.count == 0 && !tc.dirty && tc.tx == nil {
		tc.first = time.Now()
	}
	tc.pending, tc.dirty, tc.inflight = c, true, false
	tc.count++
	if tc.count >= tc.cfg.batchLen || (tc.cfg.period > 0 && time.Since(tc.first) >= tc.cfg.period) {
		return tc.commitLocked(ctx)
	}
	return nil
}

// commitLocked writes the pending cursor in the open transaction (one is
// begun for a batch of skipped events only) and commits it. On failure
// the transaction is rolled back and the consumer fails until the next
// run.
func (tc *TxConsumer) commitLocked(ctx context.Context) error {
	if !tc.dirty {
		tc.rollbackLocked(ctx)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tc.t.cfg.flushTimeout)
	defer cancel()
	err := tc.beginLocked(ctx)
	if err == nil {
		err = tc.writeCursorLocked(ctx)
	}
	if err == nil {
		if err = tc.tx.Commit(); err != nil {
			err = fmt.Errorf("rsql: consumer %s: commit: %w", bounded.Quote(tc.name), err)
		}
		tc.tx = nil
		if err != nil {
			tc.releaseConnLocked(ctx, false)
		}
	}
	if err != nil {
		tc.rollbackLocked(ctx)
		tc.failed = err
		return err
	}
	tc.committed, tc.state = tc.pending, stateKnown
	tc.dirty, tc.count = false, 0
	if tc.t.counter != nil {
		tc.t.counter()
	}
	return nil
}

// writeCursorLocked writes the pending cursor in the open transaction,
// over the committed one, fenced if the consumer is.
func (tc *TxConsumer) writeCursorLocked(ctx context.Context) error {
	m, err := tc.t.loadMeta(ctx, tc.tx)
	if err == nil {
		err = m.checkCursor(tc.pending)
	}
	if err != nil {
		return tc.t.opErr("set cursor", tc.name, err)
	}
	r := &flushRow{e: &cursorEntry{name: tc.name}, v: tc.pending, state: tc.state, stored: tc.committed, fence: tc.f}
	if tc.f != nil {
		err = tc.t.writeFenced(ctx, tc.tx, r)
	} else {
		err = tc.t.writeRows(ctx, tc.tx, []*flushRow{r})
	}
	if err != nil {
		return fmt.Errorf("rsql: consumer %s: set cursor to %s in table %s: %w", bounded.Quote(tc.name), bounded.Quote(tc.pending.s), tc.t.name, err)
	}
	switch r.out {
	case outWritten, outUpserted:
		return nil
	case outLeaseLost:
		return tc.f.lostErr(tc.t.name, tc.name, tc.pending.s)
	}
	what := "no row"
	if tc.state == stateKnown {
		what = bounded.Quote(tc.committed.s)
	}
	return fmt.Errorf("rsql: consumer %s: set cursor to %s in table %s: %w: the stored cursor is no longer %s",
		bounded.Quote(tc.name), bounded.Quote(tc.pending.s), tc.t.name, ErrConcurrentWriter, what)
}

// rollbackLocked rolls back the open transaction, if any, and forgets the
// batch.
func (tc *TxConsumer) rollbackLocked(ctx context.Context) {
	if tc.tx != nil {
		if err := tc.tx.Rollback(); err != nil {
			tc.releaseConnLocked(ctx, false)
		}
		tc.tx = nil
	}
	tc.dirty, tc.count, tc.inflight = false, 0, false
}

// releaseConnLocked gives the run's connection back to the pool with its
// session restored (if ok), or discards it.
func (tc *TxConsumer) releaseConnLocked(ctx context.Context, ok bool) {
	if tc.conn == nil {
		return
	}
	tc.closeConn(ctx, tc.conn, ok)
	tc.conn = nil
}

// closeConn restores conn's session (if ok) and gives it back to the
// pool, or discards it.
func (tc *TxConsumer) closeConn(ctx context.Context, conn *sql.Conn, ok bool) {
	if ok {
		_, reset := tc.t.d.txIdleTimeout(tc.cfg.idle)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tc.t.cfg.flushTimeout)
		_, err := conn.ExecContext(ctx, reset)
		cancel()
		ok = err == nil
	}
	if !ok {
		// The session may keep the short timeout: never reuse it.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = conn.Close()
}

// getCursor reads the stored cursor at the start of a run, forgetting what
// an earlier run left.
func (tc *TxConsumer) getCursor(ctx context.Context) (string, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.rollbackLocked(ctx)
	tc.failed = nil
	m, err := tc.t.loadMeta(ctx, tc.db)
	if err == nil {
		err = m.key.check(tc.name)
	}
	if err != nil {
		return "", tc.t.opErr("get cursor", tc.name, err)
	}
	s, found, err := tc.t.read(ctx, tc.db, tc.name)
	if err != nil {
		return "", tc.t.opErr("get cursor", tc.name, err)
	}
	tc.state = stateAbsent
	if found {
		v, ok := tc.t.parseStored(s)
		if !ok {
			return "", tc.t.opErr("get cursor", tc.name, fmt.Errorf("%w %s: stored cursor", ErrInvalidCursor, bounded.Quote(s)))
		}
		tc.committed, tc.state = v, stateKnown
	}
	return s, nil
}

// flush commits the open batch at the end of a run: the effects of an
// event whose cursor was not noted are rolled back.
func (tc *TxConsumer) flush(ctx context.Context) error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.failed != nil {
		return tc.failed
	}
	if tc.inflight {
		tc.rollbackLocked(ctx)
		return nil
	}
	return tc.commitLocked(ctx)
}

// Reset starts the goroutine that commits a transaction when its time is
// up, for the run of ctx; it stops when ctx ends or on Stop. Run calls it
// at the start of each run. It never fails.
func (tc *TxConsumer) Reset(ctx context.Context) error {
	tc.stopLoop()
	if tc.cfg.period <= 0 {
		return nil
	}
	lctx, cancel := context.WithCancel(ctx)
	tc.lifeMu.Lock()
	tc.stop = cancel
	tc.lifeMu.Unlock()
	tc.wg.Go(func() { tc.periodLoop(lctx) })
	return nil
}

// Stop stops the goroutine started by Reset, waits for it, rolls back
// the open transaction (a run's Flush has committed what it could) and
// gives the run's connection back to the pool, within the cursors table's
// flush timeout. It is idempotent and safe for concurrent use; it returns
// nil.
func (tc *TxConsumer) Stop() error {
	tc.stopLoop()
	tc.mu.Lock()
	ctx := context.Background() // each step is bounded by the flush timeout
	tc.rollbackLocked(ctx)
	tc.releaseConnLocked(ctx, true)
	tc.mu.Unlock()
	return nil
}

// stopLoop stops the period goroutine and waits for it.
func (tc *TxConsumer) stopLoop() {
	tc.lifeMu.Lock()
	stop := tc.stop
	tc.stop = nil
	tc.lifeMu.Unlock()
	if stop != nil {
		stop()
	}
	tc.wg.Wait()
}

// periodLoop commits the open batch once it is older than the period,
// unless an event is in flight (its cursor note then commits it).
func (tc *TxConsumer) periodLoop(ctx context.Context) {
	var w wait.Timer
	defer w.Stop()
	d := tc.cfg.period
	for w.Sleep(ctx, d) == nil {
		tc.mu.Lock()
		d = tc.cfg.period
		if tc.dirty || tc.tx != nil {
			if left := tc.cfg.period - time.Since(tc.first); left > 0 {
				d = left
			} else if !tc.inflight && tc.failed == nil {
				_ = tc.commitLocked(ctx) // a failure is kept in failed
			}
		}
		tc.mu.Unlock()
	}
}

// txStore is the cursor store of a TxConsumer's spec.
type txStore struct{ tc *TxConsumer }

func (s *txStore) GetCursor(ctx context.Context, name string) (string, error) {
	if name != s.tc.name {
		return "", fmt.Errorf("rsql: consumer %s: get cursor of another consumer %s", bounded.Quote(s.tc.name), bounded.Quote(name))
	}
	return s.tc.getCursor(ctx)
}

func (s *txStore) SetCursor(ctx context.Context, name, cursor string) error {
	if name != s.tc.name {
		return fmt.Errorf("rsql: consumer %s: set cursor of another consumer %s", bounded.Quote(s.tc.name), bounded.Quote(name))
	}
	return s.tc.note(ctx, cursor)
}

func (s *txStore) Flush(ctx context.Context) error { return s.tc.flush(ctx) }

// txLifecycle is the instrumented consumer of a TxConsumer's spec, with
// the TxConsumer's Reset and Stop.
type txLifecycle struct {
	reflex.Consumer
	tc *TxConsumer
}

func (c *txLifecycle) Reset(ctx context.Context) error {
	if r, ok := c.Consumer.(interface{ Reset() error }); ok {
		if err := r.Reset(); err != nil {
			return err
		}
	}
	return c.tc.Reset(ctx)
}

func (c *txLifecycle) Stop() error {
	var err error
	if s, ok := c.Consumer.(reflex.Stopper); ok {
		err = s.Stop()
	}
	return errors.Join(err, c.tc.Stop())
}
