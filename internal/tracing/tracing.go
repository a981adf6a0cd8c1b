// Package tracing encodes OpenTelemetry span contexts into Event.Trace and
// restores them into a consumer's context.
//
// The wire format is a marshalled reflexpb.Trace with lowercase hex trace
// and span IDs. Trace flags and trace state are not carried.
package tracing

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

// ErrInvalidTrace is returned by Unmarshal for data that is not an encoded
// span context.
var ErrInvalidTrace = errors.New("tracing: invalid trace data")

// Marshal encodes the trace and span IDs of sc.
func Marshal(sc trace.SpanContext) ([]byte, error) {
	if !sc.HasTraceID() || !sc.HasSpanID() {
		return nil, fmt.Errorf("%w: span context has no trace or span id", ErrInvalidTrace)
	}
	return proto.Marshal(&reflexpb.Trace{
		TraceId: sc.TraceID().String(),
		SpanId:  sc.SpanID().String(),
	})
}

// Unmarshal decodes data written by Marshal into a remote span context.
func Unmarshal(data []byte) (trace.SpanContext, error) {
	var t reflexpb.Trace
	if err := proto.Unmarshal(data, &t); err != nil {
		return trace.SpanContext{}, fmt.Errorf("%w: %w", ErrInvalidTrace, err)
	}
	tid, err := trace.TraceIDFromHex(t.GetTraceId())
	if err != nil {
		return trace.SpanContext{}, fmt.Errorf("%w: trace id %s: %w", ErrInvalidTrace, bounded.Quote(t.GetTraceId()), err)
	}
	sid, err := trace.SpanIDFromHex(t.GetSpanId())
	if err != nil {
		return trace.SpanContext{}, fmt.Errorf("%w: span id %s: %w", ErrInvalidTrace, bounded.Quote(t.GetSpanId()), err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}), nil
}

// Extract returns the span context of ctx and whether it has both a trace
// and a span ID.
func Extract(ctx context.Context) (trace.SpanContext, bool) {
	sc := trace.SpanContextFromContext(ctx)
	return sc, sc.HasTraceID() && sc.HasSpanID()
}

// Inject returns ctx carrying the remote span context encoded in data. For
// empty or undecodable data it returns ctx unchanged.
func Inject(ctx context.Context, data []byte) context.Context {
	if len(data) == 0 {
		return ctx
	}
	sc, err := Unmarshal(data)
	if err != nil {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}
