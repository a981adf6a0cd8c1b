package reflex

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrStopped is returned by streams whose source was stopped, usually a
	// Server being shut down (see Server.Stop). It crosses gRPC: a remote
	// client receives an error for which IsStoppedErr is true. Clients should
	// reconnect.
	ErrStopped = errors.New("the event stream has been stopped")

	// ErrHeadReached is returned by StreamClient.Recv when WithStreamToHead is
	// set and no newer event exists. It crosses gRPC: a remote client
	// receives an error for which IsHeadReachedErr is true.
	ErrHeadReached = errors.New("the event stream has reached the current head")

	// ErrFilter is wrapped by the errors that a consumer's EventFilter
	// returns (see WithEventFilter); the event was not processed.
	ErrFilter = errors.New("reflex: event filter error")

	// ErrInvalidCursor is wrapped by the errors that a StreamFunc returns
	// when it cannot use the cursor (or another argument) it was given: a
	// permanent error, which retrying with the same input cannot fix. Over
	// gRPC the server answers codes.InvalidArgument, and the client returns
	// an error for which errors.Is(err, ErrInvalidCursor) is true.
	ErrInvalidCursor = errors.New("reflex: invalid cursor")
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
