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

	"github.com/seed-e488ba2e/reflex/internal/life"
	"github.com/seed-e488ba2e/reflex/internal/wire"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// openRPC is the start of every StreamFunc of this file: it checks the
// cursor (see MaxCursorBytes) and the options, builds the request (with
// cfg's consumer name and types) and derives the client's lifetime. Its
// errors wrap ErrInvalidCursor, with status InvalidArgument.
func openRPC(ctx context.Context, after string, opts []StreamOption, packed bool, cfg *clientConfig) (*reflexpb.StreamRequest, *life.Life, error) {
	if err := checkCursor(after); err != nil {
		return nil, nil, wireError(err)
	}
	pbOpts, err := optionsToProto(ResolveOptions(opts...))
	if err != nil {
		return nil, nil, wireError(err)
	}
	req := &reflexpb.StreamRequest{After: after, Options: pbOpts, Packed: packed, ConsumerName: cfg.name, Types: cfg.types}
	return req, life.New(ctx), nil
}

// waitOpened reports whether a StreamFunc opening req waits until the
// server says the stream is open: for streams from the head (so that no
// event added after the StreamFunc returns is missed), and for resilient
// clients (so that an attempt's outcome is known).
func waitOpened(req *reflexpb.StreamRequest, cfg *clientConfig) bool {
	return cfg.confirm || req.GetOptions().GetFromHead()
}

// headerer is what generated client streams have to wait for the
// server's response headers.
type headerer interface {
	Header() (metadata.MD, error)
}

// WrapStreamPB returns a StreamFunc that streams over a gRPC stream
// method: wrap opens the RPC (for example a closure around
// reflexpb.ReflexClient.Stream). Stream options are sent to the server;
// Recv converts messages to events and maps the server's statuses back to
// the sentinels they carry (see ErrStopped and the others). A cursor
// longer than MaxCursorBytes, not valid UTF-8 or with a NUL byte, or a
// negative lag, is refused before wrap is called, with an error wrapping
// ErrInvalidCursor (status InvalidArgument).
//
// The returned client is an io.Closer that cancels the RPC: after Close,
// Recv returns context.Canceled at once; Close is idempotent, safe for
// concurrent use and returns nil. Once the caller's context is done, Recv
// returns its error.
//
// With WithStreamFromHead, the StreamFunc waits for the server's response
// headers (a Server sends them as soon as its stream is open), so events
// added after the StreamFunc returns are delivered. This needs the RPC
// client to have the Header method that generated clients have.
// WrapStreamPB panics if wrap is nil.
func WrapStreamPB(wrap func(context.Context, *reflexpb.StreamRequest) (StreamClientPB, error)) StreamFunc {
	if wrap == nil {
		panic("reflex: WrapStreamPB: nil wrap function")
	}
	return wrapStreamPB(wrap, &clientConfig{})
}

// wrapStreamPB is WrapStreamPB configured by cfg.
func wrapStreamPB(wrap func(context.Context, *reflexpb.StreamRequest) (StreamClientPB, error), cfg *clientConfig) StreamFunc {
	return func(ctx context.Context, after string, opts ...StreamOption) (StreamClient, error) {
		req, l, err := openRPC(ctx, after, opts, false, cfg)
		if err != nil {
			return nil, err
		}
		cl, err := wrap(l.Context(), req)
		if err != nil {
			_ = l.Close()
			return nil, fromWire(err)
		}
		c := &pbClient{life: l, cl: cl, filter: cfg.filter}
		if h, ok := cl.(headerer); ok && waitOpened(req, cfg) {
			md, err := h.Header()
			if err != nil || len(md.Get(headerOpened)) == 0 {
				// No header: the call failed before the stream opened, or
				// the server sends none before its first event. Receive
				// that now.
				if c.first, err = cl.Recv(); err != nil {
					_ = l.Close()
					return nil, fromWire(err)
				}
			}
		}
		return c, nil
	}
}

// pbClient is the client of WrapStreamPB.
type pbClient struct {
	life   *life.Life
	cl     StreamClientPB
	filter typeFilter      // events to return; nil for all
	first  *reflexpb.Event // received while opening, not yet returned
}

