package testmock

import (
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// TestStreamer is an in-memory event stream for tests, returned by
// NewTestStreamer. Its methods are safe for concurrent use.
type TestStreamer interface {
	// InsertEvent appends e to the stream; it does not block. The event is
	// delivered exactly as given: the caller chooses its ID, which should
	// be an integer greater than that of every earlier event, since
	// streams resume after a cursor by comparing integer IDs.
	InsertEvent(e reflex.Event)

	// StreamFunc returns a reflex.StreamFunc over the stream. See
	// NewTestStreamer for the options it honours.
	StreamFunc() reflex.StreamFunc

	// Stop ends every stream of the streamer: blocked and later Recv
	// calls return context.Canceled. It is idempotent.
	Stop()
}

// NewTestStreamer returns an empty TestStreamer that is stopped when the
// test and its subtests complete. It is a reflextest.Log that keeps events
// as given (see reflextest.WithEventsAsGiven).
//
// Its StreamFunc starts after the first event whose integer ID is greater
// than after ("" means from the first event; an after that is not a
// non-negative integer is an error wrapping reflex.ErrInvalidCursor).
// Recv blocks until an event is inserted (there is no polling), and
// returns the stream context's error once it is done, or context.Canceled
// once the streamer is stopped or the client closed. Stream options:
//   - WithStreamFromHead starts after the last event inserted before the
//     StreamFunc was called, ignoring after;
//   - WithStreamToHead makes Recv return reflex.ErrHeadReached instead of
//     blocking;
//   - WithStreamLag delivers an event only once its Timestamp is older
//     than the lag (Recv waits on a timer, or with WithStreamToHead
//     returns ErrHeadReached).
//
// Clients implement io.Closer and reflex.Buffered.
func NewTestStreamer(t *testing.T) TestStreamer {
	l := reflextest.NewLog(reflextest.WithEventsAsGiven())
	t.Cleanup(l.Close)
	return streamer{l}
}

type streamer struct{ log *reflextest.Log }

var _ TestStreamer = streamer{}

func (s streamer) InsertEvent(e reflex.Event) { s.log.Append(e) }

func (s streamer) StreamFunc() reflex.StreamFunc { return s.log.Stream }

func (s streamer) Stop() { s.log.Close() }
