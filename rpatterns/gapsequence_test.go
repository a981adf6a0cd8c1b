package rpatterns

import (
	"math/rand/v2"
	"sync"
	"testing"
)

func TestGapSequenceVectors(t *testing.T) {
	tests := []struct {
		name  string
		doing []int64
		done  []int64
		want  []int64 // CurrentMax after each done
	}{
		{"in order", []int64{3, 4, 5}, []int64{3, 5, 4}, []int64{3, 3, 5}},
		{"with gaps", []int64{3, 100, 101}, []int64{3, 101, 100}, []int64{3, 3, 101}},
		{"done never doing", []int64{3}, []int64{2, 4, 3}, []int64{0, 0, 3}},
		{"done twice", []int64{1, 2}, []int64{2, 2, 1}, []int64{0, 0, 2}},
		{"doing out of order", []int64{5, 2, 9}, []int64{5, 2, 9}, []int64{0, 5, 9}},
		{"doing duplicate", []int64{1, 1, 2}, []int64{1, 2}, []int64{1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewGapSequence()
			if got := s.CurrentMax(); got != 0 {
				t.Fatalf("initial CurrentMax = %d, want 0", got)
			}
			for _, v := range tc.doing {
				s.Doing(v)
			}
			for i, v := range tc.done {
				s.Done(v)
				if got := s.CurrentMax(); got != tc.want[i] {
					t.Errorf("after Done(%d): CurrentMax = %d, want %d", v, got, tc.want[i])
				}
			}
		})
	}
}

func TestGapSequenceLarge(t *testing.T) {
	s := NewGapSequence()
	for v := int64(10_000); v <= 20_000; v++ {
		s.Doing(v)
	}
	for v := int64(10_002); v <= 20_000; v++ {
		s.Done(v)
	}
	if got := s.CurrentMax(); got != 0 {
		t.Fatalf("CurrentMax = %d, want 0 while 10000 and 10001 are pending", got)
	}
	s.Done(10_000)
	if got := s.CurrentMax(); got != 10_000 {
		t.Fatalf("CurrentMax = %d, want 10000", got)
	}
	s.Done(10_001)
	if got := s.CurrentMax(); got != 20_000 {
		t.Fatalf("CurrentMax = %d, want 20000", got)
	}
	if n := s.pendingLen(); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

// TestGapSequenceNeverDecreases: a value marked doing below CurrentMax
// does not move it back.
func TestGapSequenceNeverDecreases(t *testing.T) {
	s := NewGapSequence()
	s.Doing(10)
	s.Done(10)
	s.Doing(5)
	if got := s.CurrentMax(); got != 10 {
		t.Fatalf("CurrentMax = %d, want 10", got)
	}
	s.Doing(11)
	s.Done(11)
	if got := s.CurrentMax(); got != 10 {
		t.Fatalf("CurrentMax = %d, want 10 while 5 is pending", got)
	}
	s.Done(5)
	if got := s.CurrentMax(); got != 11 {
		t.Fatalf("CurrentMax = %d, want 11", got)
	}
}

// TestGapSequenceConcurrent completes values from many goroutines in random
// order; in the end everything is done. Run with -race.
func TestGapSequenceConcurrent(t *testing.T) {
	const n = 5000
	s := NewGapSequence()
	vals := make([]int64, n)
	for i := range vals {
		vals[i] = int64(2*i + 1) // gaps between values
		s.Doing(vals[i])
	}
	rand.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			last := int64(0)
			for i := w; i < n; i += 8 {
				s.Done(vals[i])
				if m := s.CurrentMax(); m < last {
					t.Errorf("CurrentMax went from %d to %d", last, m)
				} else {
					last = m
				}
			}
		})
	}
	wg.Wait()
	if got, want := s.CurrentMax(), int64(2*n-1); got != want {
		t.Fatalf("CurrentMax = %d, want %d", got, want)
	}
}

func BenchmarkGapSequence(b *testing.B) {
	s := NewGapSequence()
	var v int64
	const window = 64 // values in flight
	for b.Loop() {
		v++
		s.Doing(v)
		if v > window {
			s.Done(v - window)
		}
	}
	b.ReportAllocs()
}

// TestGapSequenceValue: CurrentMax has a value receiver (as in
// luno/reflex), and a copy of a GapSequence shares its state.
func TestGapSequenceValue(t *testing.T) {
	s := NewGapSequence()
	s.Doing(1)
	s.Doing(2)
	cp := *s
	s.Done(1)
	current := GapSequence.CurrentMax
	if got := current(cp); got != 1 {
		t.Errorf("CurrentMax of a copy = %d, want 1", got)
	}
	cp.Done(2)
	if got := s.CurrentMax(); got != 2 {
		t.Errorf("CurrentMax after Done on the copy = %d, want 2", got)
	}
}
