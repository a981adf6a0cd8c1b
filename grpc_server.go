package reflex

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/internal/wire"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// Defaults of a Server's limits (see WithStreamBuffer and WithMaxStreams).
const (
	DefaultStreamBuffer = 1 << 20
	DefaultMaxStreams   = 1024
)

// Server serves StreamFuncs over gRPC stream methods, within limits, and
// stops them all on shutdown. The zero value is not usable; call NewServer
// or NewServerWithOptions. It is safe for concurrent use.
//
// It keeps a live record of each stream it serves: Peers returns them,
// WithPeerHook observes their start and end, WithPeerIdentity names who
// reads them, and the reflex_server_peer_* metrics count them per consumer
// name (the name a client sends with WithGRPCConsumerName; "unknown" for
// clients that send none, and "other" beyond 100 distinct names in the
// process, so the series stay bounded whatever clients send; never per
// address). A client may ask for a set of event types
// (WithGRPCEventTypes): the Server sends only those.
//
// Locks: Server.mu and each stream record's lock are never held together,
// and no lock of the Server is held while it calls the hook, the identity
// function or a source's Head method.
//
// Each stream call is served by a goroutine that the Server owns (Stop
// waits for it); a StreamBatch call for a source that does not implement
// Buffered also has a read-ahead goroutine, which the call waits for
// before it ends.
type Server struct {
	cfg     serverConfig
	stopped context.Context // done once Stop is called
	stop    context.CancelFunc

	mu      sync.Mutex             // orders wg.Add in serve before wg.Wait in Stop; protects streams and peers
	streams int                    // stream calls whose goroutine has not finished serving
	peers   map[uint64]*peerRecord // the streams being served, by ID (see Peers)
	lastID  uint64                 // the ID of the last stream accepted
	wg      sync.WaitGroup         // the goroutines serving stream calls

	buffered atomic.Int64 // event bytes held by the streams (see budget)
	peak     atomic.Int64 // the most buffered has been, for tests
}

type serverConfig struct {
	streamBuffer int
	maxStreams   int
	hook         func(PeerSignal)
	identity     func(context.Context) string
}

// ServerOption configures a Server made by NewServerWithOptions.
type ServerOption func(*serverConfig)

// WithStreamBuffer bounds the events each stream of the Server holds in
// memory to about n bytes (counting their IDs, foreign IDs, metadata and
// traces, plus 128 bytes per event): the events read from the stream
// function and not yet handed to gRPC, including the batch being sent. A
// StreamBatch call stops reading its source ahead, and ends its batches,
// at the bound; a single larger event is still sent, alone. The default
// is DefaultStreamBuffer (1 MiB). gRPC adds its own buffering on top (by
// default at most its 64 KiB per-stream write quota plus one message), and
// the stream function may buffer too (rsql reads a chunk of rows at a
// time). NewServerWithOptions panics if n is not positive.
func WithStreamBuffer(n int) ServerOption {
	return func(c *serverConfig) { c.streamBuffer = n }
}

// WithMaxStreams limits the Server to n concurrent stream calls (Stream
// and StreamBatch, counted together): a call beyond it fails at once with
// an error wrapping ErrTooManyStreams (codes.ResourceExhausted). A call
// counts until the goroutine serving it has finished. The default is
// DefaultMaxStreams (1024). NewServerWithOptions panics if n is not
// positive.
func WithMaxStreams(n int) ServerOption {
	return func(c *serverConfig) { c.maxStreams = n }
}

// NewServer returns a running Server with the default limits; it is
// NewServerWithOptions().
func NewServer() *Server { return NewServerWithOptions() }

