package rblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"gocloud.dev/blob"

	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// DefaultBackoff is how long a stream waits before listing the bucket again
// when it found no newer object.
const DefaultBackoff = time.Minute

// StartAfterFunc is a driver-specific list hook for WithListStartAfter. It
// is called before each list request with the driver's As function (see
// blob.ListOptions.BeforeList) and the key the listing may start after,
// relative to the bucket view; it reports whether it could tell the driver
// to skip keys up to and including after. It must prepend any prefix the
// driver request already carries (for S3, the request's Prefix, which holds
// a "prefix" URL parameter) rather than joining paths, so that prefixes
// ending in the middle of a file name work.
type StartAfterFunc func(as func(any) bool, after string) bool

// Option configures a Bucket: pass options to OpenBucket or NewBucket,
// which apply them once, before the Bucket is used, and then validate the
// result. An option of one's own is a function that applies others:
//
//	func withTail(b *rblob.Bucket) { rblob.WithBackoff(5 * time.Second)(b) }
//
// Applying an option to a Bucket already in use is not supported.
type Option func(*Bucket)

type config struct {
	backoff    time.Duration
	decoder    func(io.Reader) (Decoder, error)
	startAfter StartAfterFunc
	allowEmpty bool
}

// WithEmptyObjects makes streams accept objects that hold no records: they
// emit nothing, as luno/reflex does (whose test data holds empty
// objects). By default an empty object ends the stream with an
// *ObjectError wrapping ErrEmptyObject, because in an append-only log of
// events an object without records is usually a failed or truncated write.
func WithEmptyObjects() Option {
	return func(b *Bucket) { b.cfg.allowEmpty = true }
}

// WithBackoff sets how long a stream waits before listing the bucket again
// when no newer object exists (and WithStreamToHead is not set). The
// default is DefaultBackoff (1 minute); listing costs a request per page of
// keys, so keep it well above a second for cloud buckets. d must be
// positive.
func WithBackoff(d time.Duration) Option {
	return func(b *Bucket) { b.cfg.backoff = d }
}

// WithDecoder sets how Stream splits objects into records: fn is called
// with each object's reader. The default is JSONDecoder (concatenated JSON
// values or JSON lines). fn must not be nil. StreamArchived does not use
// it: archive objects are always JSON lines.
func WithDecoder(fn func(io.Reader) (Decoder, error)) Option {
	return func(b *Bucket) { b.cfg.decoder = fn }
}

// WithListStartAfter sets a driver-specific hook that asks the driver to
// list only keys after the stream's position, saving the listing of the
// keys before it. rblob still skips keys at or before its position itself,
// so a hook that reports false (a driver it does not know) changes nothing;
// with an accepted hook, keys before the position are not seen, so objects
// written there out of order are not detected (see ErrOutOfOrder). The
// default is no hook: rblob imports no driver types. For S3 (aws-sdk-go-v2):
//
//	rblob.WithListStartAfter(func(as func(any) bool, after string) bool {
//		var in *s3.ListObjectsV2Input
//		if !as(&in) {
//			return false
//		}
//		in.StartAfter = aws.String(aws.ToString(in.Prefix) + after)
//		return true
//	})
func WithListStartAfter(fn StartAfterFunc) Option {
	return func(b *Bucket) { b.cfg.startAfter = fn }
}

// Bucket streams the events of a bucket: see Stream. It is safe for
// concurrent use.
type Bucket struct {
	label   string
	bucket  *blob.Bucket
	owned   bool
	cfg     config
	metrics *metrics.RBlob

	closeOnce sync.Once
	closeErr  error
}

// OpenBucket opens the bucket at a gocloud.dev URL, such as
// "file:///var/events", "mem://" or "s3://bucket?region=eu-west-1&prefix=2024/"
// (the driver package must be imported by the caller, for example
// _ "gocloud.dev/blob/fileblob"). A "prefix" parameter restricts the stream
// to keys starting with it; it may end in the middle of a file name. label
// names the bucket in metrics. Close closes the opened bucket. It returns
// an error if the URL cannot be opened or an option is invalid.
func OpenBucket(ctx context.Context, label, url string, opts ...Option) (*Bucket, error) {
	b, err := newBucket(label, nil, true, opts)
	if err != nil {
		return nil, err
	}
	if b.bucket, err = blob.OpenBucket(ctx, url); err != nil {
		return nil, fmt.Errorf("rblob: open bucket %q: %w", label, err)
	}
	return b, nil
}

// NewBucket returns a Bucket streaming from b, which the caller keeps
// owning: Close does not close it. label names the bucket in metrics. It
// panics (a programming error) if an option is invalid.
func NewBucket(label string, b *blob.Bucket, opts ...Option) *Bucket {
	if b == nil {
		panic("rblob: NewBucket: nil *blob.Bucket")
	}
	bb, err := newBucket(label, b, false, opts)
	if err != nil {
		panic(err.Error())
	}
	return bb
}

// newBucket applies the defaults, then opts, and validates the result.
func newBucket(label string, raw *blob.Bucket, owned bool, opts []Option) (*Bucket, error) {
	b := &Bucket{label: label, bucket: raw, owned: owned, cfg: config{backoff: DefaultBackoff, decoder: JSONDecoder}}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("rblob: option %d is nil", i)
		}
		o(b)
	}
	switch {
	case b.cfg.backoff <= 0:
		return nil, fmt.Errorf("rblob: WithBackoff(%v): backoff must be positive", b.cfg.backoff)
	case b.cfg.decoder == nil:
		return nil, errors.New("rblob: WithDecoder(nil)")
	}
	b.metrics = metrics.NewRBlob(label)
	return b, nil
}

// Close closes the underlying bucket if OpenBucket opened it; streams still
// open then fail. It is idempotent and safe for concurrent use: every call
// returns the first call's result.
func (b *Bucket) Close() error {
	b.closeOnce.Do(func() {
		if b.owned {
			b.closeErr = b.bucket.Close()
		}
	})
	return b.closeErr
}
