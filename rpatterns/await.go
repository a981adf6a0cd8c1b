package rpatterns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/seed-e488ba2e/reflex"
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
// Await returns nil on success, or the first error of either side: the
// stream's (opening or Recv), pollFn's, or ctx.Err() once ctx is done. The
// other side is then cancelled and Await waits for it to finish.
func Await(ctx context.Context, stream reflex.StreamFunc, pollFn func() (bool, error), foreignID string, types ...reflex.EventType) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// One result per goroutine, so neither blocks on send.
	res := make(chan error, 2)
	n := 1
	go func() { res <- awaitStream(ctx, stream, foreignID, types) }()
	if pollFn != nil {
		n++
		go func() { res <- awaitPoll(ctx, pollFn) }()
	}
	err := <-res
	cancel()
	for range n - 1 {
		<-res
	}
	return err
}

func awaitStream(ctx context.Context, stream reflex.StreamFunc, foreignID string, types []reflex.EventType) error {
	cl, err := stream(ctx, "", reflex.WithStreamFromHead())
	if err != nil {
		return fmt.Errorf("rpatterns: await: open stream: %w", err)
	}
	if cl == nil {
		return errors.New("rpatterns: await: stream returned a nil client and a nil error")
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
			return fmt.Errorf("rpatterns: await: recv: %w", err)
		}
		if e == nil {
			return errors.New("rpatterns: await: stream returned a nil event and a nil error")
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
	t := time.NewTicker(awaitPollPeriod)
	defer t.Stop()
	for {
		ok, err := pollFn()
		if err != nil {
			return fmt.Errorf("rpatterns: await: poll: %w", err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
