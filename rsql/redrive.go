package rsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// Redrive: the events of recorded consumer errors (dead letters) are
// delivered again through the consumer's logic, which only the
// consumer's service has. An operator (or the reflex command) asks for a
// redrive by setting rows to ErrorRedriveRequested (RequestRedrive); the
// service runs RunRedriver (or calls Redrive) with its consumer, which
// delivers each requested event and marks its row ErrorResolved in a
// transaction that commits only after the consumer succeeded.

// ErrEventNotFound is wrapped by the error of a redrive of a row whose
// event the stream no longer has (trimmed or archived away). The row is
// left as it is.
var ErrEventNotFound = errors.New("rsql: event not found in the stream")

// RedriveOption configures Redrive, RedriveTx and RunRedriver.
type RedriveOption func(*redriveConfig)

type redriveConfig struct {
	ids   []int64
	limit int
	every time.Duration
}

const (
	// defaultRedriveLimit is the most rows one Redrive call delivers by
	// default.
	defaultRedriveLimit = 100
	// defaultRedriveEvery is how often RunRedriver looks for requested
	// rows by default.
	defaultRedriveEvery = 5 * time.Second
	// maxErrorMsg caps the error messages a failed redrive stores.
	maxErrorMsg = 4096
)

// WithRedriveIDs redrives the rows ids (of the consumer, with status
// reflex.EventErrorRecorded or ErrorRedriveRequested) instead of the
// consumer's requested rows. A row that does not exist or is another
// consumer's fails the call with ErrErrorNotFound, and one resolved or
// discarded with ErrErrorClosed, before any event is delivered. Not for
// RunRedriver.
func WithRedriveIDs(ids ...int64) RedriveOption {
	return func(c *redriveConfig) { c.ids = append(c.ids, ids...) }
}

// WithRedriveLimit sets the most rows one call delivers (default 100;
// RunRedriver goes on at once while calls deliver that many). n < 1
// means the default.
func WithRedriveLimit(n int) RedriveOption {
	return func(c *redriveConfig) { c.limit = n }
}

// WithRedriveEvery sets how often RunRedriver looks for requested rows
// (default 5 s). d <= 0 means the default.
func WithRedriveEvery(d time.Duration) RedriveOption {
	return func(c *redriveConfig) { c.every = d }
}

func newRedriveConfig(opts []RedriveOption) (redriveConfig, error) {
	c := redriveConfig{}
	for i, o := range opts {
		if o == nil {
			return c, fmt.Errorf("redrive option %d is nil", i)
		}
		o(&c)
	}
	if c.limit < 1 {
		c.limit = defaultRedriveLimit
	}
	if c.every <= 0 {
		c.every = defaultRedriveEvery
	}
	return c, nil
}

// RedriveResult is what a redrive did.
type RedriveResult struct {
	// Resolved are the ids of the rows whose events the consumer
	// consumed, now ErrorResolved.
	Resolved []int64
	// Failed are the rows whose delivery failed, now
	// reflex.EventErrorRecorded with the new error message.
	Failed []RedriveFailure
	// Skipped are the ids of the rows that another redriver or an
	// operator changed while this one delivered them (their status was
	// left alone; with RedriveTx the consumer's effects were rolled
	// back).
	Skipped []int64
}

// RedriveFailure is a row whose delivery failed.
type RedriveFailure struct {
	ID, EventID int64
	Err         error
}

// Redrive delivers again, through c, the events of the rows of consumer
// c.Name() with status ErrorRedriveRequested (or the rows of
// WithRedriveIDs), at most 100 per call (WithRedriveLimit), in id order,
// loading each event from stream (the consumer's own stream: an
// EventsTable's ToStream, or a gRPC stream of the service that owns the
// events). For each row it then runs one transaction of db that sets the
// status to ErrorResolved only if c.Consume returned nil and the row
// still has the status it was read with: a row is resolved at most once,
// however many redrivers run. Pass the consumer's logic, not a
// consumer that records its own errors in this table
// (rpatterns.NewDeadLetterConsumer): a failure must reach Redrive.
// Redrive never locks a row while c runs; two redrivers of one row may
// both deliver its event (at-least-once, as everywhere in reflex), and
// one of them resolves it. Use RedriveTx for effects written in the
// transaction that resolves the row (exactly once).
//
// A delivery that fails (c returns an error, or the event is no longer
// in the stream: ErrEventNotFound) sets the row back to
// reflex.EventErrorRecorded with the error as its message (cut at 4 KiB),
// and is listed in RedriveResult.Failed. Redrive returns an error (with
// the result so far) for bad input (ErrErrorNotFound, ErrErrorClosed, a
// nil argument) and database or stream errors other than a missing
// event. It blocks while it delivers.
func (t *ErrorsTable) Redrive(ctx context.Context, db *sql.DB, stream reflex.StreamFunc, c reflex.Consumer, opts ...RedriveOption) (RedriveResult, error) {
	if c == nil {
		return RedriveResult{}, errors.New("rsql: redrive: nil consumer")
	}
	return t.redrive(ctx, db, stream, c.Name(), deliverer{consume: c.Consume}, opts)
}

