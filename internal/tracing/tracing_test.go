package tracing_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/seed-e488ba2e/reflex/internal/tracing"
	"github.com/seed-e488ba2e/reflex/reflexpb"
)

var testSC = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID:    trace.TraceID{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xff},
	SpanID:     trace.SpanID{0xca, 0xfe, 1, 2, 3, 4, 5, 0xab},
	TraceFlags: trace.FlagsSampled,
})

func TestRoundTrip(t *testing.T) {
	data, err := tracing.Marshal(testSC)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	got, err := tracing.Unmarshal(data)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	// Flags and state are not carried; the result is remote.
	want := trace.NewSpanContext(trace.SpanContextConfig{TraceID: testSC.TraceID(), SpanID: testSC.SpanID(), Remote: true})
	if !got.Equal(want) {
		t.Errorf("round trip = %v, want %v", got, want)
	}
}

func TestWireFormat(t *testing.T) {
	data, err := tracing.Marshal(testSC)
	if err != nil {
		t.Fatal(err)
	}
	var pb reflexpb.Trace
	if err := proto.Unmarshal(data, &pb); err != nil {
		t.Fatalf("data is not a reflexpb.Trace: %v", err)
	}
	if got, want := pb.GetTraceId(), "deadbeef0102030405060708090a0bff"; got != want {
		t.Errorf("trace_id = %q, want %q", got, want)
	}
	if got, want := pb.GetSpanId(), "cafe0102030405ab"; got != want {
		t.Errorf("span_id = %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(pb.GetTraceId()) || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(pb.GetSpanId()) {
		t.Errorf("IDs %q/%q are not lowercase hex of 32/16 chars", pb.GetTraceId(), pb.GetSpanId())
	}

	// Data written by another implementation decodes.
	other, err := proto.Marshal(&reflexpb.Trace{TraceId: pb.GetTraceId(), SpanId: pb.GetSpanId()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tracing.Unmarshal(other)
	if err != nil || got.TraceID() != testSC.TraceID() || got.SpanID() != testSC.SpanID() {
		t.Errorf("Unmarshal(foreign data) = (%v, %v), want the span context", got, err)
	}
}

func TestMarshalInvalid(t *testing.T) {
	for name, sc := range map[string]trace.SpanContext{
		"empty":       {},
		"no span id":  trace.NewSpanContext(trace.SpanContextConfig{TraceID: testSC.TraceID()}),
		"no trace id": trace.NewSpanContext(trace.SpanContextConfig{SpanID: testSC.SpanID()}),
	} {
		if _, err := tracing.Marshal(sc); !errors.Is(err, tracing.ErrInvalidTrace) {
			t.Errorf("Marshal(%s) = %v, want ErrInvalidTrace", name, err)
		}
	}
}

func TestUnmarshalInvalid(t *testing.T) {
	bad := func(tid, sid string) []byte {
		b, err := proto.Marshal(&reflexpb.Trace{TraceId: tid, SpanId: sid})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, data := range map[string][]byte{
		"nil":            nil,
		"garbage":        []byte{0xff, 0xff, 0xff},
		"text":           []byte("not a proto"),
		"bad trace hex":  bad("zz", "cafe0102030405ab"),
		"bad span hex":   bad("deadbeef0102030405060708090a0bff", "nope"),
		"zero trace id":  bad("00000000000000000000000000000000", "cafe0102030405ab"),
		"short trace id": bad("deadbeef", "cafe0102030405ab"),
		"huge trace id":  bad(strings.Repeat("a", 1<<20), "cafe0102030405ab"),
		"huge span id":   bad("deadbeef0102030405060708090a0bff", strings.Repeat("b", 1<<20)),
	} {
		sc, err := tracing.Unmarshal(data)
		if !errors.Is(err, tracing.ErrInvalidTrace) {
			t.Errorf("Unmarshal(%s) = (%v, %v), want ErrInvalidTrace", name, sc, err)
		}
		if err != nil && len(err.Error()) > 256 {
			t.Errorf("Unmarshal(%s) error is %d bytes, want a bounded message", name, len(err.Error()))
		}
	}
}

func TestExtract(t *testing.T) {
	if sc, ok := tracing.Extract(context.Background()); ok || sc.IsValid() {
		t.Errorf("Extract(empty ctx) = (%v, %v), want (zero, false)", sc, ok)
	}
	ctx := trace.ContextWithSpanContext(context.Background(), testSC)
	if sc, ok := tracing.Extract(ctx); !ok || !sc.Equal(testSC) {
		t.Errorf("Extract = (%v, %v), want (%v, true)", sc, ok, testSC)
	}
	half := trace.NewSpanContext(trace.SpanContextConfig{TraceID: testSC.TraceID()})
	if _, ok := tracing.Extract(trace.ContextWithSpanContext(context.Background(), half)); ok {
		t.Error("Extract of a span context without span ID = true, want false")
	}
}

type ctxKey struct{}

func TestInjectLeavesContextOnBadData(t *testing.T) {
	ctx := context.WithValue(context.Background(), ctxKey{}, 1)
	for name, data := range map[string][]byte{"nil": nil, "empty": {}, "garbage": []byte("garbage")} {
		if got := tracing.Inject(ctx, data); got != ctx {
			t.Errorf("Inject(%s) returned a new context, want ctx unchanged", name)
		}
	}
	// An existing span survives bad data.
	withSpan := trace.ContextWithSpanContext(ctx, testSC)
	if got := tracing.Inject(withSpan, []byte("garbage")); got != withSpan {
		t.Error("Inject(garbage) replaced the existing context")
	}
}

func TestInject(t *testing.T) {
	data, err := tracing.Marshal(testSC)
	if err != nil {
		t.Fatal(err)
	}
	ctx := tracing.Inject(context.WithValue(context.Background(), ctxKey{}, 1), data)
	sc, ok := tracing.Extract(ctx)
	if !ok {
		t.Fatal("Extract after Inject = false")
	}
	if !sc.IsRemote() {
		t.Error("injected span context is not remote")
	}
	if sc.TraceID() != testSC.TraceID() || sc.SpanID() != testSC.SpanID() {
		t.Errorf("injected %v/%v, want %v/%v", sc.TraceID(), sc.SpanID(), testSC.TraceID(), testSC.SpanID())
	}
	if ctx.Value(ctxKey{}) != 1 {
		t.Error("Inject dropped the parent context's values")
	}
	// A span started from ctx is a child in the same trace.
	if got := trace.SpanContextFromContext(ctx); !got.Equal(sc) {
		t.Errorf("SpanContextFromContext = %v, want %v", got, sc)
	}
}
