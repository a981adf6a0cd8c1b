package rpatterns

import (
	"slices"
	"sync"
)

// GapSequence tracks values (event IDs) that are being processed out of
// order and reports the highest value up to which everything is done.
//
// Call Doing(v) when processing of v starts and Done(v) when it finishes;
// CurrentMax returns the largest done value such that every value marked
// doing up to it is done as well. Values never marked doing (gaps in the
// ID sequence) do not hold it back. CurrentMax is 0 initially and never
// decreases.
//
// A GapSequence is safe for concurrent use. Build it with NewGapSequence
// (the zero value is not usable). It refers to its state, so copies of a
// GapSequence share it (as in luno/reflex, CurrentMax has a value
// receiver). Doing is cheapest when values arrive in increasing order;
// Done costs O(log n) in the number of pending values.
type GapSequence struct {
	s *gapState
}

type gapState struct {
	mu      sync.Mutex // protects the following fields
	pending []gapEntry // sorted by v; pending[head:] are live
	head    int
	max     int64
}

type gapEntry struct {
	v    int64
	done bool
}

// NewGapSequence returns an empty GapSequence.
func NewGapSequence() *GapSequence {
	return &GapSequence{s: new(gapState)}
}

// Doing marks v as being processed. Marking a value already pending has no
// effect.
func (g *GapSequence) Doing(v int64) {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.pending[s.head:]
	if n := len(live); n == 0 || live[n-1].v < v {
		s.pending = append(s.pending, gapEntry{v: v})
		return
	}
	i, found := slices.BinarySearchFunc(live, v, cmpEntry)
	if found {
		return
	}
	s.pending = slices.Insert(s.pending, s.head+i, gapEntry{v: v})
}

// Done marks v as processed. Done of a value that is not pending (never
// marked doing, or already done) has no effect.
func (g *GapSequence) Done(v int64) {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.pending[s.head:]
	i, found := slices.BinarySearchFunc(live, v, cmpEntry)
	if !found {
		return
	}
	live[i].done = true
	if i != 0 {
		return
	}
	for s.head < len(s.pending) && s.pending[s.head].done {
		s.max = max(s.max, s.pending[s.head].v)
		s.head++
	}
	s.compactLocked()
}

// compactLocked releases the space of consumed entries once they make up
// at least half of the slice.
func (s *gapState) compactLocked() {
	if s.head == len(s.pending) {
		s.pending = s.pending[:0]
		s.head = 0
		return
	}
	if s.head >= 1024 && s.head >= len(s.pending)/2 {
		n := copy(s.pending, s.pending[s.head:])
		s.pending = s.pending[:n]
		s.head = 0
	}
}

// CurrentMax returns the largest done value such that every value marked
// doing up to it is done, or 0 if there is none yet.
func (g GapSequence) CurrentMax() int64 {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// pendingLen returns the number of values marked doing and not yet
// accounted for by CurrentMax.
func (g *GapSequence) pendingLen() int {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) - s.head
}

func cmpEntry(e gapEntry, v int64) int {
	switch {
	case e.v < v:
		return -1
	case e.v > v:
		return 1
	}
	return 0
}
