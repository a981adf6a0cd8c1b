package rpatterns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/seed-e488ba2e/reflex"
)

// Lease is the right of one member (a runner: RunSharded, RunLeased or
// HoldLease, in some process) to run one shard of a named consumer until
// the lease expires. Leases are kept in a LeaseStore shared by every
// member; their expiry is measured by the store's clock, never by the
// members'.
type Lease struct {
	// Name is the lease's name: the consumer name given to RunSharded or
	// HoldLease (or the consumer's name in RunLeased).
	Name string
	// Shard is the shard, from 0 to Shards-1. RunSharded also keeps one
	// lease per member, with a negative Shard, to tell the members apart
	// (see LeaseStore).
	Shard int
	// Shards is the number of shards that the holder runs Name with.
	Shards int
	// Owner identifies the holder, unique per runner (see WithLeaseOwner).
	Owner string
	// Epoch is the lease's fencing token: 1 for its first claim, one more
	// for every later claim, whoever makes it. A write fenced by a lease
	// (LeaseStore.FenceCursorStore) takes effect only while the store
	// still holds the lease with this owner and epoch.
	Epoch int64
}

// LeaseState is a lease as a LeaseStore read it.
type LeaseState struct {
	Lease
	// Left is how long the lease had to run when the store read it,
	// measured by the store's clock. A lease with Left <= 0 or an empty
	// Owner (released) is free: anyone may claim it.
	Left time.Duration
}

// free reports whether s can be claimed.
func (s LeaseState) free() bool { return s.Owner == "" || s.Left <= 0 }

// LeaseStore keeps the leases of RunSharded, RunLeased and HoldLease. It
// is shared by every member of a consumer (typically a table in the
// database that holds the cursors, see rsql.LeasesTable) and implemented
// in memory by MemLeaseStore for tests. Every method must be safe for
// concurrent use, measure time by the store's own clock, and return an
// error wrapping ErrInvalidLease for a request it can never serve (a name
// it cannot hold, a store that is misconfigured), which the runners return
// instead of retrying.
//
// A lease is identified by (Name, Shard). RunSharded keeps the leases of
// shards 0 to n-1 and, for each member, one lease with Shard -1, -2, ...
// (the first one free when the member joins), renewed with its shards: the
// live negative leases are the consumer's members.
type LeaseStore interface {
	// ScanLeases returns the state of every lease named name, in any
	// order.
	ScanLeases(ctx context.Context, name string) ([]LeaseState, error)

	// ClaimLease gives the lease (l.Name, l.Shard) to l.Owner for ttl, with
	// Shards set to l.Shards, if it is free (released or expired) and its
	// epoch is still l.Epoch, the one the caller read (0 for a lease the
	// store does not have yet). It returns the claimed lease, whose epoch
	// is l.Epoch+1, or an error wrapping ErrLeaseTaken if the lease is held
	// or its epoch moved on.
	ClaimLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)

	// RenewLeases makes each of ls expire ttl from now, if the store still
	// holds it (same owner and epoch, not expired), and returns how many it
	// renewed. All of ls have the same Name and Owner. A lease that was not
	// renewed is lost.
	RenewLeases(ctx context.Context, ls []Lease, ttl time.Duration) (int, error)

	// ReleaseLeases frees each of ls that the store still holds, so that
	// another member can claim it at once.
	ReleaseLeases(ctx context.Context, ls []Lease) error

	// FenceCursorStore returns a view of store whose cursor writes take
	// effect only while the store holds l (same owner and epoch, not
	// expired), checked in the same atomic step as the write. A write
	// refused for that reason changes nothing and returns an error
	// wrapping ErrLeaseLost, and lost (if not nil) is called, possibly
	// from another goroutine and more than once. It returns an error
	// wrapping ErrInvalidLease if it cannot fence store (a store of
	// another kind, or in another database).
	FenceCursorStore(store reflex.CursorStore, l Lease, lost func()) (reflex.CursorStore, error)
}

var (
	// ErrLeaseLost is wrapped by the errors of cursor writes through a
	// store fenced by a lease (LeaseStore.FenceCursorStore) that the
	// writer no longer holds: it expired, or another member claimed it.
	// The write changed nothing. The runners stop the shard's run when
	// they see it; the member that holds the lease now goes on from the
	// stored cursor.
	ErrLeaseLost = errors.New("rpatterns: lease lost")

	// ErrLeaseTaken is wrapped by the error of LeaseStore.ClaimLease when
	// the lease is held by another member or was claimed since the caller
	// read it.
	ErrLeaseTaken = errors.New("rpatterns: lease taken")

	// ErrShardCount is returned (wrapped, naming both counts) by RunSharded
	// and RunShardedSpecs, before they claim any shard, when a live member
	// of the same consumer name runs with another number of shards; and by
	// HoldLease and RunLeased when the name is run by RunSharded with more
	// than one shard.
	ErrShardCount = errors.New("rpatterns: consumer runs with another shard count")

	// ErrInvalidLease is wrapped by the errors of the runners for bad
	// input (an empty or invalid name, a shard count below 1, a TTL not
	// larger than the renew interval, a nil store or function), and by
	// those of a LeaseStore for a request it can never serve. The runners
	// return such errors at once.
	ErrInvalidLease = errors.New("rpatterns: invalid lease configuration")
)