// NewServerWithOptions returns a running Server configured by opts. It
// panics, with a "reflex:"-prefixed message, if an option is nil or a
// limit is not positive.
func NewServerWithOptions(opts ...ServerOption) *Server {
	cfg := serverConfig{streamBuffer: DefaultStreamBuffer, maxStreams: DefaultMaxStreams}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("reflex: NewServerWithOptions: option %d is nil", i))
		}
		o(&cfg)
	}
	if cfg.streamBuffer <= 0 {
		panic(fmt.Sprintf("reflex: WithStreamBuffer(%d): must be positive", cfg.streamBuffer))
	}
	if cfg.maxStreams <= 0 {
		panic(fmt.Sprintf("reflex: WithMaxStreams(%d): must be positive", cfg.maxStreams))
	}
	ctx, cancel := context.WithCancel(context.Background()) // the server's lifetime
	return &Server{cfg: cfg, stopped: ctx, stop: cancel, peers: make(map[uint64]*peerRecord)}
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

// streamCall is what a stream call's body gets: the request's options
// and filter, and the stream's record.
type streamCall struct {
	opts   []StreamOption
	filter typeFilter
	rec    *peerRecord
}

// call is the start of Stream and StreamBatch (method names which): it
// refuses the call if s is stopped or the request is invalid
// (InvalidArgument, wrapping ErrInvalidCursor), then serves body.
func (s *Server) call(parent context.Context, method string, req *reflexpb.StreamRequest, body func(ctx context.Context, c streamCall) error) error {
	if s.stopped.Err() != nil {
		return wireError(ErrStopped)
	}
	opts, err := requestOptions(req)
	if err != nil {
		return wireError(err)
	}
	if err := checkConsumerName(req.GetConsumerName()); err != nil {
		return wireError(err)
	}
	filter, err := newTypeFilter(req.GetTypes())
	if err != nil {
		return wireError(err)
	}
	rec := s.newPeerRecord(parent, method, req)
	return s.serve(parent, rec, func(ctx context.Context) error {
		return body(ctx, streamCall{opts: opts, filter: filter, rec: rec})
	})
}

// serve runs body, which serves the stream call of rec, in a goroutine,
// with a context that ends when parent (the call's) ends or s stops. It
// returns body's error mapped by result, or ErrStopped as soon as s stops:
// a Send blocked by flow control ends only when the call does, that is
// when the handler has returned, so the handler must not wait for body.
// Stop waits for the goroutine. A call beyond the limit of concurrent
// streams fails with ErrTooManyStreams. The stream is in Peers, and its
// lifecycle signals are sent, from before the goroutine starts until it
// ends (see WithPeerHook).
func (s *Server) serve(parent context.Context, rec *peerRecord, body func(ctx context.Context) error) error {
	s.mu.Lock()
	if s.stopped.Err() != nil {
		s.mu.Unlock()
		return wireError(ErrStopped)
	}
	if s.streams >= s.cfg.maxStreams {
		s.mu.Unlock()
		metrics.ServerStreamRejected()
		return wireError(fmt.Errorf("%w: the server serves its limit of %d", ErrTooManyStreams, s.cfg.maxStreams))
	}
	s.streams++
	s.lastID++
	rec.id = s.lastID
	s.peers[rec.id] = rec
	s.wg.Add(1)
	s.mu.Unlock()
	metrics.ServerStreams(1)
	rec.metrics = metrics.OpenPeerStream(rec.name, rec.lag)
	s.signal(PeerStarted, rec, nil)

	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(s.stopped, cancel)
	done := make(chan error, 1) // body's result; the goroutine never blocks on it
	go func() {
		defer s.wg.Done()
		err := body(ctx)
		stop()
		cancel()
		s.mu.Lock()
		s.streams--
		delete(s.peers, rec.id)
		s.mu.Unlock()
		metrics.ServerStreams(-1)
		rec.metrics.Close()
		s.signal(PeerEnded, rec, s.endError(err))
		done <- err
	}()
	select {
	case err := <-done:
		return s.result(err)
	case <-s.stopped.Done():
		return wireError(ErrStopped)
	}
}

// result maps the error that ended a stream to what the handler returns.
func (s *Server) result(err error) error {
	return wireError(s.endError(err))
}

// endError is the error that ended a stream: ErrStopped once s is
// stopped, else err.
func (s *Server) endError(err error) error {
	if s.stopped.Err() != nil {
		return ErrStopped
	}
	return err
}