func (c *pbClient) Recv() (*Event, error) {
	for {
		if err := c.life.Err(); err != nil {
			return nil, err
		}
		pb := c.first
		if pb != nil {
			c.first = nil
		} else {
			var err error
			if pb, err = c.cl.Recv(); err != nil {
				return nil, c.recvError(err)
			}
		}
		e, err := eventFromProto(pb)
		if err != nil || c.filter.match(e) {
			return e, err
		}
	}
}

// recvError maps an error of the RPC: the client's own context error once
// it is done (the RPC failed because of it), else the server's status.
func (c *pbClient) recvError(err error) error {
	if lerr := c.life.Err(); lerr != nil {
		return lerr
	}
	return fromWire(err)
}

// Close cancels the RPC. It is idempotent and returns nil.
func (c *pbClient) Close() error { return c.life.Close() }

// WrapStreamBatchPB returns a StreamFunc that streams over the StreamBatch
// RPC opened by batch. If the server does not implement it (status
// Unimplemented) and fallback is non-nil, the stream is reopened with
// fallback (the Stream RPC), and later streams of this StreamFunc use
// fallback directly. Otherwise it behaves as WrapStreamPB (same checks,
// errors and Close). The client implements Buffered and io.Closer.
//
// Requests ask for packed batches (StreamRequest.packed); the client
// decodes both EventBatch.Events and EventBatch.Packed, the latter into
// events that share one buffer per batch (their strings and byte slices
// keep the whole batch, at most 1 MiB, in memory while referenced). A
// malformed packed batch fails Recv with an error naming it.
// WrapStreamBatchPB panics if batch is nil.
func WrapStreamBatchPB(
	batch func(context.Context, *reflexpb.StreamRequest) (StreamBatchClientPB, error),
	fallback func(context.Context, *reflexpb.StreamRequest) (StreamClientPB, error),
) StreamFunc {
	if batch == nil {
		panic("reflex: WrapStreamBatchPB: nil batch function")
	}
	return wrapStreamBatchPB(batch, fallback, &clientConfig{})
}

// wrapStreamBatchPB is WrapStreamBatchPB configured by cfg.
func wrapStreamBatchPB(
	batch func(context.Context, *reflexpb.StreamRequest) (StreamBatchClientPB, error),
	fallback func(context.Context, *reflexpb.StreamRequest) (StreamClientPB, error),
	cfg *clientConfig,
) StreamFunc {
	var single StreamFunc
	if fallback != nil {
		single = wrapStreamPB(fallback, cfg)
	}
	var unimplemented atomic.Bool
	return func(ctx context.Context, after string, opts ...StreamOption) (StreamClient, error) {
		if unimplemented.Load() && single != nil {
			return single(ctx, after, opts...)
		}
		req, l, err := openRPC(ctx, after, opts, true, cfg)
		if err != nil {
			return nil, err
		}
		cl, err := batch(l.Context(), req)
		if err != nil {
			_ = l.Close()
			return nil, fromWire(err)
		}
		c := &batchClient{life: l, cl: cl, filter: cfg.filter}
		if fallback != nil {
			c.reopen = func() (StreamClient, error) {
				unimplemented.Store(true)
				// The client's context, so that Close also ends the
				// fallback stream, even one opened while Close runs.
				return single(l.Context(), after, opts...)
			}
		}
		if h, ok := cl.(headerer); ok && waitOpened(req, cfg) {
			md, err := h.Header()
			if err != nil || len(md.Get(headerOpened)) == 0 {
				// No header: the call failed before the stream opened.
				// Receive its status now, to fall back if needed.
				if err := c.fill(); err != nil {
					_ = c.Close()
					return nil, err
				}
			}
		}
		return c, nil
	}
}

// batchClient is the client of WrapStreamBatchPB.
type batchClient struct {
	life   *life.Life
	cl     StreamBatchClientPB
	reopen func() (StreamClient, error) // nil without fallback
	filter typeFilter                   // events to return; nil for all
	head   atomic.Pointer[string]       // the head the server last sent

	mu       sync.Mutex // guards single against a concurrent Close
	single   StreamClient
	events   []Event
	next     int
	received bool
}