const (
	// defaultLeaseTTL is how long a lease lasts after each renewal: a
	// member that dies is replaced about this long after its last renewal.
	defaultLeaseTTL = 15 * time.Second

	// maxLeaseName caps the lease names the runners accept; stores may
	// accept less (the rsql table holds 255 bytes).
	maxLeaseName = 255
)

// LeaseOption configures RunSharded, RunShardedSpecs, RunLeased and
// HoldLease.
type LeaseOption func(*leaseConfig)

type leaseConfig struct {
	ttl       time.Duration
	interval  time.Duration // 0: ttl/3
	owner     string
	shardOpts []ParallelOption
}

// WithLeaseTTL sets how long a lease lasts after each claim or renewal,
// measured by the store's clock. Default 15 s. A member that dies is
// replaced within about the TTL plus one renew interval; a shorter TTL
// means faster takeover and more frequent renewals. It must be larger than
// the renew interval.
func WithLeaseTTL(d time.Duration) LeaseOption {
	return func(c *leaseConfig) { c.ttl = d }
}

// WithLeaseRenewInterval sets how often a member renews its leases and
// reads the others' (the tick of every runner). Default: a third of the
// TTL. It must be positive and smaller than the TTL (else the runners
// return an error wrapping ErrInvalidLease). A member stops processing a
// shard half an interval before the lease could expire if its renewals
// fail.
func WithLeaseRenewInterval(d time.Duration) LeaseOption {
	return func(c *leaseConfig) { c.interval = d }
}

// WithLeaseOwner sets the member's owner ID, stored with its leases. It
// must be unique per runner among the members of a consumer: two runners
// with one ID would be one member. Default: the host name, the process ID
// and a random suffix, different for every runner. An empty or invalid
// UTF-8 ID, or one over 255 bytes, is an error wrapping ErrInvalidLease.
func WithLeaseOwner(id string) LeaseOption {
	return func(c *leaseConfig) { c.owner = id }
}

// WithShardOptions sets how RunSharded and RunShardedSpecs split events
// and name shards: the options of ConsumerShards (WithHashOption,
// WithHashFn, WithNameFormatter) and, for RunSharded,
// WithConsumerSpecificOpts and WithStreamOpts. Unlike ConsumerShards,
// which hashes the event ID by default, the runners hash the foreign ID by
// default (HashOptionEventForeignID), so that the events of one entity
// are processed in order by one shard; WithHashOption or WithHashFn
// replaces that. RunLeased and HoldLease ignore it.
func WithShardOptions(opts ...ParallelOption) LeaseOption {
	return func(c *leaseConfig) { c.shardOpts = append(c.shardOpts, opts...) }
}

// newLeaseConfig applies opts to the defaults and checks them with the
// name and shard count; what names the caller for messages.
func newLeaseConfig(what string, leases LeaseStore, name string, n int, opts []LeaseOption) (leaseConfig, error) {
	c := leaseConfig{ttl: defaultLeaseTTL}
	for _, o := range opts {
		if o == nil {
			return c, fmt.Errorf("%w: %s: nil option", ErrInvalidLease, what)
		}
		o(&c)
	}
	if c.interval == 0 {
		c.interval = c.ttl / 3
	}
	for _, o := range c.shardOpts {
		if o == nil {
			return c, fmt.Errorf("%w: %s: nil shard option", ErrInvalidLease, what)
		}
	}
	var err error
	switch {
	case leases == nil:
		err = errors.New("nil lease store")
	case n < 1:
		err = fmt.Errorf("shard count %d: must be at least 1", n)
	case c.ttl <= 0:
		err = fmt.Errorf("lease TTL %v is not positive", c.ttl)
	case c.interval <= 0:
		err = fmt.Errorf("renew interval %v is not positive", c.interval)
	case c.ttl <= c.interval:
		err = fmt.Errorf("lease TTL %v is not larger than the renew interval %v", c.ttl, c.interval)
	default:
		if err = checkLeaseText("consumer name", name); err == nil && c.owner != "" {
			err = checkLeaseText("owner ID", c.owner)
		}
	}
	if err != nil {
		return c, fmt.Errorf("%w: %s: %w", ErrInvalidLease, what, err)
	}
	if c.owner == "" {
		c.owner = newOwnerID()
	}
	return c, nil
}

// checkLeaseText checks a name or owner ID: non-empty, valid UTF-8, at
// most maxLeaseName bytes.
func checkLeaseText(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s", what)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %.64q is not valid UTF-8", what, s)
	case len(s) > maxLeaseName:
		return fmt.Errorf("%s %.64q... is %d bytes, longer than %d", what, s, len(s), maxLeaseName)
	}
	return nil
}

// stopMargin is how long before a lease could expire its holder stops
// using it if its renewals fail: half a renew interval, for the time a
// renewal takes to reach the store and for clock rate differences.
func (c *leaseConfig) stopMargin() time.Duration { return c.interval / 2 }

// opTimeout bounds each call to the lease store: a call that takes longer
// than a renew interval is overtaken by the next tick.
func (c *leaseConfig) opTimeout() time.Duration { return c.interval }

// newOwnerID returns a default owner ID: host, process and random suffix.
func newOwnerID() string {
	host, _ := os.Hostname()
	if len(host) > 64 || !utf8.ValidString(host) {
		host = host[:0]
	}
	if host == "" {
		host = "host"
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
}
