package rpatterns

import (
	"errors"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

func TestMemCursorStoreConformance(t *testing.T) {
	reflextest.TestCursorStore(t, func(t *testing.T) reflex.CursorStore { return MemCursorStore() })
}

func TestReadThroughCursorStoreConformance(t *testing.T) {
	reflextest.TestCursorStore(t, func(t *testing.T) reflex.CursorStore {
		return ReadThroughCursorStore(MemCursorStore(), MemCursorStore())
	})
}

func TestMemCursorStoreSeeds(t *testing.T) {
	s := MemCursorStore(
		WithMemCursor("a", "x"),
		WithMemCursorInt("b", 42),
		WithMemCursor("c", "first"),
		WithMemCursor("c", "second"),
	)
	for name, want := range map[string]string{"a": "x", "b": "42", "c": "second", "unknown": ""} {
		got, err := s.GetCursor(t.Context(), name)
		if err != nil || got != want {
			t.Errorf("GetCursor(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestReadThroughCursorStore(t *testing.T) {
	ctx := t.Context()
	primary := reflextest.NewCursorStore()
	fallback := reflextest.NewCursorStore()
	_ = fallback.SetCursor(ctx, "migrated", "5")
	_ = primary.SetCursor(ctx, "both", "7")
	_ = fallback.SetCursor(ctx, "both", "3")
	s := ReadThroughCursorStore(primary, fallback)

	for name, want := range map[string]string{"migrated": "5", "both": "7", "none": ""} {
		got, err := s.GetCursor(ctx, name)
		if err != nil || got != want {
			t.Errorf("GetCursor(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if got := primary.Sets("migrated"); len(got) != 1 || got[0] != "5" {
		t.Errorf("primary sets of migrated = %q, want [5] (copied from fallback)", got)
	}
	if got := primary.Sets("none"); len(got) != 0 {
		t.Errorf("primary sets of none = %q, want none", got)
	}

	if err := s.SetCursor(ctx, "new", "9"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fallback.Sets("new"); len(got) != 0 {
		t.Errorf("fallback sets = %q, want none: writes go to primary only", got)
	}
	if primary.Cursor("new") != "9" || primary.Flushes() != 1 || fallback.Flushes() != 0 {
		t.Errorf("primary cursor %q, flushes %d; fallback flushes %d; want 9, 1, 0",
			primary.Cursor("new"), primary.Flushes(), fallback.Flushes())
	}
}

func TestReadThroughCursorStoreErrors(t *testing.T) {
	errGet, errFallback, errSet := errors.New("get"), errors.New("fallback"), errors.New("set")
	fallback := reflextest.NewCursorStore()
	_ = fallback.SetCursor(t.Context(), "c", "1")
	tests := []struct {
		name              string
		primary, fallback reflex.CursorStore
		want              error
	}{
		{"primary get", reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{Get: func(string) error { return errGet }})), fallback, errGet},
		{"fallback get", reflextest.NewCursorStore(), reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{Get: func(string) error { return errFallback }})), errFallback},
		{"copy to primary", reflextest.NewCursorStore(reflextest.WithFaults(reflextest.Faults{Set: func(string, string) error { return errSet }})), fallback, errSet},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadThroughCursorStore(tc.primary, tc.fallback).GetCursor(t.Context(), "c")
			if !errors.Is(err, tc.want) || got != "" {
				t.Errorf("GetCursor = %q, %v; want \"\", %v", got, err, tc.want)
			}
		})
	}
}