// RedriveTx is Redrive with the consumer's effects written by fn in the
// transaction that resolves each row: the effects of a row's event are
// committed together with its ErrorResolved status, exactly once, or not
// at all (fn's error, or a row that another redriver resolved first,
// rolls them back). Effects in other systems stay at-least-once. fn must
// write only through tx. See Redrive for the rows, errors and blocking.
func (t *ErrorsTable) RedriveTx(ctx context.Context, db *sql.DB, stream reflex.StreamFunc, consumer string, fn TxFunc, opts ...RedriveOption) (RedriveResult, error) {
	if fn == nil {
		return RedriveResult{}, errors.New("rsql: redrive: nil TxFunc")
	}
	return t.redrive(ctx, db, stream, consumer, deliverer{tx: fn}, opts)
}

// deliverer is the consumer's logic of a redrive: consume, run before the
// row is resolved, or tx, run in the transaction that resolves it.
type deliverer struct {
	consume func(ctx context.Context, e *reflex.Event) error
	tx      TxFunc
}

// RunRedriver runs Redrive of c's requested rows (ErrorRedriveRequested,
// set by RequestRedrive or the reflex command) every 5 s
// (WithRedriveEvery), at once again while calls deliver their limit. It
// blocks until ctx is done, then returns ctx.Err(), or until a Redrive
// call returns an error, which it returns: run it again, as with
// reflex.Run. It starts no goroutine. WithRedriveIDs is refused.
func (t *ErrorsTable) RunRedriver(ctx context.Context, db *sql.DB, stream reflex.StreamFunc, c reflex.Consumer, opts ...RedriveOption) error {
	cfg, err := newRedriveConfig(opts)
	if err == nil && len(cfg.ids) > 0 {
		err = errors.New("WithRedriveIDs is for Redrive")
	}
	if err != nil {
		return fmt.Errorf("rsql: run redriver: %w", err)
	}
	var timer wait.Timer
	defer timer.Stop()
	for {
		res, err := t.Redrive(ctx, db, stream, c, opts...)
		if err != nil {
			return err
		}
		if len(res.Resolved)+len(res.Failed)+len(res.Skipped) >= cfg.limit {
			if err := ctx.Err(); err != nil {
				return err
			}
			continue
		}
		if err := timer.Sleep(ctx, cfg.every); err != nil {
			return err
		}
	}
}

// redrive delivers the selected rows through deliver.
func (t *ErrorsTable) redrive(ctx context.Context, db *sql.DB, stream reflex.StreamFunc, consumer string, deliver deliverer, opts []RedriveOption) (RedriveResult, error) {
	var res RedriveResult
	wrap := func(err error) error {
		return fmt.Errorf("rsql: redrive the errors of consumer %s in %s: %w", bounded.Quote(consumer), t.cfg.table, err)
	}
	cfg, err := newRedriveConfig(opts)
	if err != nil {
		return res, wrap(err)
	}
	if db == nil || stream == nil {
		return res, wrap(errors.New("nil *sql.DB or stream"))
	}
	if err := t.CheckSchema(ctx, db); err != nil {
		return res, wrap(err)
	}
	rows, err := t.redriveRows(ctx, db, consumer, cfg)
	if err != nil {
		return res, wrap(err)
	}
	for _, r := range rows {
		id, eventID := parseInt64(r.ID), parseInt64(r.EventID)
		ok, derr, err := t.redriveOne(ctx, db, stream, r, deliver)
		switch {
		case err != nil:
			return res, wrap(fmt.Errorf("error %d (event %d): %w", id, eventID, err))
		case derr != nil:
			if err := t.recordFailure(ctx, db, r, derr); err != nil {
				return res, wrap(fmt.Errorf("error %d (event %d): %w", id, eventID, err))
			}
			res.Failed = append(res.Failed, RedriveFailure{ID: id, EventID: eventID, Err: derr})
		case ok:
			res.Resolved = append(res.Resolved, id)
		default:
			res.Skipped = append(res.Skipped, id)
		}
	}
	return res, nil
}

// redriveRows returns the rows to deliver: those of cfg.ids, all open,
// or the consumer's requested rows.
func (t *ErrorsTable) redriveRows(ctx context.Context, db *sql.DB, consumer string, cfg redriveConfig) ([]reflex.ConsumerError, error) {
	if len(cfg.ids) == 0 {
		return t.ListErrors(ctx, db, ErrorsQuery{Consumer: consumer, Statuses: []reflex.ErrorStatus{ErrorRedriveRequested}, Limit: cfg.limit})
	}
	rows, err := t.ListErrors(ctx, db, ErrorsQuery{IDs: cfg.ids, Limit: len(cfg.ids)})
	if err != nil {
		return nil, err
	}
	found := make(map[int64]reflex.ConsumerError, len(rows))
	for _, r := range rows {
		found[parseInt64(r.ID)] = r
	}
	var missing, closed []string
	out := make([]reflex.ConsumerError, 0, len(rows))
	for _, id := range cfg.ids {
		r, ok := found[id]
		switch {
		case !ok || r.ConsumerName != consumer:
			missing = append(missing, strconv.FormatInt(id, 10))
		case !errorOpen(r.Status):
			closed = append(closed, r.ID+" ("+ErrorStatusName(r.Status)+")")
		default:
			out = append(out, r)
			delete(found, id) // an id given twice is delivered once
		}
	}
	switch {
	case len(missing) > 0:
		return nil, fmt.Errorf("%w: no error %s of consumer %s", ErrErrorNotFound, capList(missing), bounded.Quote(consumer))
	case len(closed) > 0:
		return nil, fmt.Errorf("%w: %s", ErrErrorClosed, capList(closed))
	}
	return out, nil
}

