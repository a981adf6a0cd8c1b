package life

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLife(t *testing.T) {
	parent, cancelParent := context.WithTimeout(t.Context(), time.Hour)
	l := New(parent)
	if l.Err() != nil {
		t.Fatalf("Err of a live client = %v", l.Err())
	}
	cancelParent()
	if err := l.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after the caller cancelled = %v", err)
	}

	dl, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	l = New(dl)
	if err := l.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err after the caller's deadline = %v", err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := l.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
		})
	}
	wg.Wait()
	if err := l.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after Close = %v, want context.Canceled even after the deadline", err)
	}
	if l.Context().Err() == nil {
		t.Error("context live after Close")
	}
}
