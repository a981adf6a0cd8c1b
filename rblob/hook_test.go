package rblob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"

	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/rblob"
)

// listRequest is the driver-specific list request of startAfterDriver,
// standing in for S3's ListObjectsV2Input.
type listRequest struct {
	Prefix     string
	StartAfter string
}

// startAfterDriver is a read-mostly in-memory driver.Bucket that, like S3,
// calls BeforeList with its own request type and honours StartAfter.
type startAfterDriver struct {
	accept bool // whether As accepts **listRequest

	mu      sync.Mutex // protects the following fields
	objects map[string][]byte
	lists   []listRequest
}

func newStartAfterBucket(t *testing.T, accept bool, objects map[string]string) (*blob.Bucket, *startAfterDriver) {
	d := &startAfterDriver{accept: accept, objects: map[string][]byte{}}
	for k, v := range objects {
		d.objects[k] = []byte(v)
	}
	b := blob.NewBucket(d)
	t.Cleanup(func() { _ = b.Close() })
	return b, d
}

var modTime = time.Unix(1700000000, 0)

func (d *startAfterDriver) ErrorCode(err error) gcerrors.ErrorCode {
	if errors.Is(err, os.ErrNotExist) {
		return gcerrors.NotFound
	}
	return gcerrors.Unknown
}
func (d *startAfterDriver) As(any) bool             { return false }
func (d *startAfterDriver) ErrorAs(error, any) bool { return false }

func (d *startAfterDriver) Attributes(_ context.Context, key string) (*driver.Attributes, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, ok := d.objects[key]
	if !ok {
		return nil, os.ErrNotExist
	}
	return &driver.Attributes{ModTime: modTime, Size: int64(len(data))}, nil
}

func (d *startAfterDriver) ListPaged(_ context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	req := listRequest{Prefix: opts.Prefix}
	if opts.BeforeList != nil {
		err := opts.BeforeList(func(i any) bool {
			p, ok := i.(**listRequest)
			if !ok || !d.accept {
				return false
			}
			*p = &req
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lists = append(d.lists, req)
	var page driver.ListPage
	for k, v := range d.objects {
		if strings.HasPrefix(k, req.Prefix) && k > req.StartAfter {
			page.Objects = append(page.Objects, &driver.ListObject{Key: k, ModTime: modTime, Size: int64(len(v))})
		}
	}
	slices.SortFunc(page.Objects, func(a, b *driver.ListObject) int { return strings.Compare(a.Key, b.Key) })
	return &page, nil
}

func (d *startAfterDriver) NewRangeReader(_ context.Context, key string, offset, length int64, _ *driver.ReaderOptions) (driver.Reader, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, ok := d.objects[key]
	if !ok {
		return nil, os.ErrNotExist
	}
	data = data[offset:]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return &memReader{Reader: bytes.NewReader(data), attrs: driver.ReaderAttributes{ModTime: modTime, Size: int64(len(data))}}, nil
}

func (d *startAfterDriver) NewTypedWriter(context.Context, string, string, *driver.WriterOptions) (driver.Writer, error) {
	return nil, errors.New("read-only")
}
func (d *startAfterDriver) Copy(context.Context, string, string, *driver.CopyOptions) error {
	return errors.New("read-only")
}
func (d *startAfterDriver) Delete(context.Context, string, *driver.DeleteOptions) error {
	return errors.New("read-only")
}
func (d *startAfterDriver) SignedURL(context.Context, string, *driver.SignedURLOptions) (string, error) {
	return "", errors.New("unsupported")
}
func (d *startAfterDriver) Close() error { return nil }

func (d *startAfterDriver) requests() []listRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.lists)
}

type memReader struct {
	*bytes.Reader
	attrs driver.ReaderAttributes
}

func (r *memReader) Close() error                         { return nil }
func (r *memReader) Attributes() *driver.ReaderAttributes { return &r.attrs }
func (r *memReader) As(any) bool                          { return false }

var _ io.ReadCloser = (*memReader)(nil)

// startAfter is the hook a user would write for S3, written for the fake
// driver's request type.
func startAfter(as func(any) bool, after string) bool {
	var req *listRequest
	if !as(&req) {
		return false
	}
	req.StartAfter = req.Prefix + after
	return true
}

func TestListStartAfter(t *testing.T) {
	objects := map[string]string{
		"logs/a": "1", "logs/b": "2", "logs/c": "3",
		"logs-x/a": "9", // outside the file-name prefix "logs/" but inside "logs"
	}
	tests := []struct {
		name      string
		accept    bool
		prefix    string
		after     string
		want      string
		wantStart []string // StartAfter of each list request
		wantSkip  float64
	}{
		{name: "accepted", accept: true, prefix: "logs/", after: "a|eof", want: "2,3",
			wantStart: []string{"logs/a", "logs/c"}},
		{name: "accepted, file name fragment prefix", accept: true, prefix: "log", after: "s/a|eof", want: "2,3",
			wantStart: []string{"logs/a", "logs/c"}},
		{name: "accepted, from the start", accept: true, prefix: "log", want: "9,1,2,3",
			wantStart: []string{"", "logs/c"}},
		{name: "rejected", accept: false, prefix: "logs/", after: "a|eof", want: "2,3",
			wantStart: []string{"", ""}, wantSkip: 1 + 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, d := newStartAfterBucket(t, tc.accept, objects)
			label := "hook-" + tc.name
			b := rblob.NewBucket(label, blob.PrefixedBucket(raw, tc.prefix), rblob.WithListStartAfter(startAfter))
			skipped := counterValue(t, metrics.NewRBlob(label).ListSkip) // earlier runs (-count) add up
			if got := records(drain(t, b.Stream, tc.after)); got != tc.want {
				t.Errorf("records = %q, want %q", got, tc.want)
			}
			var starts []string
			for _, r := range d.requests() {
				starts = append(starts, r.StartAfter)
			}
			if !slices.Equal(starts, tc.wantStart) {
				t.Errorf("StartAfter of list requests = %q, want %q", starts, tc.wantStart)
			}
			if got := counterValue(t, metrics.NewRBlob(label).ListSkip) - skipped; got != tc.wantSkip {
				t.Errorf("reflex_rblob_list_skip_total = %v, want %v", got, tc.wantSkip)
			}
		})
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	return m.GetCounter().GetValue()
}
