package reflex

import (
	"context"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// Buffered is an optional interface of a StreamClient: Buffered returns
// how many events Recv can return now without blocking. Server.StreamBatch
// uses it to put the events a source has already read into one message.
type Buffered interface {
	Buffered() int
}

// StreamBatchClientPB is the client side of reflexpb.Reflex/StreamBatch.
type StreamBatchClientPB interface {
	Recv() (*reflexpb.EventBatch, error)
}

// StreamBatchServerPB is the server side of reflexpb.Reflex/StreamBatch.
type StreamBatchServerPB interface {
	Context() context.Context
	Send(*reflexpb.EventBatch) error
}

const (
	// maxBatchEvents bounds the events of one batch message, so that a
	// slow consumer holds at most this many events in one message.
	maxBatchEvents = 1024
	// maxBatchBytes bounds the encoded size of a batch message, well below
	// gRPC's default 4 MiB receive limit. A single larger event is still
	// sent alone.
	maxBatchBytes = 1 << 20
	// readAhead is the channel buffer of the read-ahead goroutine used for
	// sources that do not implement Buffered: one batch.
	readAhead = maxBatchEvents
)

// StreamBatch is Stream for the StreamBatch RPC: it sends the events of
// sFn in batches. A batch holds the next event and every further event the
// source has ready without blocking (see Buffered; sources that do not
// implement it are read ahead by a goroutine owned by this call), up to
// 1024 events or 1 MiB. Flow control applies per batch. Errors are as for
// Stream.
func (s *Server) StreamBatch(sFn StreamFunc, req *reflexpb.StreamRequest, ss StreamBatchServerPB) error {
	if s.stopped.Err() != nil {
		return wireError(ErrStopped)
	}
	opts, err := optionsFromProto(req.GetOptions())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}

	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	defer context.AfterFunc(s.stopped, cancel)()

	cl, err := sFn(ctx, req.GetAfter(), opts...)
	if err != nil {
		return s.result(err)
	}
	if c, ok := cl.(io.Closer); ok {
		defer c.Close()
	}
	if _, ok := cl.(Buffered); !ok {
		ra := newReadAheadClient(ctx, cl)
		defer ra.wait()
		defer cancel() // before wait: ends the reader's Recv
		cl = ra
	}
	buf := cl.(Buffered)
	if err := sendOpened(ss); err != nil {
		return s.result(err)
	}
	for {
		e, err := cl.Recv()
		if err != nil {
			return s.result(err)
		}
		n := min(buf.Buffered()+1, maxBatchEvents)
		var (
			pbs  = make([]reflexpb.Event, n)
			tss  = make([]timestamppb.Timestamp, n)
			b    = &reflexpb.EventBatch{Events: make([]*reflexpb.Event, 0, n)}
			size int
		)
		for i := 0; ; i++ {
			if err := fillProto(&pbs[i], &tss[i], e); err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			b.Events = append(b.Events, &pbs[i])
			size += proto.Size(&pbs[i])
			if i+1 == n || size >= maxBatchBytes || buf.Buffered() == 0 {
				break
			}
			if e, err = cl.Recv(); err != nil {
				// Send what we have; the error ends the stream next.
				if serr := ss.Send(b); serr != nil {
					return s.result(serr)
				}
				return s.result(err)
			}
		}
		if err := ss.Send(b); err != nil {
			return s.result(err)
		}
	}
}

// fillProto writes e into pb and ts (which pb then points to).
func fillProto(pb *reflexpb.Event, ts *timestamppb.Timestamp, e *Event) error {
	if e == nil {
		return errNilEvent
	}
	tmp, err := eventToProto(e)
	if err != nil {
		return err
	}
	ts.Seconds, ts.Nanos = tmp.Timestamp.Seconds, tmp.Timestamp.Nanos
	pb.Id, pb.Type, pb.ForeignId, pb.Metadata, pb.Trace = tmp.Id, tmp.Type, tmp.ForeignId, tmp.Metadata, tmp.Trace
	pb.Timestamp = ts
	return nil
}

// readAheadClient reads a source that does not implement Buffered in a
// goroutine, so that events already available can be batched.
type readAheadClient struct {
	ch   chan recvResult
	done chan struct{} // closed when the reader goroutine exits
	err  error         // sticky error after the reader stopped
}

type recvResult struct {
	e   *Event
	err error
}