// openSource opens sFn for a stream call and returns its client and the
// function that closes it (if it is an io.Closer).
func openSource(ctx context.Context, sFn StreamFunc, after string, opts []StreamOption) (StreamClient, func(), error) {
	cl, err := sFn(ctx, after, opts...)
	if err != nil {
		return nil, nil, err
	}
	if cl == nil {
		return nil, nil, errNilClient
	}
	closeFn := func() {}
	if c, ok := cl.(io.Closer); ok {
		closeFn = func() { _ = c.Close() }
	}
	return cl, closeFn, nil
}

// encodeError is the status of an event that cannot be sent.
func encodeError(err error) error {
	return status.Error(codes.Internal, bounded.Truncate(err.Error(), maxStatusMessage))
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
// Errors carry the status codes listed with the sentinels (see ErrStopped
// and the others): an invalid request (a cursor beyond MaxCursorBytes, not
// UTF-8 or with a NUL byte, a negative or malformed lag) or a StreamFunc
// error wrapping ErrInvalidCursor is InvalidArgument, a call beyond the
// limit of concurrent streams ResourceExhausted (see WithMaxStreams).
// Status messages are at most 1 KiB; errors.Is also works on the server
// side.
//
// Back-pressure comes from gRPC flow control: Send blocks while the
// client's window is full. The stream client is closed if it implements
// io.Closer. sFn's clients must return from Recv once their context is
// done, or Stop cannot end them. A nil client or event from sFn ends the
// stream with an error instead of a panic.
func (s *Server) Stream(sFn StreamFunc, req *reflexpb.StreamRequest, ss StreamServerPB) error {
	return s.call(ss.Context(), "Stream", req, func(ctx context.Context, c streamCall) error {
		cl, closeCl, err := openSource(ctx, sFn, req.GetAfter(), c.opts)
		if err != nil {
			return err
		}
		defer closeCl()
		c.rec.opened(cl)
		if err := sendOpened(ss); err != nil {
			return err
		}
		for {
			e, err := cl.Recv()
			if err != nil {
				return err
			}
			if !c.filter.match(e) {
				c.rec.sentBatch(0, 0, e.ID)
				continue
			}
			pb := &reflexpb.Event{}
			size, err := fillProto(pb, &timestamppb.Timestamp{}, e)
			if err != nil {
				return encodeError(err)
			}
			if err := ss.Send(pb); err != nil {
				c.rec.sendFailed()
				return err
			}
			c.rec.sentBatch(1, size, e.ID)
		}
	})
}

const (
	// maxBatchEvents bounds the events of one batch message.
	maxBatchEvents = 1024
	// maxBatchBytes bounds the encoded size of a batch message, well below
	// gRPC's default 4 MiB receive limit and small enough that the
	// messages gRPC holds for a client that stopped reading cost little;
	// 1024 typical events take less. A single larger event is still sent
	// alone.
	maxBatchBytes = 256 << 10
	// readAhead is the channel buffer of the read-ahead goroutine used for
	// sources that do not implement Buffered: one batch (the stream's
	// buffer bounds its bytes).
	readAhead = maxBatchEvents
	// batchEventGuess is the encoded size of a typical event in a batch
	// (IDs of 7 digits, a foreign ID of 10 bytes, no metadata), to size
	// buffers.
	batchEventGuess = 40
	// eventOverhead is what an event costs in memory besides its strings
	// and byte slices, for the stream buffer's accounting.
	eventOverhead = 128
)

// StreamBatch is Stream for the StreamBatch RPC: it sends the events of
// sFn in batches. A batch holds the next event and every further event the
// source has ready without blocking (see Buffered; sources that do not
// implement it are read ahead by a goroutine owned by this call), up to
// 1024 events, 1 MiB encoded or the stream buffer (see WithStreamBuffer).
// Flow control applies per batch. Errors are as for Stream; an event that
// cannot be encoded (a nil Type, a type beyond int32, a string that is not
// UTF-8) ends the stream with an Internal status after the events before
// it are sent.
//
// If the request sets packed (as the clients of GRPCStreamFunc and
// WrapStreamBatchPB do), batches carry their events encoded in
// EventBatch.Packed, written without a reflexpb.Event per event, whatever
// ss is: gRPC interceptors and wrappers of ss see EventBatch messages
// with Packed set and Events empty. Otherwise batches have Events set.
func (s *Server) StreamBatch(sFn StreamFunc, req *reflexpb.StreamRequest, ss StreamBatchServerPB) error {
	return s.call(ss.Context(), "StreamBatch", req, func(ctx context.Context, c streamCall) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cl, closeCl, err := openSource(ctx, sFn, req.GetAfter(), c.opts)
		if err != nil {
			return err
		}
		defer closeCl()
		c.rec.opened(cl)
		bud := &budget{limit: int64(s.cfg.streamBuffer), s: s}
		defer bud.close()
		bt := batcher{cl: cl, packed: req.GetPacked(), limit: int64(s.cfg.streamBuffer), bud: bud, filter: c.filter}
		bt.head, _ = cl.(HeadReporter)
		if b, ok := cl.(Buffered); ok {
			bt.buf, bt.take = b, true
		} else {
			ra := newReadAheadClient(ctx, cl, bud)
			defer ra.wait()
			defer cancel() // before wait: ends the reader's Recv
			bt.cl, bt.buf = ra, ra
		}
		if err := sendOpened(ss); err != nil {
			return err
		}
		for {
			e, err := bt.cl.Recv()
			if err != nil {
				return err
			}
			b, held, err := bt.next(e)
			if b != nil {
				serr := ss.Send(b)
				bud.release(held)
				if serr != nil {
					c.rec.sendFailed()
					return serr
				}
			}
			c.rec.sentBatch(bt.count, bt.size, bt.last)
			if err != nil {
				return err
			}
		}
	})
}

