package reflex

import (
	"github.com/seed-e488ba2e/reflex/internal/eventtype"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/seed-e488ba2e/reflex/reflexpb"
)

func TestOptionsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		opts []StreamOption
		want int
	}{
		{"none", nil, 0},
		{"zero lag", []StreamOption{WithStreamLag(0)}, 0},
		{"minute lag", []StreamOption{WithStreamLag(time.Minute)}, 1},
		{"from head", []StreamOption{WithStreamFromHead()}, 1},
		{"lag and head", []StreamOption{WithStreamLag(time.Minute), WithStreamFromHead()}, 2},
		{"to head", []StreamOption{WithStreamToHead()}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := ResolveOptions(tc.opts...)
			pb, err := optionsToProto(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := optionsFromProto(pb)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("round trip gave %d options, want %d", len(got), tc.want)
			}
			if out := ResolveOptions(got...); out != in {
				t.Errorf("round trip = %+v, want %+v", out, in)
			}
		})
	}
}

func TestEventToProtoErrors(t *testing.T) {
	if _, err := eventToProto(&Event{ID: "1"}); err == nil {
		t.Error("nil Type: want error")
	}
	if _, err := eventToProto(&Event{ID: "1", Type: eventtype.Type(1 << 40)}); err == nil {
		t.Error("type beyond int32: want error")
	}
	if _, err := eventFromProto(nil); err == nil {
		t.Error("nil proto event: want error")
	}
}

func TestEventFromProtoNilTimestampIsEpoch(t *testing.T) {
	e, err := eventFromProto(&reflexpb.Event{Id: "5", Type: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Timestamp.Equal(time.Unix(0, 0)) || e.Type.ReflexType() != 3 || e.ID != "5" {
		t.Errorf("eventFromProto = %+v", e)
	}
}

// FuzzEventFromProto decodes arbitrary bytes as a wire event: conversion
// never panics, and whatever converts survives a round trip.
func FuzzEventFromProto(f *testing.F) {
	seed, _ := proto.Marshal(&reflexpb.Event{Id: "1", Type: 2, ForeignId: "3", Metadata: []byte("m")})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x22, 0x04, 0x08, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var pb reflexpb.Event
		if proto.Unmarshal(data, &pb) != nil {
			return
		}
		e, err := eventFromProto(&pb)
		if err != nil {
			return
		}
		back, err := eventToProto(e)
		if err != nil {
			t.Fatalf("round trip of %+v: %v", e, err)
		}
		again, err := eventFromProto(back)
		if err != nil {
			t.Fatalf("second conversion: %v", err)
		}
		if again.ID != e.ID || again.ForeignID != e.ForeignID || !again.Timestamp.Equal(e.Timestamp) ||
			again.Type.ReflexType() != e.Type.ReflexType() || string(again.MetaData) != string(e.MetaData) {
			t.Fatalf("round trip changed %+v to %+v", e, again)
		}
	})
}