func newReadAheadClient(ctx context.Context, cl StreamClient) *readAheadClient {
	r := &readAheadClient{ch: make(chan recvResult, readAhead), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			e, err := cl.Recv()
			select {
			case r.ch <- recvResult{e, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *readAheadClient) Recv() (*Event, error) {
	if r.err != nil {
		return nil, r.err
	}
	select {
	case res := <-r.ch:
		if res.err != nil {
			r.err = res.err
		} else if res.e == nil {
			r.err = errNilEvent
		}
		return res.e, r.err
	case <-r.done:
		// The reader stopped because ctx ended; drain what it sent.
		select {
		case res := <-r.ch:
			r.err = res.err
			return res.e, res.err
		default:
			r.err = context.Canceled
			return nil, r.err
		}
	}
}

func (r *readAheadClient) Buffered() int { return len(r.ch) }

func (r *readAheadClient) wait() { <-r.done }

// WrapStreamBatchPB returns a StreamFunc that streams over the StreamBatch
// RPC opened by batch. If the server does not implement it (status
// Unimplemented) and fallback is non-nil, the stream is reopened with
// fallback (the Stream RPC), and later streams of this StreamFunc use
// fallback directly. Otherwise it behaves as WrapStreamPB. The client
// implements Buffered and io.Closer.
func WrapStreamBatchPB(
	batch func(context.Context, *reflexpb.StreamRequest) (StreamBatchClientPB, error),
	fallback func(context.Context, *reflexpb.StreamRequest) (StreamClientPB, error),
) StreamFunc {
	var single StreamFunc
	if fallback != nil {
		single = WrapStreamPB(fallback)
	}
	var unimplemented atomic.Bool
	return func(ctx context.Context, after string, opts ...StreamOption) (StreamClient, error) {
		if unimplemented.Load() && single != nil {
			return single(ctx, after, opts...)
		}
		pbOpts, err := optionsToProto(ResolveOptions(opts...))
		if err != nil {
			return nil, err
		}
		bctx, cancel := context.WithCancel(ctx)
		cl, err := batch(bctx, &reflexpb.StreamRequest{After: after, Options: pbOpts})
		if err != nil {
			cancel()
			return nil, fromWire(err)
		}
		c := &batchClient{ctx: bctx, cl: cl, cancel: cancel}
		if fallback != nil {
			c.reopen = func() (StreamClient, error) {
				unimplemented.Store(true)
				return single(ctx, after, opts...)
			}
		}
		if pbOpts.GetFromHead() {
			if h, ok := cl.(interface{ Header() (metadata.MD, error) }); ok {
				md, err := h.Header()
				if err != nil || len(md.Get(headerOpened)) == 0 {
					// No header: the call failed before the stream opened.
					// Receive its status now, to fall back if needed.
					if err := c.fill(); err != nil {
						return nil, err
					}
				}
			}
		}
		return c, nil
	}
}

type batchClient struct {
	ctx    context.Context
	cl     StreamBatchClientPB
	cancel context.CancelFunc
	reopen func() (StreamClient, error) // nil without fallback

	mu       sync.Mutex // guards single against a concurrent Close
	single   StreamClient
	events   []Event
	next     int
	received bool
}

func (c *batchClient) Recv() (*Event, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	if c.single != nil {
		return c.single.Recv()
	}
	for c.next == len(c.events) {
		if err := c.fill(); err != nil {
			return nil, err
		}
		if c.single != nil {
			return c.single.Recv()
		}
	}
	e := &c.events[c.next]
	c.next++
	return e, nil
}

// fill receives the next batch, or falls back to the single-event RPC if
// the server does not implement batches.
func (c *batchClient) fill() error {
	b, err := c.cl.Recv()
	if err != nil {
		if !c.received && c.reopen != nil && status.Code(err) == codes.Unimplemented {
			s, err := c.reopen()
			if err != nil {
				return err
			}
			c.mu.Lock()
			c.single = s
			c.mu.Unlock()
			return nil
		}
		return fromWire(err)
	}
	c.received = true
	events := make([]Event, len(b.GetEvents()))
	for i, pb := range b.GetEvents() {
		if err := eventFromProtoInto(&events[i], pb); err != nil {
			return err
		}
	}
	c.events, c.next = events, 0
	return nil
}

// Buffered returns the events left in the current batch.
func (c *batchClient) Buffered() int {
	if c.single != nil {
		if b, ok := c.single.(Buffered); ok {
			return b.Buffered()
		}
		return 0
	}
	return len(c.events) - c.next
}

// Close cancels the RPC. It is idempotent.
func (c *batchClient) Close() error {
	c.cancel()
	c.mu.Lock()
	s := c.single
	c.mu.Unlock()
	if cl, ok := s.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// ReflexServer returns a reflexpb.ReflexServer that serves sFn through s,
// both as Stream and as StreamBatch. Register it with
// reflexpb.RegisterReflexServer; stop it with s.Stop.
func (s *Server) ReflexServer(sFn StreamFunc) reflexpb.ReflexServer {
	return reflexService{s: s, sFn: sFn}
}

type reflexService struct {
	reflexpb.UnimplementedReflexServer
	s   *Server
	sFn StreamFunc
}

func (r reflexService) Stream(req *reflexpb.StreamRequest, ss reflexpb.Reflex_StreamServer) error {
	return r.s.Stream(r.sFn, req, ss)
}

func (r reflexService) StreamBatch(req *reflexpb.StreamRequest, ss reflexpb.Reflex_StreamBatchServer) error {
	return r.s.StreamBatch(r.sFn, req, ss)
}

// GRPCStreamFunc returns a StreamFunc over the reflexpb.Reflex service on
// conn. It uses StreamBatch, falling back to Stream for servers that do
// not implement it (see WrapStreamBatchPB).
func GRPCStreamFunc(conn grpc.ClientConnInterface) StreamFunc {
	c := reflexpb.NewReflexClient(conn)
	return WrapStreamBatchPB(
		func(ctx context.Context, req *reflexpb.StreamRequest) (StreamBatchClientPB, error) {
			return c.StreamBatch(ctx, req)
		},
		func(ctx context.Context, req *reflexpb.StreamRequest) (StreamClientPB, error) {
			return c.Stream(ctx, req)
		})
}
