package reflex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// StreamClientPB is the client side of a generated reflex streaming RPC
// (reflexpb.Reflex_StreamClient, or any service reusing reflexpb.Event).
type StreamClientPB interface {
	Recv() (*reflexpb.Event, error)
}

// StreamServerPB is the server side of a generated reflex streaming RPC
// (reflexpb.Reflex_StreamServer, or any service reusing reflexpb.Event).
type StreamServerPB interface {
	Context() context.Context
	Send(*reflexpb.Event) error
}

// Server serves StreamFuncs over gRPC stream methods and stops them all on
// shutdown. The zero value is not usable; call NewServer. It is safe for
// concurrent use.
type Server struct {
	stopped context.Context // done once Stop is called
	stop    context.CancelFunc

	mu sync.Mutex     // orders wg.Add in serve before wg.Wait in Stop
	wg sync.WaitGroup // the goroutines serving stream calls
}

// NewServer returns a running Server.
func NewServer() *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{stopped: ctx, stop: cancel}
}

// Stop ends every stream being served with ErrStopped, and makes later
// Stream calls return ErrStopped at once. Each handler returns at once,
// even if its Send is blocked because the client does not read; Stop then
// waits until the goroutines serving the streams have exited, which they do
// once gRPC ends each call after its handler returns (and once the stream
// clients of the StreamFunc return from Recv on their context ending).
// Call it before the gRPC server's GracefulStop. Stop is idempotent and safe
// for concurrent use, but must not be called from a StreamFunc or its
// stream client: it would wait for itself.
func (s *Server) Stop() {
	s.mu.Lock()
	s.stop()
	s.mu.Unlock()
	s.wg.Wait()
}

// serve runs body, which serves one stream call, in a goroutine, with a
// context that ends when parent (the call's) ends or s stops. It returns
// body's error mapped by result, or ErrStopped as soon as s stops: a Send
// blocked by flow control ends only when the call does, that is when the
// handler has returned, so the handler must not wait for body. Stop waits
// for the goroutine.
func (s *Server) serve(parent context.Context, body func(ctx context.Context) error) error {
	s.mu.Lock()
	if s.stopped.Err() != nil {
		s.mu.Unlock()
		return wireError(ErrStopped)
	}
	s.wg.Add(1)
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(s.stopped, cancel)
	done := make(chan error, 1) // body's result; the goroutine never blocks on it
	go func() {
		defer s.wg.Done()
		defer cancel()
		defer stop()
		done <- body(ctx)
	}()
	select {
	case err := <-done:
		return s.result(err)
	case <-s.stopped.Done():
		return wireError(ErrStopped)
	}
}

// Stream serves the events of sFn for one gRPC stream call: it opens
// sFn(ctx, req.After, options from req) with a context that ends when the
// client goes away or the Server stops, and sends every event until an
// error occurs. It blocks until then, or until Stop (even while a Send is
// blocked), and always returns a non-nil error, suitable for returning from
// the gRPC handler. The events are read and sent by a goroutine that ends
// once the call does (after the handler returns); Stop waits for it, so ss
// must end its blocked Sends when the call ends, as gRPC's streams do.
//
// ErrHeadReached and ErrStopped are returned as gRPC statuses (codes
// OutOfRange and Unavailable) that WrapStreamPB turns back into errors for
// which IsHeadReachedErr and IsStoppedErr are true; errors.Is also works on
// the server side. An invalid request (negative or malformed lag) returns
// an InvalidArgument status.
//
// Back-pressure comes from gRPC flow control: Send blocks while the
// client's window is full. The stream client is closed if it implements
// io.Closer. sFn's clients must return from Recv once their context is
// done, or Stop cannot end them. A nil client or event from sFn ends the
// stream with an error instead of a panic.
func (s *Server) Stream(sFn StreamFunc, req *reflexpb.StreamRequest, ss StreamServerPB) error {
	if s.stopped.Err() != nil {
		return wireError(ErrStopped)
	}
	opts, err := optionsFromProto(req.GetOptions())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return s.serve(ss.Context(), func(ctx context.Context) error {
		cl, err := sFn(ctx, req.GetAfter(), opts...)
		if err != nil {
			return err
		}
		if cl == nil {
			return errNilClient
		}
		if c, ok := cl.(io.Closer); ok {
			defer c.Close()
		}
		if err := sendOpened(ss); err != nil {
			return err
		}
		for {
			e, err := cl.Recv()
			if err != nil {
				return err
			}
			pb, err := eventToProto(e)
			if err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			if err := ss.Send(pb); err != nil {
				return err
			}
		}
	})
}