// redriveOne delivers the event of row r and resolves r if it still has
// the status it was read with. It returns whether it resolved r, the
// delivery's error (the consumer's, or ErrEventNotFound), and an error
// that stops the redrive (the database's or the stream's).
func (t *ErrorsTable) redriveOne(ctx context.Context, db *sql.DB, stream reflex.StreamFunc, r reflex.ConsumerError, deliver deliverer) (bool, error, error) {
	e, err := loadEvent(ctx, stream, parseInt64(r.EventID))
	if errors.Is(err, ErrEventNotFound) {
		return false, err, nil
	}
	if err != nil {
		return false, nil, err
	}
	if deliver.consume != nil {
		// The consumer runs outside any transaction of db, which it may
		// use itself; the conditional update is the resolving
		// transaction.
		if derr := deliver.consume(ctx, e); derr != nil {
			if ctx.Err() != nil {
				return false, nil, ctx.Err()
			}
			return false, derr, nil
		}
		n, err := t.updateStatus(ctx, db, r, ErrorResolved, nil)
		return n == 1, nil, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, nil, err
	}
	defer tx.Rollback()
	if derr := deliver.tx(ctx, tx, e); derr != nil {
		if ctx.Err() != nil {
			return false, nil, ctx.Err()
		}
		return false, derr, nil
	}
	n, err := t.updateStatus(ctx, tx, r, ErrorResolved, nil)
	if err != nil || n != 1 {
		return false, nil, err
	}
	return true, nil, tx.Commit()
}

// updateStatus sets the status (and, if msg is not nil, the message) of
// row r if its status is still the one it was read with, and returns the
// rows changed.
func (t *ErrorsTable) updateStatus(ctx context.Context, dbc DBC, r reflex.ConsumerError, to reflex.ErrorStatus, msg *string) (int64, error) {
	c := &t.cols
	s := &sqlStmt{d: t.d}
	s.sql("UPDATE ", c.table, " SET ", c.status, " = ")
	s.val(int64(to))
	if msg != nil {
		s.sql(", ", c.msg, " = ")
		s.val(*msg)
	}
	s.sql(", ", c.updated, " = ", t.d.now(), " WHERE ", c.id, " = ")
	s.val(parseInt64(r.ID))
	s.sql(" AND ", c.status, " = ")
	s.val(int64(r.Status))
	res, err := dbc.ExecContext(ctx, s.String(), s.args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// recordFailure sets row r back to reflex.EventErrorRecorded with the
// delivery's error as its message.
func (t *ErrorsTable) recordFailure(ctx context.Context, db *sql.DB, r reflex.ConsumerError, derr error) error {
	msg := capMessage(derr.Error(), maxErrorMsg)
	_, err := t.updateStatus(ctx, db, r, reflex.EventErrorRecorded, &msg)
	return err
}

// loadEvent returns the event id of stream, or an error wrapping
// ErrEventNotFound if the stream has no such event.
func loadEvent(ctx context.Context, stream reflex.StreamFunc, id int64) (*reflex.Event, error) {
	if id < 1 {
		return nil, fmt.Errorf("%w: event id %d", ErrEventNotFound, id)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl, err := stream(ctx, strconv.FormatInt(id-1, 10), reflex.WithStreamToHead())
	if err != nil {
		return nil, fmt.Errorf("open a stream at event %d: %w", id, err)
	}
	if c, ok := cl.(io.Closer); ok {
		defer c.Close()
	}
	e, err := cl.Recv()
	switch {
	case errors.Is(err, reflex.ErrHeadReached):
		return nil, fmt.Errorf("%w: event %d (the stream ends before it)", ErrEventNotFound, id)
	case err != nil:
		return nil, fmt.Errorf("load event %d: %w", id, err)
	case e.ID != strconv.FormatInt(id, 10):
		return nil, fmt.Errorf("%w: event %d (the stream goes on with event %s)", ErrEventNotFound, id, bounded.Quote(e.ID))
	}
	return e, nil
}

// capMessage cuts s to at most n bytes on a rune boundary, saying so.
func capMessage(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 32
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf(" [%d bytes cut]", len(s)-cut)
}

// parseInt64 parses an id read from the table, 0 if it is not one.
func parseInt64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
