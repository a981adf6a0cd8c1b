package reflex

import (
	"context"
	"errors"
	"fmt"
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/internal/wire"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// This file holds what the gRPC server (grpc_server.go) and client
// (grpc_client.go) share: the interfaces of the generated streams, request
// checks, and the conversions between events and their wire forms. The
// status codes of errors are in grpc_errors.go.

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

// StreamBatchClientPB is the client side of reflexpb.Reflex/StreamBatch.
type StreamBatchClientPB interface {
	Recv() (*reflexpb.EventBatch, error)
}

// StreamBatchServerPB is the server side of reflexpb.Reflex/StreamBatch.
type StreamBatchServerPB interface {
	Context() context.Context
	Send(*reflexpb.EventBatch) error
}

// Buffered is an optional interface of a StreamClient: Buffered returns
// how many events Recv can return now without blocking. Server.StreamBatch
// uses it to put the events a source has already read into one message;
// the clients of WrapStreamBatchPB implement it.
type Buffered interface {
	Buffered() int
}

// MaxCursorBytes is the length limit of a cursor sent over gRPC. A Server
// refuses a request whose cursor is longer, is not valid UTF-8 or holds a
// NUL byte, before calling its StreamFunc, and the clients of WrapStreamPB
// and WrapStreamBatchPB refuse to send one: both with an error wrapping
// ErrInvalidCursor (status InvalidArgument).
const MaxCursorBytes = 4096

// checkCursor checks the shape of a cursor sent over gRPC (see
// MaxCursorBytes). Its errors wrap ErrInvalidCursor.
func checkCursor(after string) error {
	switch {
	case len(after) > MaxCursorBytes:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidCursor, len(after), MaxCursorBytes)
	case !utf8.ValidString(after):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidCursor, bounded.Quote(after))
	case strings.IndexByte(after, 0) >= 0:
		return fmt.Errorf("%w: %s holds a NUL byte", ErrInvalidCursor, bounded.Quote(after))
	}
	return nil
}

// requestOptions checks a request a Server received, and returns its
// stream options. Its errors wrap ErrInvalidCursor.
func requestOptions(req *reflexpb.StreamRequest) ([]StreamOption, error) {
	if err := checkCursor(req.GetAfter()); err != nil {
		return nil, err
	}
	return optionsFromProto(req.GetOptions())
}

// optionsToProto converts options for the wire. The message is always
// present; lag is set only when positive. A negative lag is an error
// wrapping ErrInvalidCursor.
func optionsToProto(o StreamOptions) (*reflexpb.StreamOptions, error) {
	if o.Lag < 0 {
		return nil, fmt.Errorf("%w: negative stream lag %v", ErrInvalidCursor, o.Lag)
	}
	pb := &reflexpb.StreamOptions{FromHead: o.StreamFromHead, ToHead: o.StreamToHead}
	if o.Lag > 0 {
		pb.Lag = durationpb.New(o.Lag)
	}
	return pb, nil
}

// optionsFromProto converts wire options; nil means none. A malformed or
// negative lag is an error wrapping ErrInvalidCursor.
func optionsFromProto(pb *reflexpb.StreamOptions) ([]StreamOption, error) {
	var opts []StreamOption
	if pb.GetLag() != nil {
		if err := pb.Lag.CheckValid(); err != nil {
			return nil, fmt.Errorf("%w: stream lag: %w", ErrInvalidCursor, err)
		}
		lag := pb.Lag.AsDuration()
		if lag < 0 {
			return nil, fmt.Errorf("%w: negative stream lag %v", ErrInvalidCursor, lag)
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

// toWire checks that e can be sent and returns its wire form: the one
// list of checks for every way an event is sent (eventToProto, fillProto
// and packed batches). e must not be nil, have a nil Type or a type beyond
// int32, or strings that are not valid UTF-8 (which proto.Marshal
// refuses).
func toWire(e *Event) (wire.Event, error) {
	if e == nil {
		return wire.Event{}, errNilEvent
	}
	if e.Type == nil {
		return wire.Event{}, fmt.Errorf("reflex: event %s has a nil Type", bounded.Quote(e.ID))
	}
	t := e.Type.ReflexType()
	if int(int32(t)) != t {
		return wire.Event{}, fmt.Errorf("reflex: event %s: type %d does not fit in int32", bounded.Quote(e.ID), t)
	}
	if !utf8.ValidString(e.ID) {
		return wire.Event{}, fmt.Errorf("reflex: event %s: ID is not valid UTF-8", bounded.Quote(e.ID))
	}
	if !utf8.ValidString(e.ForeignID) {
		return wire.Event{}, fmt.Errorf("reflex: event %s: foreign ID is not valid UTF-8", bounded.Quote(e.ID))
	}
	return wire.Event{
		ID:           e.ID,
		ForeignID:    e.ForeignID,
		Type:         int32(t),
		Seconds:      e.Timestamp.Unix(),
		Nanos:        int32(e.Timestamp.Nanosecond()),
		HasTimestamp: true,
		MetaData:     e.MetaData,
		Trace:        e.Trace,
	}, nil
}

// eventToProto converts an event for the wire (see toWire).
func eventToProto(e *Event) (*reflexpb.Event, error) {
	w, err := toWire(e)
	if err != nil {
		return nil, err
	}
	pb := &reflexpb.Event{Timestamp: &timestamppb.Timestamp{}}
	setProto(pb, pb.Timestamp, &w)
	return pb, nil
}

// fillProto writes e into pb and ts (which pb then points to), checking
// it as eventToProto does, and returns the encoded size of pb.
func fillProto(pb *reflexpb.Event, ts *timestamppb.Timestamp, e *Event) (int, error) {
	w, err := toWire(e)
	if err != nil {
		return 0, err
	}
	setProto(pb, ts, &w)
	return wire.Size(&w), nil
}

func setProto(pb *reflexpb.Event, ts *timestamppb.Timestamp, w *wire.Event) {
	ts.Seconds, ts.Nanos = w.Seconds, w.Nanos
	pb.Id, pb.Type, pb.ForeignId, pb.Metadata, pb.Trace = w.ID, w.Type, w.ForeignID, w.MetaData, w.Trace
	pb.Timestamp = ts
}

// eventFromProto converts a wire event (see eventFromWire).
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
	w := wire.Event{
		ID:           pb.Id,
		ForeignID:    pb.ForeignId,
		Type:         pb.Type,
		Seconds:      pb.GetTimestamp().GetSeconds(),
		Nanos:        pb.GetTimestamp().GetNanos(),
		HasTimestamp: pb.Timestamp != nil,
		MetaData:     pb.Metadata,
		Trace:        pb.Trace,
	}
	return eventFromWire(e, &w)
}

// eventFromWire converts a received event, packed or not: a missing
// timestamp becomes the Unix epoch, an out-of-range one is an error.
func eventFromWire(e *Event, w *wire.Event) error {
	ts, err := w.Time()
	if err != nil {
		return fmt.Errorf("reflex: event %s: invalid %w", bounded.Quote(w.ID), err)
	}
	// Field by field: e is usually in a freshly allocated batch, and a
	// composite assignment would copy through a temporary.
	e.ID = w.ID
	e.Type = eventtype.Type(w.Type)
	e.ForeignID = w.ForeignID
	e.Timestamp = ts
	e.MetaData = w.MetaData
	e.Trace = w.Trace
	return nil
}
