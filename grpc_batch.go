package reflex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
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
// Stream; an event that cannot be encoded (a nil Type, a type beyond
// int32, a string that is not UTF-8) ends the stream with an Internal
// status after the events before it are sent.
//
// If the request sets packed and ss is the stream the generated handler
// passes (as with ReflexServer), batches carry their events encoded in
// EventBatch.Packed, written without a reflexpb.Event per event. Any
// other ss (a wrapper that may inspect batches, a fake) receives batches
// with Events set.
func (s *Server) StreamBatch(sFn StreamFunc, req *reflexpb.StreamRequest, ss StreamBatchServerPB) error {
	if s.stopped.Err() != nil {
		return wireError(ErrStopped)
	}
	opts, err := optionsFromProto(req.GetOptions())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}

	return s.serve(ss.Context(), func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
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
		if _, ok := cl.(Buffered); !ok {
			ra := newReadAheadClient(ctx, cl)
			defer ra.wait()
			defer cancel() // before wait: ends the reader's Recv
			cl = ra
		}
		buf := cl.(Buffered)
		// Encode batches by hand into EventBatch.packed for clients that ask
		// for it, if ss is the generated handler's stream, which goes
		// straight to gRPC. Other streams (wrappers, fakes) get batches with
		// Events set, as they may look at them.
		_, direct := ss.(*grpc.GenericServerStream[reflexpb.StreamRequest, reflexpb.EventBatch])
		packed := direct && req.GetPacked()
		if err := sendOpened(ss); err != nil {
			return err
		}
		for {
			e, err := cl.Recv()
			if err != nil {
				return err
			}
			b, err := nextBatch(cl, buf, e, packed)
			if b != nil {
				if serr := ss.Send(b); serr != nil {
					return serr
				}
			}
			if err != nil {
				return err
			}
		}
	})
}

// nextBatch puts e and the events cl has ready after it into one batch
// message, up to maxBatchEvents or maxBatchBytes. With packed, the events
// are encoded by hand into EventBatch.Packed; otherwise Events is set.
//
// A Recv error, or an event that cannot be encoded (an Internal status),
// ends the batch early: nextBatch returns the events before it (a nil
// batch if there are none) with the error, which ends the stream after
// the batch is sent.
func nextBatch(cl StreamClient, buf Buffered, e *Event, packed bool) (*reflexpb.EventBatch, error) {
	n := min(buf.Buffered()+1, maxBatchEvents)
	var (
		b    = &reflexpb.EventBatch{}
		pbs  []reflexpb.Event
		tss  []timestamppb.Timestamp
		size int
		err  error
	)
	if packed {
		b.Packed = make([]byte, 0, min(n*batchEventGuess, maxBatchBytes))
	} else {
		pbs, tss = make([]reflexpb.Event, n), make([]timestamppb.Timestamp, n)
		b.Events = make([]*reflexpb.Event, 0, n)
	}
	for i := 0; ; i++ {
		if packed {
			b.Packed, err = appendBatchEvent(b.Packed, e)
			size = len(b.Packed)
		} else {
			var es int
			if es, err = fillProto(&pbs[i], &tss[i], e); err == nil {
				b.Events = append(b.Events, &pbs[i])
				size += 1 + protowire.SizeBytes(es)
			}
		}
		if err != nil {
			err = status.Error(codes.Internal, err.Error())
			if i == 0 {
				return nil, err
			}
			break
		}
		if i+1 == n || size >= maxBatchBytes || buf.Buffered() == 0 {
			break
		}
		if e, err = cl.Recv(); err != nil {
			break
		}
	}
	return b, err
}

// fillProto writes e into pb and ts (which pb then points to), checking it
// as eventToProto does, and returns the encoded size of pb.
func fillProto(pb *reflexpb.Event, ts *timestamppb.Timestamp, e *Event) (int, error) {
	w, err := wireOf(e)
	if err != nil {
		return 0, err
	}
	ts.Seconds, ts.Nanos = w.secs, int32(w.nanos)
	pb.Id, pb.Type, pb.ForeignId, pb.Metadata, pb.Trace = e.ID, int32(w.typ), e.ForeignID, e.MetaData, e.Trace
	pb.Timestamp = ts
	return w.size, nil
}