// batcher builds the batches of one StreamBatch call.
type batcher struct {
	cl     StreamClient
	buf    Buffered
	packed bool  // encode events into EventBatch.Packed
	limit  int64 // the stream buffer, in event bytes
	bud    *budget
	filter typeFilter   // nil: every event
	head   HeadReporter // the source's, or nil
	// take is set when cl is the source itself: next accounts for the
	// events it takes in bud. Otherwise the read-ahead goroutine has.
	take bool

	// What next put in its last batch: the events, their encoded size,
	// and the ID of the last event read (sent or filtered out).
	count, size int
	last        string
	// sentHead is the head last put in a batch.
	sentHead string
}

// eventBytes is what e counts for in a stream's buffer.
func eventBytes(e *Event) int64 {
	return int64(len(e.ID)+len(e.ForeignID)+len(e.MetaData)+len(e.Trace)) + eventOverhead
}

// next puts e and the events ready after it into one batch message, up to
// maxBatchEvents, maxBatchBytes or the stream buffer, and returns it with
// the event bytes it holds (to release once it is sent). With packed, the
// events are encoded by hand into EventBatch.Packed; otherwise Events is
// set. Events the filter refuses are read but left out; next reads at
// most maxBatchEvents events, so a batch may be nil when all of them were
// left out. bt.count, bt.size and bt.last describe the batch. The batch
// carries the source's head if it changed since the last batch.
//
// A Recv error, or an event that cannot be encoded (an Internal status),
// ends the batch early: next returns the events before it (a nil batch if
// there are none) with the error, which ends the stream after the batch
// is sent.
func (bt *batcher) next(e *Event) (*reflexpb.EventBatch, int64, error) {
	n := min(bt.buf.Buffered()+1, maxBatchEvents)
	var (
		b    = &reflexpb.EventBatch{}
		pbs  []reflexpb.Event
		tss  []timestamppb.Timestamp
		i    int   // events in b
		size int   // encoded
		held int64 // event bytes
		err  error
	)
	if bt.packed {
		b.Packed = make([]byte, 0, min(n*batchEventGuess, maxBatchBytes))
	} else {
		pbs, tss = make([]reflexpb.Event, n), make([]timestamppb.Timestamp, n)
		b.Events = make([]*reflexpb.Event, 0, n)
	}
	for read := 1; ; read++ {
		if bt.filter.match(e) {
			var w wire.Event
			if w, err = toWire(e); err != nil {
				err = encodeError(err)
				break
			}
			if bt.packed {
				b.Packed = wire.AppendEvent(b.Packed, &w)
				size = len(b.Packed)
			} else {
				setProto(&pbs[i], &tss[i], &w)
				b.Events = append(b.Events, &pbs[i])
				size += 1 + protowire.SizeBytes(wire.Size(&w))
			}
			i++
			held += eventBytes(e)
		} else if !bt.take {
			bt.bud.release(eventBytes(e)) // the read-ahead goroutine held it
		}
		bt.last = e.ID
		if i == n || read == maxBatchEvents || size >= maxBatchBytes || held >= bt.limit || bt.buf.Buffered() == 0 {
			break
		}
		if e, err = bt.cl.Recv(); err != nil {
			break
		}
	}
	if bt.take {
		bt.bud.add(held)
	}
	bt.count, bt.size = i, size
	if i == 0 {
		return nil, held, err
	}
	if bt.head != nil && !peerAccountingOff.Load() {
		if h, ok := bt.head.Head(); ok && h != bt.sentHead {
			b.Head, bt.sentHead = h, h
		}
	}
	return b, held, err
}

