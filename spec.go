package reflex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/runprogress"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// StreamOptions are the options a stream source receives. The zero value
// means: from the cursor, no lag, tail forever.
type StreamOptions struct {
	// Lag defines the duration after an event is created before it becomes
	// eligible for streaming.
	Lag time.Duration

	// StreamFromHead starts the stream at the current head, ignoring the
	// cursor.
	StreamFromHead bool

	// StreamToHead makes Recv return ErrHeadReached as soon as no more
	// events are available.
	StreamToHead bool
}

// StreamOption configures StreamOptions.
type StreamOption func(*StreamOptions)

// WithStreamLag streams only events older than d. Run enforces lag itself
// (it never forwards the option to the source); sources that receive it
// directly filter on their own clock.
func WithStreamLag(d time.Duration) StreamOption {
	return func(o *StreamOptions) { o.Lag = d }
}

// WithStreamFromHead streams only events that are added after the stream is
// opened. It overrides the cursor.
func WithStreamFromHead() StreamOption {
	return func(o *StreamOptions) { o.StreamFromHead = true }
}

// WithStreamToHead makes the stream return ErrHeadReached as soon as no more
// events are available, for back-fills and tests.
func WithStreamToHead() StreamOption {
	return func(o *StreamOptions) { o.StreamToHead = true }
}

// ResolveOptions applies opts in order to a zero StreamOptions. It panics
// if an option is nil, a programming error.
func ResolveOptions(opts ...StreamOption) StreamOptions {
	var o StreamOptions
	for i, opt := range opts {
		if opt == nil {
			panic(fmt.Sprintf("reflex: ResolveOptions: stream option %d is nil", i))
		}
		opt(&o)
	}
	return o
}

// ResetterCtx is an optional interface of a Consumer that holds state: Run
// calls Reset once at the start of each run, after reading the cursor and
// before opening the stream. A consumer may instead implement Reset() error.
type ResetterCtx interface {
	Reset(ctx context.Context) error
}

type resetter interface {
	Reset() error
}

// Stopper is an optional interface of a Consumer that has clean-up work.
// Run never calls it (so metrics survive until scraped); Spec.Stop does.
type Stopper interface {
	Stop() error
}

// Spec is everything needed to consume a stream: the source, the cursor
// store and the consumer. As long as these do not change, the consumer gets
// at-least-once delivery of every event in the stream. Run it with Run.
type Spec struct {
	stream   StreamFunc
	store    CursorStore
	consumer Consumer
	opts     []StreamOption
}

// NewSpec returns a Spec. Options are passed to the stream on every Run,
// except lag options, which Run enforces itself. NewSpec panics if an
// option is nil, a programming error.
func NewSpec(stream StreamFunc, store CursorStore, consumer Consumer, opts ...StreamOption) Spec {
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("reflex: NewSpec: stream option %d is nil", i))
		}
	}
	return Spec{stream: stream, store: store, consumer: consumer, opts: opts}
}

// Name returns the name of the spec's consumer.
func (s Spec) Name() string { return s.consumer.Name() }

// Stop calls the consumer's Stop method if it implements Stopper, else it
// returns nil.
func (s Spec) Stop() error {
	if st, ok := s.consumer.(Stopper); ok {
		return st.Stop()
	}
	return nil
}

// RunFlushTimeout bounds the final Flush of the cursor store that Run does
// on every exit.
const RunFlushTimeout = 10 * time.Second