func (c *batchClient) Recv() (*Event, error) {
	if err := c.life.Err(); err != nil {
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
		if lerr := c.life.Err(); lerr != nil {
			return lerr
		}
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
	if h := b.GetHead(); h != "" {
		c.head.Store(&h)
	}
	events := make([]Event, len(b.GetEvents()))
	for i, pb := range b.GetEvents() {
		if err := eventFromProtoInto(&events[i], pb); err != nil {
			return err
		}
	}
	if len(b.GetPacked()) > 0 {
		more, err := decodePacked(b.GetPacked())
		if err != nil {
			return err
		}
		if len(events) == 0 {
			events = more
		} else {
			events = append(events, more...)
		}
	}
	if c.filter != nil {
		// A server that does not know the request's types sent them all.
		kept := events[:0]
		for i := range events {
			if c.filter.match(&events[i]) {
				kept = append(kept, events[i])
			}
		}
		events = kept
	}
	c.events, c.next = events, 0
	return nil
}

// Head returns the head the server last sent (see HeadReporter): the
// newest event ID its source reported. It is safe for concurrent use with
// Recv. Servers whose source does not implement HeadReporter, and servers
// built before the field, send none.
func (c *batchClient) Head() (string, bool) {
	if h := c.head.Load(); h != nil {
		return *h, true
	}
	c.mu.Lock()
	s := c.single
	c.mu.Unlock()
	if hr, ok := s.(HeadReporter); ok {
		return hr.Head()
	}
	return "", false
}

// decodePacked decodes the events of EventBatch.packed (see wire.Decoder).
func decodePacked(raw []byte) ([]Event, error) {
	var d wire.Decoder
	n, err := d.Reset(raw)
	if err != nil || n == 0 {
		return nil, err
	}
	events := make([]Event, n)
	for i := range events {
		w, err := d.Next()
		if err != nil {
			return nil, err
		}
		if err := eventFromWire(&events[i], w); err != nil {
			return nil, err
		}
	}
	return events, nil
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

// Close cancels the RPC (and the fallback's). It is idempotent and
// returns nil.
func (c *batchClient) Close() error {
	_ = c.life.Close()
	c.mu.Lock()
	s := c.single
	c.mu.Unlock()
	if cl, ok := s.(io.Closer); ok {
		_ = cl.Close()
	}
	return nil
}

// GRPCStreamFunc returns a StreamFunc over the reflexpb.Reflex service on
// conn, configured by opts (see WithGRPCConsumerName, WithGRPCEventTypes
// and WithGRPCReconnect; by default none of them). It uses StreamBatch
// with packed batches, falling back to Stream for servers that do not
// implement it (see WrapStreamBatchPB). Its clients implement Buffered,
// io.Closer and HeadReporter. The returned StreamFunc is safe for
// concurrent use. GRPCStreamFunc panics, with a "reflex:"-prefixed
// message, if conn or an option is nil, or an option is invalid.
//
// Packed batches are encoded and decoded without a message per event, so
// catching up over gRPC costs little more CPU than reading the source
// directly. The connection's default flow-control windows suffice: larger
// ones (grpc.WithInitialWindowSize) did not speed up catch-up on loopback.
func GRPCStreamFunc(conn grpc.ClientConnInterface, opts ...GRPCOption) StreamFunc {
	if conn == nil {
		panic("reflex: GRPCStreamFunc: nil connection")
	}
	cfg := newClientConfig(opts)
	c := reflexpb.NewReflexClient(conn)
	stream := wrapStreamBatchPB(
		func(ctx context.Context, req *reflexpb.StreamRequest) (StreamBatchClientPB, error) {
			return c.StreamBatch(ctx, req)
		},
		func(ctx context.Context, req *reflexpb.StreamRequest) (StreamClientPB, error) {
			return c.Stream(ctx, req)
		}, cfg)
	if cfg.reconnect != nil {
		return newReconnecting(stream, *cfg.reconnect)
	}
	return stream
}