// batchEventGuess is the encoded size of a typical event in a batch (IDs
// of 7 digits, a foreign ID of 10 bytes, no metadata), to size buffers.
const batchEventGuess = 40

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
//
// Requests ask for packed batches (StreamRequest.packed); the client
// decodes both EventBatch.Events and EventBatch.Packed, the latter into
// events that share one buffer per batch (their strings and byte slices
// keep the whole batch, at most 1 MiB, in memory while referenced). A
// malformed packed batch fails Recv with an error naming it.
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
		cl, err := batch(bctx, &reflexpb.StreamRequest{After: after, Options: pbOpts, Packed: true})
		if err != nil {
			cancel()
			return nil, fromWire(err)
		}
		c := &batchClient{ctx: bctx, cl: cl, cancel: cancel}
		if fallback != nil {
			c.reopen = func() (StreamClient, error) {
				unimplemented.Store(true)
				// bctx, so that Close also ends the fallback stream, even
				// one opened while Close runs.
				return single(bctx, after, opts...)
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
	if len(b.GetPacked()) > 0 {
		more, err := decodeEventBatch(b.GetPacked())
		if err != nil {
			return err
		}
		if len(events) == 0 {
			events = more
		} else {
			events = append(events, more...)
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
// conn. It uses StreamBatch with packed batches, falling back to Stream
// for servers that do not implement it (see WrapStreamBatchPB). The
// returned StreamFunc is safe for concurrent use.
//
// Packed batches are encoded and decoded without a message per event, so
// catching up over gRPC costs little more CPU than reading the source
// directly. The connection's default flow-control windows suffice: larger
// ones (grpc.WithInitialWindowSize) did not speed up catch-up on loopback.
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

// The wire format of reflexpb.EventBatch, encoded and decoded by hand on
// the batch path so that no reflexpb.Event is allocated per event. The
// encoding is the one proto.Marshal produces for the messages eventToProto
// returns (fields in number order, zero values omitted, the timestamp
// always present), so peers that use the generated code see the same bytes.
const (
	batchEventsTag  = 1<<3 | 2 // EventBatch.events
	eventTypeTag    = 3 << 3   // Event.type, int32
	eventTimeTag    = 4<<3 | 2 // Event.timestamp, google.protobuf.Timestamp
	eventForeignTag = 5<<3 | 2 // Event.foreign_id
	eventIDTag      = 6<<3 | 2 // Event.id
	eventMetaTag    = 7<<3 | 2 // Event.metadata
	eventTraceTag   = 8<<3 | 2 // Event.trace
	tsSecondsTag    = 1 << 3   // Timestamp.seconds, int64
	tsNanosTag      = 2 << 3   // Timestamp.nanos, int32
)

// eventWire is what the encoding of an event needs besides its strings.
type eventWire struct {
	typ    int // fits in int32
	secs   int64
	nanos  uint64
	tsSize int // of the Timestamp message
	size   int // of the Event message
}

// wireOf checks e as eventToProto does and sizes its encoding.
func wireOf(e *Event) (eventWire, error) {
	if e == nil {
		return eventWire{}, errNilEvent
	}
	if e.Type == nil {
		return eventWire{}, fmt.Errorf("reflex: event %q has a nil Type", e.ID)
	}
	w := eventWire{typ: e.Type.ReflexType(), secs: e.Timestamp.Unix(), nanos: uint64(e.Timestamp.Nanosecond())}
	if int(int32(w.typ)) != w.typ {
		return eventWire{}, fmt.Errorf("reflex: event %q: type %d does not fit in int32", e.ID, w.typ)
	}
	if w.secs != 0 {
		w.tsSize += 1 + protowire.SizeVarint(uint64(w.secs))
	}
	if w.nanos != 0 {
		w.tsSize += 1 + protowire.SizeVarint(w.nanos)
	}
	w.size = 1 + protowire.SizeBytes(w.tsSize)
	if w.typ != 0 {
		w.size += 1 + protowire.SizeVarint(uint64(w.typ))
	}
	w.size += sizeField(len(e.ForeignID)) + sizeField(len(e.ID)) + sizeField(len(e.MetaData)) + sizeField(len(e.Trace))
	return w, nil
}

// appendBatchEvent appends e to b as one element of EventBatch.events. It
// fails as eventToProto does, and for strings that are not valid UTF-8
// (which proto.Marshal refuses too).
func appendBatchEvent(b []byte, e *Event) ([]byte, error) {
	w, err := wireOf(e)
	if err != nil {
		return b, err
	}
	if !utf8.ValidString(e.ID) {
		return b, fmt.Errorf("reflex: event %q: ID is not valid UTF-8", e.ID)
	}
	if !utf8.ValidString(e.ForeignID) {
		return b, fmt.Errorf("reflex: event %q: foreign ID is not valid UTF-8", e.ID)
	}
	b = append(b, batchEventsTag)
	b = protowire.AppendVarint(b, uint64(w.size))
	if w.typ != 0 {
		b = append(b, eventTypeTag)
		b = protowire.AppendVarint(b, uint64(w.typ))
	}
	b = append(b, eventTimeTag, byte(w.tsSize)) // at most 17
	if w.secs != 0 {
		b = append(b, tsSecondsTag)
		b = protowire.AppendVarint(b, uint64(w.secs))
	}
	if w.nanos != 0 {
		b = append(b, tsNanosTag)
		b = protowire.AppendVarint(b, w.nanos)
	}
	b = appendStringField(b, eventForeignTag, e.ForeignID)
	b = appendStringField(b, eventIDTag, e.ID)
	b = appendBytesField(b, eventMetaTag, e.MetaData)
	b = appendBytesField(b, eventTraceTag, e.Trace)
	return b, nil
}

// sizeField is the encoded size of a non-repeated length-delimited field
// with a one-byte tag holding n bytes (0 when n is 0: proto3 omits it).
func sizeField(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + protowire.SizeBytes(n)
}

func appendStringField(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, tag)
	b = protowire.AppendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytesField(b []byte, tag byte, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, tag)
	b = protowire.AppendVarint(b, uint64(len(v)))
	return append(b, v...)
}

// errMalformedBatch is wrapped by the errors of decodeEventBatch for
// bytes that are not a valid EventBatch.
var errMalformedBatch = errors.New("reflex: malformed event batch")

// malformed returns the error for a protowire result code n < 0, or for
// errFieldNumber.
func malformed(n int) error {
	if n == errFieldNumber {
		return fmt.Errorf("%w: field number above %d", errMalformedBatch, protowire.MaxValidNumber)
	}
	return fmt.Errorf("%w: %w", errMalformedBatch, protowire.ParseError(n))
}

// consumeTag is protowire.ConsumeTag, also refusing field numbers above
// protowire.MaxValidNumber as the generated code does (n is then
// errFieldNumber).
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 1<<3 { // fields 1 to 15
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, errFieldNumber
	}
	return num, typ, n
}

// errFieldNumber is the result code of consumeTag for a field number
// above protowire.MaxValidNumber (protowire's codes are -1 to -6).
const errFieldNumber = -100

// consumeField returns the number and wire type of the field at the start
// of b, where its value starts (after the length of a length-delimited
// value) and the field's length; n < 0 is a protowire error code.
func consumeField(b []byte) (num protowire.Number, typ protowire.Type, start, n int) {
	// Fast path: a one-byte tag (fields 1 to 15) with a one-byte varint
	// value or length.
	if len(b) >= 2 && b[0] >= 1<<3 && b[0] < 0x80 && b[1] < 0x80 {
		switch typ := protowire.Type(b[0] & 7); typ {
		case protowire.VarintType:
			return protowire.Number(b[0] >> 3), typ, 1, 2
		case protowire.BytesType:
			if l := 2 + int(b[1]); l <= len(b) {
				return protowire.Number(b[0] >> 3), typ, 2, l
			}
		}
	}
	return consumeFieldSlow(b)
}

func consumeFieldSlow(b []byte) (num protowire.Number, typ protowire.Type, start, n int) {
	num, typ, t := consumeTag(b)
	if t < 0 {
		return 0, 0, 0, t
	}
	switch typ {
	case protowire.VarintType:
		_, l := protowire.ConsumeVarint(b[t:])
		if l < 0 {
			return 0, 0, 0, l
		}
		return num, typ, t, t + l
	case protowire.BytesType:
		v, l := protowire.ConsumeBytes(b[t:])
		if l < 0 {
			return 0, 0, 0, l
		}
		return num, typ, t + l - len(v), t + l
	}
	l := protowire.ConsumeFieldValue(num, typ, b[t:])
	if l < 0 {
		return 0, 0, 0, l
	}
	return num, typ, t, t + l
}

// decodeEventBatch decodes the bytes of an EventBatch message into events
// as eventFromProtoInto converts them. The events' strings share one
// allocation and their byte slices point into raw, which the caller must
// not modify afterwards. Unknown fields, and known fields with an
// unexpected wire type, are skipped as the generated code skips them.
func decodeEventBatch(raw []byte) ([]Event, error) {
	count := 0
	for off := 0; off < len(raw); {
		num, typ, _, n := consumeField(raw[off:])
		if n < 0 {
			return nil, malformed(n)
		}
		if num == 1 && typ == protowire.BytesType {
			count++
		}
		off += n
	}
	if count == 0 {
		return nil, nil
	}
	var (
		events = make([]Event, count)
		str    = string(raw) // the events' strings are substrings
		i      int
	)
	for off := 0; off < len(raw); {
		num, typ, start, n := consumeField(raw[off:]) // valid: checked above
		if num == 1 && typ == protowire.BytesType {
			if err := decodeEvent(&events[i], raw, str, off+start, off+n); err != nil {
				return nil, err
			}
			i++
		}
		off += n
	}
	return events, nil
}

// decodeEvent decodes the Event message raw[off:end] into e, which is
// zero; str is string(raw).
func decodeEvent(e *Event, raw []byte, str string, off, end int) error {
	var (
		typ   int32
		secs  int64
		nanos int32
		hasTS bool
	)
	for off < end {
		num, wt, start, n := consumeField(raw[off:end])
		if n < 0 {
			return malformed(n)
		}
		v := raw[off+start : off+n] // the value
		vs := off + start           // where v starts in raw and str
		off += n
		switch {
		case num == 3 && wt == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			typ = int32(x)
		case num >= 4 && num <= 8 && wt == protowire.BytesType:
			switch num {
			case 4:
				hasTS = true
				if err := decodeTimestamp(v, &secs, &nanos); err != nil {
					return err
				}
			case 5, 6:
				s := str[vs : vs+len(v)]
				if !utf8.ValidString(s) {
					return fmt.Errorf("%w: string field %d is not valid UTF-8", errMalformedBatch, num)
				}
				if num == 5 {
					e.ForeignID = s
				} else {
					e.ID = s
				}
			case 7:
				e.MetaData = nonEmpty(v)
			case 8:
				e.Trace = nonEmpty(v)
			}
		}
	}
	e.Type = eventType(typ)
	e.Timestamp = time.Unix(0, 0).UTC()
	if hasTS {
		if secs < minTimestamp || secs > maxTimestamp || nanos < 0 || nanos >= 1e9 {
			// Let timestamppb name the problem.
			err := (&timestamppb.Timestamp{Seconds: secs, Nanos: nanos}).CheckValid()
			return fmt.Errorf("reflex: event %q: invalid timestamp: %w", e.ID, err)
		}
		e.Timestamp = time.Unix(secs, int64(nanos)).UTC()
	}
	return nil
}

// The range of valid google.protobuf.Timestamp seconds (years 1 to 9999),
// as timestamppb.Timestamp.CheckValid checks it.
const (
	minTimestamp = -62135596800
	maxTimestamp = 253402300799
)

// decodeTimestamp merges the Timestamp message v into secs and nanos, as
// proto merges repeated occurrences of a message field.
func decodeTimestamp(v []byte, secs *int64, nanos *int32) error {
	for len(v) > 0 {
		if tag := v[0]; tag == tsSecondsTag || tag == tsNanosTag {
			x, l := protowire.ConsumeVarint(v[1:])
			if l < 0 {
				return malformed(l)
			}
			if tag == tsSecondsTag {
				*secs = int64(x)
			} else {
				*nanos = int32(x)
			}
			v = v[1+l:]
			continue
		}
		_, _, _, n := consumeField(v) // another field: skip it
		if n < 0 {
			return malformed(n)
		}
		v = v[n:]
	}
	return nil
}

// nonEmpty returns v with its capacity cut to its length (so appends by a
// consumer never write into the shared buffer), or nil if v is empty, as
// the generated code decodes proto3 bytes fields.
func nonEmpty(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return v[:len(v):len(v)]
}