// result maps the error that ended a stream to what the handler returns.
func (s *Server) result(err error) error {
	if s.stopped.Err() != nil {
		return wireError(ErrStopped)
	}
	return wireError(err)
}

// sendOpened tells the client that the stream is open (its head is
// resolved) by sending the response headers, if ss can send headers (gRPC
// server streams can): a client streaming from the head waits for them.
func sendOpened(ss any) error {
	h, ok := ss.(interface{ SendHeader(metadata.MD) error })
	if !ok {
		return nil
	}
	return h.SendHeader(metadata.Pairs(headerOpened, "1"))
}

// headerOpened is the response header a Server sends once the stream
// function has opened its stream.
const headerOpened = "reflex-stream-opened"

// WrapStreamPB returns a StreamFunc that streams over a gRPC stream
// method: wrap opens the RPC (for example a closure around
// reflexpb.ReflexClient.Stream). Stream options are sent to the server;
// Recv converts messages to events and maps the server's ErrHeadReached and
// ErrStopped statuses back to those sentinels. The returned client is an
// io.Closer that cancels the RPC; Recv after Close returns
// context.Canceled.
//
// With WithStreamFromHead, the StreamFunc waits for the server's response
// headers (a Server sends them as soon as its stream is open), so events
// added after the StreamFunc returns are delivered. This needs the RPC
// client to have the Header method that generated clients have.
func WrapStreamPB(wrap func(context.Context, *reflexpb.StreamRequest) (StreamClientPB, error)) StreamFunc {
	return func(ctx context.Context, after string, opts ...StreamOption) (StreamClient, error) {
		pbOpts, err := optionsToProto(ResolveOptions(opts...))
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		cl, err := wrap(ctx, &reflexpb.StreamRequest{After: after, Options: pbOpts})
		if err != nil {
			cancel()
			return nil, fromWire(err)
		}
		if o := ResolveOptions(opts...); o.StreamFromHead {
			if h, ok := cl.(interface{ Header() (metadata.MD, error) }); ok {
				if _, err := h.Header(); err != nil {
					cancel()
					return nil, fromWire(err)
				}
			}
		}
		return &pbClient{ctx: ctx, cl: cl, cancel: cancel}, nil
	}
}

type pbClient struct {
	ctx    context.Context
	cl     StreamClientPB
	cancel context.CancelFunc
}

func (c *pbClient) Recv() (*Event, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	pb, err := c.cl.Recv()
	if err != nil {
		return nil, fromWire(err)
	}
	return eventFromProto(pb)
}

// Close cancels the RPC. It is idempotent.
func (c *pbClient) Close() error {
	c.cancel()
	return nil
}

// eventToProto converts an event for the wire.
func eventToProto(e *Event) (*reflexpb.Event, error) {
	if e == nil {
		return nil, errNilEvent
	}
	if e.Type == nil {
		return nil, fmt.Errorf("reflex: event %q has a nil Type", e.ID)
	}
	t := e.Type.ReflexType()
	if int(int32(t)) != t {
		return nil, fmt.Errorf("reflex: event %q: type %d does not fit in int32", e.ID, t)
	}
	return &reflexpb.Event{
		Id:        e.ID,
		Type:      int32(t),
		ForeignId: e.ForeignID,
		Timestamp: timestamppb.New(e.Timestamp),
		Metadata:  e.MetaData,
		Trace:     e.Trace,
	}, nil
}

