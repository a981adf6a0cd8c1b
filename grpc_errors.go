package reflex

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
)

// errorDomain is the ErrorInfo domain of reflex statuses.
const errorDomain = "reflex"

// maxStatusMessage bounds the message of the statuses a Server returns:
// longer error messages are cut (and say how long they were).
const maxStatusMessage = 1024

// wireSentinels are the errors that keep their identity across gRPC: a
// Server answers an error wrapping one with its code and an ErrorInfo
// detail (domain "reflex", the reason below), and the clients of
// WrapStreamPB and WrapStreamBatchPB return an error that wraps the
// sentinel again. The first match wins.
var wireSentinels = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrHeadReached, codes.OutOfRange, "HEAD_REACHED"},
	{ErrStopped, codes.Unavailable, "STOPPED"},
	{ErrInvalidCursor, codes.InvalidArgument, "INVALID_CURSOR"},
	{ErrTooManyStreams, codes.ResourceExhausted, "TOO_MANY_STREAMS"},
}

// statusErr is an error with a gRPC status that still unwraps to its
// cause, so errors.Is works on both sides of the wire.
type statusErr struct {
	st  *status.Status
	err error
}

func (e *statusErr) Error() string              { return e.st.Message() }
func (e *statusErr) Unwrap() error              { return e.err }
func (e *statusErr) GRPCStatus() *status.Status { return e.st }

// wireError returns err with a gRPC status whose message is at most
// maxStatusMessage bytes: a sentinel's code with an ErrorInfo detail
// (see wireSentinels), Canceled and DeadlineExceeded for context errors,
// the status err already has, or Unknown. It returns nil for nil.
func wireError(err error) error {
	if err == nil {
		return nil
	}
	if se, ok := err.(*statusErr); ok {
		return se
	}
	msg := bounded.Truncate(err.Error(), maxStatusMessage)
	for _, w := range wireSentinels {
		if errors.Is(err, w.err) {
			st := status.New(w.code, msg)
			if d, derr := st.WithDetails(&errdetails.ErrorInfo{Domain: errorDomain, Reason: w.reason}); derr == nil {
				st = d
			}
			return &statusErr{st: st, err: err}
		}
	}
	if st, ok := status.FromError(err); ok {
		if len(st.Message()) <= maxStatusMessage {
			return err
		}
		return &statusErr{st: status.New(st.Code(), bounded.Truncate(st.Message(), maxStatusMessage)), err: err}
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return &statusErr{st: status.New(code, msg), err: err}
}

// fromWire maps a status received from a server back to the sentinel it
// carries, keeping the status: by its ErrorInfo detail, else (servers
// that send no details) by its message for ErrHeadReached and ErrStopped,
// and by its code InvalidArgument for ErrInvalidCursor. Other errors are
// returned unchanged.
func fromWire(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != errorDomain {
			continue
		}
		for _, w := range wireSentinels {
			if info.GetReason() == w.reason {
				return &statusErr{st: st, err: w.err}
			}
		}
	}
	switch {
	case st.Message() == ErrHeadReached.Error():
		return &statusErr{st: st, err: ErrHeadReached}
	case st.Message() == ErrStopped.Error():
		return &statusErr{st: st, err: ErrStopped}
	case st.Code() == codes.InvalidArgument:
		return &statusErr{st: st, err: ErrInvalidCursor}
	}
	return err
}
