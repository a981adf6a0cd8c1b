package reflex

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The sentinels below that cross gRPC keep their identity: a Server
// answers an error wrapping one with the status code named in its doc (and
// an ErrorInfo detail of domain "reflex"), and the clients of WrapStreamPB,
// WrapStreamBatchPB and GRPCStreamFunc return an error for which errors.Is
// with the sentinel is true, and status.Code gives the code. Context
// errors cross as Canceled and DeadlineExceeded; any other error as
// Unknown. Status messages are at most 1 KiB.
var (
	// ErrStopped is returned by streams whose source was stopped, usually a
	// Server being shut down (see Server.Stop). Over gRPC it is
	// codes.Unavailable: a client receives an error for which IsStoppedErr
	// is true. Clients should reconnect.
	ErrStopped = errors.New("the event stream has been stopped")

	// ErrHeadReached is returned by StreamClient.Recv when WithStreamToHead is
	// set and no newer event exists. Over gRPC it is codes.OutOfRange: a
	// client receives an error for which IsHeadReachedErr is true.
	ErrHeadReached = errors.New("the event stream has reached the current head")

	// ErrFilter is wrapped by the errors that a consumer's EventFilter
	// returns (see WithEventFilter); the event was not processed. It never
	// crosses gRPC.
	ErrFilter = errors.New("reflex: event filter error")

	// ErrInvalidCursor is wrapped by the errors that a StreamFunc returns
	// when it cannot use the cursor (or another argument, such as a negative
	// lag) it was given: a permanent error, which retrying with the same
	// input cannot fix. Over gRPC it is codes.InvalidArgument (a Server also
	// answers it for a request whose cursor breaks MaxCursorBytes), and the
	// client returns an error for which errors.Is(err, ErrInvalidCursor) is
	// true.
	ErrInvalidCursor = errors.New("reflex: invalid cursor")

	// ErrTooManyStreams is wrapped by the error a Server returns for a
	// stream call beyond its limit of concurrent streams (see
	// WithMaxStreams): a transient error, worth retrying after a backoff.
	// Over gRPC it is codes.ResourceExhausted, and the client returns an
	// error for which errors.Is(err, ErrTooManyStreams) is true.
	ErrTooManyStreams = errors.New("reflex: too many concurrent streams")
)

// IsStoppedErr reports whether err is or wraps ErrStopped.
func IsStoppedErr(err error) bool { return errors.Is(err, ErrStopped) }

// IsHeadReachedErr reports whether err is or wraps ErrHeadReached.
func IsHeadReachedErr(err error) bool { return errors.Is(err, ErrHeadReached) }

// IsFilterErr reports whether err came from a consumer's event filter.
func IsFilterErr(err error) bool { return errors.Is(err, ErrFilter) }

// IsExpected reports whether err is expected during normal streaming:
// context.Canceled, context.DeadlineExceeded or ErrStopped (through
// wrapping), or a gRPC status error with code Canceled or DeadlineExceeded
// anywhere in its chain. It is false for nil.
func IsExpected(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStopped) {
		return true
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		switch se.GRPCStatus().Code() {
		case codes.Canceled, codes.DeadlineExceeded:
			return true
		}
	}
	return false
}