// eventFromProto converts a wire event. A missing timestamp becomes the
// Unix epoch; an out-of-range one is an error.
func eventFromProto(pb *reflexpb.Event) (*Event, error) {
	var e Event
	if err := eventFromProtoInto(&e, pb); err != nil {
		return nil, err
	}
	return &e, nil
}

func eventFromProtoInto(e *Event, pb *reflexpb.Event) error {
	if pb == nil {
		return errors.New("reflex: received a nil event")
	}
	ts := time.Unix(0, 0).UTC()
	if pb.Timestamp != nil {
		if err := pb.Timestamp.CheckValid(); err != nil {
			return fmt.Errorf("reflex: event %q: invalid timestamp: %w", pb.Id, err)
		}
		ts = pb.Timestamp.AsTime()
	}
	*e = Event{
		ID:        pb.Id,
		Type:      eventType(pb.Type),
		ForeignID: pb.ForeignId,
		Timestamp: ts,
		MetaData:  pb.Metadata,
		Trace:     pb.Trace,
	}
	return nil
}

// optionsToProto converts options for the wire. The message is always
// present; lag is set only when positive.
func optionsToProto(o StreamOptions) (*reflexpb.StreamOptions, error) {
	if o.Lag < 0 {
		return nil, fmt.Errorf("reflex: negative stream lag %v", o.Lag)
	}
	pb := &reflexpb.StreamOptions{FromHead: o.StreamFromHead, ToHead: o.StreamToHead}
	if o.Lag > 0 {
		pb.Lag = durationpb.New(o.Lag)
	}
	return pb, nil
}

// optionsFromProto converts wire options; nil means none.
func optionsFromProto(pb *reflexpb.StreamOptions) ([]StreamOption, error) {
	var opts []StreamOption
	if pb.GetLag() != nil {
		if err := pb.Lag.CheckValid(); err != nil {
			return nil, fmt.Errorf("reflex: invalid stream lag: %w", err)
		}
		lag := pb.Lag.AsDuration()
		if lag < 0 {
			return nil, fmt.Errorf("reflex: negative stream lag %v", lag)
		}
		if lag > 0 {
			opts = append(opts, WithStreamLag(lag))
		}
	}
	if pb.GetFromHead() {
		opts = append(opts, WithStreamFromHead())
	}
	if pb.GetToHead() {
		opts = append(opts, WithStreamToHead())
	}
	return opts, nil
}

// errorDomain is the ErrorInfo domain of reflex statuses.
const errorDomain = "reflex"

// wireSentinels are the errors that keep their identity across gRPC.
var wireSentinels = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrHeadReached, codes.OutOfRange, "HEAD_REACHED"},
	{ErrStopped, codes.Unavailable, "STOPPED"},
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

// wireError returns err with a gRPC status: the sentinel statuses with an
// ErrorInfo detail, status codes for context errors, and err unchanged
// otherwise.
func wireError(err error) error {
	for _, w := range wireSentinels {
		if errors.Is(err, w.err) {
			st := status.New(w.code, err.Error())
			if d, derr := st.WithDetails(&errdetails.ErrorInfo{Domain: errorDomain, Reason: w.reason}); derr == nil {
				st = d
			}
			return &statusErr{st: st, err: err}
		}
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &statusErr{st: status.New(codes.Canceled, err.Error()), err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &statusErr{st: status.New(codes.DeadlineExceeded, err.Error()), err: err}
	}
	return err
}

// fromWire maps a status received from a server back to the sentinel it
// carries, keeping the status. Other errors are returned unchanged.
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
	// Servers that send no details but the bare sentinel message.
	for _, w := range wireSentinels {
		if st.Message() == w.err.Error() {
			return &statusErr{st: st, err: w.err}
		}
	}
	return err
}
