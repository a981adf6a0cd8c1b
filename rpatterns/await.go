package rpatterns

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// awaitPollPeriod is how often Await calls its poll function.
const awaitPollPeriod = time.Second

// Await blocks until an event with foreign ID foreignID and one of types
// (any type if none are given) is streamed, or until pollFn returns true.
// The stream is opened at its head (WithStreamFromHead), so only events
// added after Await starts count; pollFn covers the state reached before
// that. pollFn is called at once and then every second; a nil pollFn is
// never called.
//
// Await returns nil on success, or the first error of either side as it
// came, unwrapped (so callers may compare it with ==): the stream's
// (opening it or Recv), pollFn's, or ctx.Err() once ctx is done. A stream
// that returns a nil client or a nil event makes it return an error.
//
// Await returns as soon as either side answers, without waiting for the
// other: it cancels the context of the other side, whose goroutine then
// ends on its own. The stream's goroutine ends when Recv returns (it then
// closes the client if it implements io.Closer), so a Recv that ignores
// its context keeps it until Recv returns; the poll's goroutine ends when
// pollFn returns.
func Await(ctx context.Context, stream reflex.StreamFunc, pollFn func() (bool, error), foreignID string, types ...reflex.EventType) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// One result per goroutine, buffered so that neither blocks on send
	// after Await has returned.
	res := make(chan error, 2)
	go func() { res <- awaitStream(ctx, stream, foreignID, types) }()
	if pollFn != nil {
		go func() { res <- awaitPoll(ctx, pollFn) }()
	}
	return <-res
}

var (
	errAwaitNilClient = errors.New("rpatterns: await: stream returned a nil client and a nil error")
	errAwaitNilEvent  = errors.New("rpatterns: await: stream returned a nil event and a nil error")
)

func awaitStream(ctx context.Context, stream reflex.StreamFunc, foreignID string, types []reflex.EventType) error {
	cl, err := stream(ctx, "", reflex.WithStreamFromHead())
	if err != nil {
		return err
	}
	if cl == nil {
		return errAwaitNilClient
	}
	if c, ok := cl.(io.Closer); ok {
		defer c.Close()
	}
	for {
		e, err := cl.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if e == nil {
			return errAwaitNilEvent
		}
		if e.ForeignID != foreignID {
			continue
		}
		if len(types) == 0 || reflex.IsAnyType(e.Type, types...) {
			return nil
		}
	}
}

func awaitPoll(ctx context.Context, pollFn func() (bool, error)) error {
	var timer wait.Timer
	defer timer.Stop()
	for {
		ok, err := pollFn()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if err := timer.Sleep(ctx, awaitPollPeriod); err != nil {
			return err
		}
	}
}