// budget bounds the event bytes one stream holds (see WithStreamBuffer)
// and adds them to its Server's total. Bytes are held from when an event
// is read from the source until the batch holding it has been sent. The
// Server's total moves with used, under mu, so that it never counts bytes
// a stream has released.
type budget struct {
	limit int64
	s     *Server

	mu    sync.Mutex // protects the following fields
	used  int64
	freed chan struct{} // closed by release when acquire waits; nil otherwise
}

// acquire holds n bytes, waiting while they would go beyond the limit
// (unless nothing is held: a single larger event goes alone). It returns
// ctx.Err() if ctx ends first.
func (b *budget) acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.limit {
			b.addLocked(n)
			b.mu.Unlock()
			return nil
		}
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-freed:
		}
	}
}

// add holds n bytes without waiting.
func (b *budget) add(n int64) {
	b.mu.Lock()
	b.addLocked(n)
	b.mu.Unlock()
}

// release gives back n bytes and wakes acquire.
func (b *budget) release(n int64) {
	b.mu.Lock()
	b.addLocked(-n)
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.mu.Unlock()
}

// close gives back everything held, when the stream ends.
func (b *budget) close() {
	b.mu.Lock()
	b.addLocked(-b.used)
	b.mu.Unlock()
}

// addLocked adds n (which may be negative) to the bytes held, and to the
// Server's total.
func (b *budget) addLocked(n int64) {
	if n == 0 {
		return
	}
	b.used += n
	v := b.s.buffered.Add(n)
	metrics.ServerBufferedBytes(n)
	for p := b.s.peak.Load(); v > p && !b.s.peak.CompareAndSwap(p, v); p = b.s.peak.Load() {
	}
}

// readAheadClient reads a source that does not implement Buffered in a
// goroutine, so that events already available can be batched. The reader
// holds each event's bytes in the stream's budget before queueing it, so
// it stops reading when the stream buffer is full.
type readAheadClient struct {
	ch   chan recvResult
	done chan struct{} // closed when the reader goroutine exits
	err  error         // sticky error after the reader stopped
}

type recvResult struct {
	e   *Event
	err error
}

// newReadAheadClient starts the reader goroutine; it ends once ctx is
// done (or cl fails), and the caller waits for it with wait.
func newReadAheadClient(ctx context.Context, cl StreamClient, bud *budget) *readAheadClient {
	r := &readAheadClient{ch: make(chan recvResult, readAhead), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			e, err := cl.Recv()
			if err == nil && e != nil {
				if bud.acquire(ctx, eventBytes(e)) != nil {
					return
				}
			}
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
