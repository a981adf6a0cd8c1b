package rpatterns

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

// MemLeaseStore is an in-memory LeaseStore for tests and examples: the
// leases of runners in one process, timed by the local clock (and so by
// the fake clock of testing/synctest). The zero value is not usable; call
// NewMemLeaseStore. It is safe for concurrent use.
type MemLeaseStore struct {
	mu     sync.Mutex // protects leases; held during fenced writes
	leases map[memLeaseKey]*memLease
}

type memLeaseKey struct {
	name  string
	shard int
}

type memLease struct {
	shards  int
	owner   string
	epoch   int64
	expires time.Time
}

var _ LeaseStore = (*MemLeaseStore)(nil)

// NewMemLeaseStore returns an empty MemLeaseStore.
func NewMemLeaseStore() *MemLeaseStore {
	return &MemLeaseStore{leases: make(map[memLeaseKey]*memLease)}
}

// ScanLeases implements LeaseStore.
func (s *MemLeaseStore) ScanLeases(ctx context.Context, name string) ([]LeaseState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []LeaseState
	for k, l := range s.leases {
		if k.name == name {
			out = append(out, LeaseState{
				Lease: Lease{Name: name, Shard: k.shard, Shards: l.shards, Owner: l.owner, Epoch: l.epoch},
				Left:  l.expires.Sub(now),
			})
		}
	}
	return out, nil
}

// ClaimLease implements LeaseStore.
func (s *MemLeaseStore) ClaimLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	if l.Name == "" || l.Owner == "" || l.Epoch < 0 || ttl <= 0 {
		return Lease{}, fmt.Errorf("%w: claim %+v for %v", ErrInvalidLease, l, ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	k := memLeaseKey{l.Name, l.Shard}
	cur := s.leases[k]
	switch {
	case cur == nil && l.Epoch != 0, cur != nil && cur.epoch != l.Epoch,
		cur != nil && cur.owner != "" && cur.expires.After(now):
		return Lease{}, fmt.Errorf("%w: lease %.64q shard %d", ErrLeaseTaken, l.Name, l.Shard)
	}
	l.Epoch++
	s.leases[k] = &memLease{shards: l.Shards, owner: l.Owner, epoch: l.Epoch, expires: now.Add(ttl)}
	return l, nil
}

// RenewLeases implements LeaseStore.
func (s *MemLeaseStore) RenewLeases(ctx context.Context, ls []Lease, ttl time.Duration) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	n := 0
	for _, l := range ls {
		if cur := s.heldLocked(l, now); cur != nil {
			cur.expires = now.Add(ttl)
			n++
		}
	}
	return n, nil
}

// ReleaseLeases implements LeaseStore.
func (s *MemLeaseStore) ReleaseLeases(ctx context.Context, ls []Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, l := range ls {
		if cur := s.heldLocked(l, now); cur != nil {
			cur.owner, cur.expires = "", now
		}
	}
	return nil
}

// heldLocked returns the lease l if the store holds it for l.Owner with
// l.Epoch and it has not expired, else nil.
func (s *MemLeaseStore) heldLocked(l Lease, now time.Time) *memLease {
	cur := s.leases[memLeaseKey{l.Name, l.Shard}]
	if cur == nil || cur.owner != l.Owner || cur.epoch != l.Epoch || !cur.expires.After(now) {
		return nil
	}
	return cur
}

// FenceCursorStore implements LeaseStore for any cursor store that writes
// in SetCursor (such as MemCursors): SetCursor checks the lease and writes
// to store while holding the lease store's lock, so that no claim comes
// between the check and the write. Flush and GetCursor pass through
// unfenced: a store that buffers writes until Flush is not fenced. It
// never returns an error for a non-nil store.
func (s *MemLeaseStore) FenceCursorStore(store reflex.CursorStore, l Lease, lost func()) (reflex.CursorStore, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil cursor store", ErrInvalidLease)
	}
	return &memFenced{s: s, store: store, l: l, lost: lost}, nil
}

// memFenced is a cursor store fenced by a lease of a MemLeaseStore.
type memFenced struct {
	s     *MemLeaseStore
	store reflex.CursorStore
	l     Lease
	lost  func()
}

func (f *memFenced) GetCursor(ctx context.Context, name string) (string, error) {
	return f.store.GetCursor(ctx, name)
}

func (f *memFenced) SetCursor(ctx context.Context, name, cursor string) error {
	f.s.mu.Lock()
	if f.s.heldLocked(f.l, time.Now()) == nil {
		f.s.mu.Unlock()
		if f.lost != nil {
			f.lost()
		}
		return fmt.Errorf("rpatterns: set cursor of %.64q to %.64q: %w: lease %.64q shard %d epoch %d of %.64q",
			name, cursor, ErrLeaseLost, f.l.Name, f.l.Shard, f.l.Epoch, f.l.Owner)
	}
	defer f.s.mu.Unlock()
	return f.store.SetCursor(ctx, name, cursor)
}

func (f *memFenced) Flush(ctx context.Context) error { return f.store.Flush(ctx) }