// Run streams events from the spec's stored cursor into its consumer,
// setting the cursor to each event's ID after the consumer returns nil
// (events a consumer's filter skips count as consumed). It blocks until an
// error occurs and always returns a non-nil error; cancel ctx to stop it.
//
// Errors are wrapped with what failed: "get cursor error", "reset error",
// "recv error" (including ErrHeadReached and context errors from the
// stream), "consume error" (the cursor stays at the previous event, so the
// next Run resumes at the failed event) and "set cursor error". An error
// from opening the stream is returned as is.
//
// On every exit Run closes the stream client if it implements io.Closer,
// then flushes the cursor store with a context that keeps ctx's values but
// not its cancellation, bounded by RunFlushTimeout (10 seconds), so that a
// store whose database does not answer cannot hold Run. If that Flush
// fails, Run returns the error it was returning joined with the flush
// error, as "<error>; flush cursor store error: <flush error>": errors.Is
// matches both (for a Flush that timed out, context.DeadlineExceeded). A
// cursor that was set but not flushed is lost; the next Run resumes from
// the last flushed cursor and the events after it are delivered again
// (at-least-once delivery).
//
// Lag options (WithStreamLag) are not forwarded to the stream: Run waits
// until each event is old enough, measured on the local clock.
//
// Run exports the consumer's lag, computed when Prometheus scrapes:
// reflex_consumer_lag_seconds, which keeps growing while the consumer is
// stuck on an event (consuming it, or failed on it and not consumed
// since, also between runs) or behind a head it cannot reach (a stream
// waiting at a gap), and, for stream clients that implement
// HeadReporter, reflex_consumer_lag_events: the head minus the cursor.
// This costs a few atomic stores per event.
func Run(ctx context.Context, s Spec) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), RunFlushTimeout)
		defer fcancel()
		if ferr := s.store.Flush(fctx); ferr != nil {
			err = &flushError{err: err, flush: ferr}
		}
	}()

	// A caller that asked to learn whether this run consumed anything
	// (rpatterns.RunForever); runs nested in the consumer are not counted.
	progress := runprogress.From(ctx)
	if progress != nil {
		ctx = runprogress.With(ctx, nil)
	}

	name := s.consumer.Name()
	cursor, err := s.store.GetCursor(ctx, name)
	if err != nil {
		return fmt.Errorf("get cursor error: %w", err)
	}

	switch r := s.consumer.(type) {
	case ResetterCtx:
		err = r.Reset(ctx)
	case resetter:
		err = r.Reset()
	}
	if err != nil {
		return fmt.Errorf("reset error: %w", err)
	}

	var (
		lag  time.Duration
		opts = make([]StreamOption, 0, len(s.opts))
	)
	for _, o := range s.opts {
		if l := ResolveOptions(o).Lag; l > 0 {
			lag = l
			continue
		}
		opts = append(opts, o)
	}

	cl, err := s.stream(ctx, cursor, opts...)
	if err != nil {
		return err
	}
	if cl == nil {
		return errNilClient
	}
	if c, ok := cl.(io.Closer); ok {
		defer c.Close()
	}

	// The consumer's lag metrics (reflex_consumer_lag_seconds and, for a
	// stream that knows its head, reflex_consumer_lag_events), computed at
	// scrape time from what the run records here. End runs before the
	// stream is closed.
	var head func() (int64, bool)
	if hr, ok := cl.(HeadReporter); ok {
		head = func() (int64, bool) {
			id, ok := hr.Head()
			if !ok {
				return 0, false
			}
			n, err := strconv.ParseInt(id, 10, 64)
			return n, err == nil
		}
	}
	run := metrics.Lags.StartRun(name, parseInt(cursor), head)
	defer run.End()

	var timer wait.Timer
	defer timer.Stop()
	for {
		e, err := cl.Recv()
		if err != nil {
			return fmt.Errorf("recv error: %w", err)
		}
		if e == nil {
			return fmt.Errorf("recv error: %w", errNilEvent)
		}
		if lag > 0 {
			if d := lag - time.Since(e.Timestamp); d > 0 {
				if err := timer.Sleep(ctx, d); err != nil {
					return err
				}
			}
		}
		id, ts := e.IDInt(), e.Timestamp.UnixNano()
		run.Started(id, ts)
		if err := s.consumer.Consume(ctx, e); err != nil {
			return fmt.Errorf("consume error: %w", err)
		}
		if err := s.store.SetCursor(ctx, name, e.ID); err != nil {
			return fmt.Errorf("set cursor error: %w", err)
		}
		run.Consumed(id, ts)
		progress.Consumed()
	}
}

// flushError is the error of a Run whose final Flush failed: the run's
// own error joined with the flush error.
type flushError struct {
	err, flush error
}

func (e *flushError) Error() string {
	return e.err.Error() + "; flush cursor store error: " + e.flush.Error()
}

func (e *flushError) Unwrap() []error { return []error{e.err, e.flush} }

var (
	errNilEvent  = errors.New("reflex: stream returned a nil event and a nil error")
	errNilClient = errors.New("reflex: stream function returned a nil client and a nil error")
)
