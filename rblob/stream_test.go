package rblob_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/metrics"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// testBackoff keeps tailing tests quick; it is not a timing assertion.
const testBackoff = 5 * time.Millisecond

func memBucket(t testing.TB) *blob.Bucket {
	b := memblob.OpenBucket(nil)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func fileBucket(t testing.TB) (*blob.Bucket, string) {
	dir := t.TempDir()
	b, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatalf("fileblob.OpenBucket: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, dir
}

func write(t testing.TB, b *blob.Bucket, key, data string) {
	t.Helper()
	if err := b.WriteAll(context.Background(), key, []byte(data), nil); err != nil {
		t.Fatalf("WriteAll(%q): %v", key, err)
	}
}

// lineDecoder is a Decoder of base64 lines, so records can hold any bytes
// (the conformance suite's metadata is binary and sometimes empty). A last
// line without its newline is a truncated record.
type lineDecoder struct{ r *bufio.Reader }

func newLineDecoder(r io.Reader) (rblob.Decoder, error) {
	return lineDecoder{r: bufio.NewReader(r)}, nil
}

func (d lineDecoder) Decode() ([]byte, error) {
	line, err := d.r.ReadBytes('\n')
	if errors.Is(err, io.EOF) {
		if len(line) == 0 {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("truncated line %q", line)
	}
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.AppendDecode(nil, bytes.TrimSuffix(line, []byte("\n")))
}

// appender returns a reflextest.Appender that writes each call's events as
// one new object, encoding each event with enc.
func appender(b *blob.Bucket, enc func(i int, e reflex.Event) string) reflextest.Appender {
	var (
		mu      sync.Mutex
		objects int
		events  int
	)
	return func(t *testing.T, evs ...reflex.Event) {
		t.Helper()
		if len(evs) == 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		var sb strings.Builder
		for _, e := range evs {
			events++
			sb.WriteString(enc(events, e))
		}
		objects++
		write(t, b, fmt.Sprintf("obj-%06d", objects), sb.String())
	}
}

func encodeLine(_ int, e reflex.Event) string {
	return base64.StdEncoding.EncodeToString(e.MetaData) + "\n"
}

// encodeArchived writes events as an Archiver does, with ID i.
func encodeArchived(i int, e reflex.Event) string {
	e.ID = fmt.Sprint(i)
	e.Timestamp = time.Unix(1700000000, int64(i)).UTC()
	return rblob.EncodeRecord(&e)
}

// archivedStream maps every event's fields but its ID (the cursor) to
// those of the archived event its record holds.
func archivedStream(stream reflex.StreamFunc) reflex.StreamFunc {
	return func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
		cl, err := stream(ctx, after, opts...)
		if err != nil {
			return nil, err
		}
		return archivedClient{cl}, nil
	}
}

type archivedClient struct{ reflex.StreamClient }

func (c archivedClient) Recv() (*reflex.Event, error) {
	e, err := c.StreamClient.Recv()
	if err != nil {
		return nil, err
	}
	orig, err := rblob.DecodeArchived(e)
	if err != nil {
		return nil, err
	}
	orig.ID = e.ID
	return orig, nil
}

func (c archivedClient) Close() error { return c.StreamClient.(io.Closer).Close() }

var invalidCursors = []string{
	"no-separator", "a|b|c|d", "|eof", "obj-000001|1x", "obj-000001|-1",
	"obj-000001|01|01", "obj-000001|03|1", "obj-000001|1|1", "obj-000001|01|eof",
	"obj-000001|02|10",  // out of range: the object has 3 records
	"obj-000001|01|2",   // record 2 is the last: its cursor is ...|eof
	"obj-missing|01|0",  // no such object
	"obj-000000|eof|00", // four parts
}

func TestStreamConformance(t *testing.T) {
	buckets := map[string]func(t *testing.T) (*rblob.Bucket, *blob.Bucket){
		"fileblob": func(t *testing.T) (*rblob.Bucket, *blob.Bucket) {
			raw, dir := fileBucket(t)
			b, err := rblob.OpenBucket(t.Context(), "conformance", "file://"+filepath.ToSlash(dir), rblob.WithBackoff(testBackoff), rblob.WithDecoder(newLineDecoder))
			if err != nil {
				t.Fatalf("OpenBucket: %v", err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b, raw
		},
		"memblob": func(t *testing.T) (*rblob.Bucket, *blob.Bucket) {
			raw := memBucket(t)
			return rblob.NewBucket("conformance", raw, rblob.WithBackoff(testBackoff), rblob.WithDecoder(newLineDecoder)), raw
		},
	}
	for name, open := range buckets {
		// Plain streams carry the record as MetaData, and no type or
		// foreign ID.
		t.Run(name+"/records", func(t *testing.T) {
			reflextest.TestStreamFunc(t, reflextest.StreamHarness{
				New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
					b, raw := open(t)
					return b.Stream, appender(raw, encodeLine)
				},
				IgnoreType:      true,
				IgnoreForeignID: true,
				InvalidCursors:  invalidCursors,
			})
		})
		// Archived records decode to whole events (JSONDecoder, the default).
		t.Run(name+"/archived", func(t *testing.T) {
			reflextest.TestStreamFunc(t, reflextest.StreamHarness{
				New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
					_, raw := open(t)
					b := rblob.NewBucket("conformance", raw, rblob.WithBackoff(testBackoff))
					return archivedStream(b.Stream), appender(raw, encodeArchived)
				},
				InvalidCursors: invalidCursors,
			})
		})
	}
}

func testdataBucket(t *testing.T, prefix string) *rblob.Bucket {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatalf("fileblob.OpenBucket: %v", err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	if prefix != "" {
		raw = blob.PrefixedBucket(raw, prefix)
	}
	// luno/reflex's test data holds empty objects.
	return rblob.NewBucket("testdata", raw, rblob.WithEmptyObjects())
}

// drain reads a to-head stream to the end.
func drain(t *testing.T, stream reflex.StreamFunc, after string, opts ...reflex.StreamOption) []*reflex.Event {
	t.Helper()
	cl, err := stream(t.Context(), after, append(opts, reflex.WithStreamToHead())...)
	if err != nil {
		t.Fatalf("Stream(%q): %v", after, err)
	}
	defer cl.(io.Closer).Close()
	var out []*reflex.Event
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			return out
		}
		if err != nil {
			t.Fatalf("Recv after %d events: %v", len(out), err)
		}
		out = append(out, e)
	}
}

func records(events []*reflex.Event) string {
	var s []string
	for _, e := range events {
		s = append(s, string(e.MetaData))
	}
	return strings.Join(s, ",")
}

// TestVectors runs luno/reflex's test vectors over testdata: 7 records in 5
// objects, 2 of them empty.
func TestVectors(t *testing.T) {
	all := testdataBucket(t, "")
	got := drain(t, all.Stream, "")
	wantIDs := []string{
		"01/a-1to3.json|01|0", "01/a-1to3.json|01|1", "01/a-1to3.json|eof",
		"02/a-4to6.json|01|0", "02/a-4to6.json|01|1", "02/a-4to6.json|eof",
		"03/a-7.json|eof",
	}
	if len(got) != len(wantIDs) {
		t.Fatalf("got %d events (%s), want 7", len(got), records(got))
	}
	for i, e := range got {
		if e.ID != wantIDs[i] || string(e.MetaData) != fmt.Sprint(i+1) {
			t.Errorf("event %d = {ID %q, MetaData %q}, want {%q, %q}", i, e.ID, e.MetaData, wantIDs[i], fmt.Sprint(i+1))
		}
		if e.Type == nil || e.Type.ReflexType() != 0 || e.ForeignID != "" {
			t.Errorf("event %d: Type %v, ForeignID %q, want 0 and empty", i, e.Type, e.ForeignID)
		}
		if i > 0 && e.ID <= got[i-1].ID {
			t.Errorf("cursor %q does not sort after %q", e.ID, got[i-1].ID)
		}
	}
	fi, err := os.Stat(filepath.Join("testdata", "02", "a-4to6.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !got[3].Timestamp.Equal(fi.ModTime()) {
		t.Errorf("Timestamp = %v, want the object's modification time %v", got[3].Timestamp, fi.ModTime())
	}

	tests := []struct {
		name, prefix, after, want string
	}{
		{"after eof", "", "01/a-1to3.json|eof", "4,5,6,7"},
		{"after legacy offset", "", "02/a-4to6.json|0", "5,6,7"},
		{"after offset", "", "02/a-4to6.json|01|1", "6,7"},
		{"after last", "", "03/a-7.json|eof", ""},
		{"after key prefix eof", "", "02|eof", "4,5,6,7"},
		{"after empty object", "", "01/b-empty.json|eof", "4,5,6,7"},
		{"after past all", "", "04|eof", ""},
		{"directory prefix", "01/", "", "1,2,3"},
		{"file name prefix", "0", "", "1,2,3,4,5,6,7"},
		{"file name fragment", "02/a", "", "4,5,6"},
		{"fragment to empty object", "01/b", "", ""},
		{"prefix and cursor", "02/", "a-4to6.json|01|0", "5,6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := testdataBucket(t, tc.prefix)
			if got := records(drain(t, b.Stream, tc.after)); got != tc.want {
				t.Errorf("prefix %q after %q: got records %q, want %q", tc.prefix, tc.after, got, tc.want)
			}
		})
	}
}

func TestOpenBucketURLPrefix(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	b, err := rblob.OpenBucket(t.Context(), "url", "file://"+filepath.ToSlash(dir)+"?prefix=02/a-", rblob.WithBackoff(time.Second))
	if err != nil {
		t.Fatalf("OpenBucket: %v", err)
	}
	if got := records(drain(t, b.Stream, "")); got != "4,5,6" {
		t.Errorf("got records %q, want 4,5,6", got)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := drainErr(t, b.Stream, ""); err == nil {
		t.Error("stream of a closed bucket: want an error")
	}
}

func drainErr(t *testing.T, stream reflex.StreamFunc, after string, opts ...reflex.StreamOption) ([]*reflex.Event, error) {
	t.Helper()
	cl, err := stream(t.Context(), after, append(opts, reflex.WithStreamToHead())...)
	if err != nil {
		return nil, err
	}
	defer cl.(io.Closer).Close()
	var out []*reflex.Event
	for {
		e, err := cl.Recv()
		if reflex.IsHeadReachedErr(err) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := rblob.OpenBucket(t.Context(), "x", "nosuchscheme://b"); err == nil {
		t.Error("OpenBucket with an unknown scheme: want an error")
	}
	if _, err := rblob.OpenBucket(t.Context(), "x", "mem://", rblob.WithBackoff(0)); err == nil || !strings.Contains(err.Error(), "WithBackoff") {
		t.Errorf("OpenBucket with zero backoff = %v, want an error naming WithBackoff", err)
	}
	if _, err := rblob.OpenBucket(t.Context(), "x", "mem://", rblob.WithDecoder(nil)); err == nil {
		t.Error("OpenBucket with a nil decoder: want an error")
	}
	mustPanic(t, "NewBucket(nil bucket)", func() { rblob.NewBucket("x", nil) })
	mustPanic(t, "NewBucket(negative backoff)", func() { rblob.NewBucket("x", memBucket(t), rblob.WithBackoff(-time.Second)) })
	mustPanic(t, "NewBucket(nil option)", func() { rblob.NewBucket("x", memBucket(t), nil) })

	b := rblob.NewBucket("x", memBucket(t))
	if _, err := b.Stream(t.Context(), "", reflex.WithStreamLag(-time.Second)); err == nil {
		t.Error("Stream with a negative lag: want an error")
	}
	if _, err := b.Stream(t.Context(), "", nil); err == nil {
		t.Error("Stream with a nil option: want an error")
	}
	for _, c := range []string{"x", "a|b|c|d", "|eof", strings.Repeat("k", 1000) + "|x"} {
		_, err := b.Stream(t.Context(), c)
		if !errors.Is(err, rblob.ErrInvalidCursor) || !errors.Is(err, reflex.ErrInvalidCursor) {
			t.Errorf("Stream(%q) = %v, want rblob.ErrInvalidCursor and reflex.ErrInvalidCursor", c, err)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("Stream(%.20q...) error is %d bytes long: the cursor is not cut", c, len(err.Error()))
		}
	}
}

// TestObjectWrittenBeforeListedOne: an object that appears below an object
// the stream listed but has not read yet (written out of key order) ends
// the stream with ErrOutOfOrder once the listed objects are read. (luno/reflex
// lists before each object and would read it first.)
func TestObjectWrittenBeforeListedOne(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "a", "1")
	write(t, raw, "c", "3")
	b := rblob.NewBucket("order-listed", raw)
	cl, err := b.Stream(t.Context(), "", reflex.WithStreamToHead())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	if e, err := cl.Recv(); err != nil || e.ID != "a|eof" {
		t.Fatalf("Recv = %v, %v; want a|eof", e, err)
	}
	write(t, raw, "b", "2") // below c, which the stream listed with a
	if e, err := cl.Recv(); err != nil || e.ID != "c|eof" {
		t.Fatalf("Recv = %v, %v; want c|eof, as listed", e, err)
	}
	_, err = cl.Recv()
	checkObjectErr(t, err, "b", -1, rblob.ErrOutOfOrder, "")
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r == nil {
			t.Errorf("%s did not panic", what)
		} else if !strings.HasPrefix(fmt.Sprint(r), "rblob: ") {
			t.Errorf("%s panicked with %q, want an rblob: prefix", what, r)
		}
	}()
	f()
}

func TestPickupNewObjects(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "a", "1 2")
	b := rblob.NewBucket("pickup", raw, rblob.WithBackoff(testBackoff), rblob.WithEmptyObjects())
	cl, err := b.Stream(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	for _, want := range []string{"a|01|0", "a|eof"} {
		if e, err := cl.Recv(); err != nil || e.ID != want {
			t.Fatalf("Recv = %v, %v; want %q", e, err, want)
		}
	}
	// Written while the stream waits: an empty object, then one with records.
	write(t, raw, "b", "")
	write(t, raw, "c", `{"x":3}`)
	e, err := cl.Recv()
	if err != nil || e.ID != "c|eof" || string(e.MetaData) != `{"x":3}` {
		t.Fatalf("Recv = %+v, %v; want c|eof {\"x\":3}", e, err)
	}
}

// TestMalformed checks that bad objects end the stream with an error naming
// the object and record, after the good records before them.
func TestMalformed(t *testing.T) {
	tests := []struct {
		name    string
		objects map[string]string
		after   string
		good    string // records delivered before the error
		key     string
		offset  int
		is      error
		msg     string
	}{
		{name: "truncated line", objects: map[string]string{"a": "{\"n\":1}\n{\"n\":"},
			key: "a", offset: 1, is: io.ErrUnexpectedEOF, msg: "truncated"},
		{name: "truncated after good records", objects: map[string]string{"a": "1\n2\n3\n", "b": "4\n5\n[6,"},
			good: "1,2,3,4", key: "b", offset: 2, is: io.ErrUnexpectedEOF},
		{name: "invalid JSON", objects: map[string]string{"a": "1\n2\n{x}\n4\n"},
			good: "1", key: "a", offset: 2, msg: "invalid JSON at byte"},
		{name: "invalid first record", objects: map[string]string{"a": "nope"},
			key: "a", offset: 0, msg: "invalid JSON"},
		{name: "invalid record after resume", objects: map[string]string{"a": "1 2 3 x"}, after: "a|01|0",
			good: "2", key: "a", offset: 3},
		{name: "invalid record skipped by resume", objects: map[string]string{"a": "1 x 3 4"}, after: "a|01|2",
			key: "a", offset: 1},
		{name: "pipe in key", objects: map[string]string{"a": "1", "b|c": "2"},
			good: "1", key: "b|c", offset: -1, is: rblob.ErrInvalidKey},
		{name: "cursor out of range", objects: map[string]string{"a": "1 2"}, after: "a|01|5",
			key: "a", offset: 5, is: rblob.ErrCursorOutOfRange, msg: "cursor out of range"},
		{name: "cursor was eof", objects: map[string]string{"a": "1 2"}, after: "a|01|1",
			key: "a", offset: 1, is: rblob.ErrCursorWasEOF, msg: "cursor was eof"},
		{name: "cursor object missing", objects: map[string]string{"a": "1 2"}, after: "gone|01|0",
			key: "gone", offset: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := memBucket(t)
			for k, v := range tc.objects {
				write(t, raw, k, v)
			}
			b := rblob.NewBucket("malformed", raw)
			got, err := drainErr(t, b.Stream, tc.after)
			if r := records(got); r != tc.good {
				t.Errorf("delivered %q before the error, want %q", r, tc.good)
			}
			checkObjectErr(t, err, tc.key, tc.offset, tc.is, tc.msg)
		})
	}
}

func checkObjectErr(t *testing.T, err error, key string, offset int, is error, msg string) {
	t.Helper()
	oe, ok := errors.AsType[*rblob.ObjectError](err)
	if !ok {
		t.Fatalf("error = %v, want an *rblob.ObjectError", err)
	}
	if oe.Key != key || oe.Offset != offset {
		t.Errorf("ObjectError{Key %q, Offset %d}, want {%q, %d}: %v", oe.Key, oe.Offset, key, offset, err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%q", key)) {
		t.Errorf("error %q does not name the object %q", err, key)
	}
	if offset >= 0 && !strings.Contains(err.Error(), fmt.Sprintf("record %d", offset)) {
		t.Errorf("error %q does not name record %d", err, offset)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %v does not wrap %v", err, is)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not contain %q", err, msg)
	}
}

func TestCursorObjectMissingIsNotFound(t *testing.T) {
	b := rblob.NewBucket("missing", memBucket(t))
	_, err := drainErr(t, b.Stream, "gone|eof")
	if err != nil {
		t.Fatalf("resuming after a missing object's eof: %v, want head", err)
	}
	_, err = drainErr(t, b.Stream, "gone|01|3")
	if gcerrors.Code(err) != gcerrors.NotFound {
		t.Errorf("resuming inside a missing object: %v, want a NotFound error", err)
	}
}

func TestOutOfOrderObject(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "b", "1")
	b := rblob.NewBucket("order", raw, rblob.WithBackoff(testBackoff))
	cl, err := b.Stream(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	if e, err := cl.Recv(); err != nil || e.ID != "b|eof" {
		t.Fatalf("Recv = %v, %v", e, err)
	}
	write(t, raw, "a", "0") // below the position: a writer broke key order
	write(t, raw, "c", "2")
	_, err = cl.Recv()
	checkObjectErr(t, err, "a", -1, rblob.ErrOutOfOrder, "")
	if _, err2 := cl.Recv(); !errors.Is(err2, rblob.ErrOutOfOrder) {
		t.Errorf("second Recv = %v, want the same sticky error", err2)
	}
}

func TestDeletedObjectsAreFine(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "a", "1")
	write(t, raw, "b", "2")
	b := rblob.NewBucket("trim", raw, rblob.WithBackoff(testBackoff))
	cl, err := b.Stream(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	for range 2 {
		if _, err := cl.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Delete(t.Context(), "a"); err != nil { // trimmed history
		t.Fatal(err)
	}
	write(t, raw, "c", "3")
	if e, err := cl.Recv(); err != nil || e.ID != "c|eof" {
		t.Fatalf("Recv = %v, %v; want c|eof", e, err)
	}
}

func TestClientClose(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "a", "1 2 3")
	b := rblob.NewBucket("close", raw, rblob.WithBackoff(time.Hour))

	cl, err := b.Stream(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Recv(); err != nil {
		t.Fatal(err)
	}
	c := cl.(io.Closer)
	for i := range 2 {
		if err := c.Close(); err != nil {
			t.Errorf("Close %d = %v, want nil", i+1, err)
		}
	}
	_, err = cl.Recv()
	if !errors.Is(err, rblob.ErrClientClosed) || !errors.Is(err, context.Canceled) {
		t.Errorf("Recv after Close = %v, want ErrClientClosed, which is context.Canceled", err)
	}

	// Close ends a Recv blocked waiting for new objects.
	cl, err = b.Stream(t.Context(), "a|eof")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := cl.Recv()
		errc <- err
	}()
	_ = cl.(io.Closer).Close()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("blocked Recv after Close = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end a blocked Recv") // hang guard
	}
}

// blockingDriver blocks opening one object until the open's context ends.
type blockingDriver struct {
	*startAfterDriver
	block    string
	entered  chan struct{}
	inFlight atomic.Int32
}

func (d *blockingDriver) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	if key != d.block {
		return d.startAfterDriver.NewRangeReader(ctx, key, offset, length, opts)
	}
	d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	d.entered <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCloseWaitsForReadAhead: the goroutine that opens the next object
// ahead is owned by the client: Close (and a Recv error) cancels it and
// returns only once it has exited.
func TestCloseWaitsForReadAhead(t *testing.T) {
	for _, end := range []string{"Close", "Recv error"} {
		t.Run(end, func(t *testing.T) {
			d := &blockingDriver{block: "b", entered: make(chan struct{}, 1)}
			d.startAfterDriver = &startAfterDriver{objects: map[string][]byte{"a": []byte("1"), "b": []byte("2")}}
			raw := blob.NewBucket(d)
			defer raw.Close()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			cl, err := rblob.NewBucket("read-ahead", raw).Stream(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if e, err := cl.Recv(); err != nil || e.ID != "a|eof" {
				t.Fatalf("Recv = %v, %v; want a|eof", e, err)
			}
			select {
			case <-d.entered: // the read-ahead of b is blocked in the driver
			case <-time.After(2 * time.Minute):
				t.Fatal("the next object was not read ahead") // hang guard
			}
			if end == "Close" {
				if err := cl.(io.Closer).Close(); err != nil {
					t.Fatalf("Close = %v", err)
				}
			} else {
				cancel()
				if _, err := cl.Recv(); !errors.Is(err, context.Canceled) {
					t.Fatalf("Recv after cancel = %v, want context.Canceled", err)
				}
			}
			if n := d.inFlight.Load(); n != 0 {
				t.Errorf("%s returned with the read-ahead still in the driver (%d)", end, n)
			}
			_ = cl.(io.Closer).Close()
		})
	}
}

// TestCloseConcurrent: Close is safe concurrently and returns nil every
// time; Recv then returns an error that is context.Canceled.
func TestCloseConcurrent(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "a", "1 2 3")
	write(t, raw, "b", "4")
	cl, err := rblob.NewBucket("close-concurrent", raw).Stream(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Recv(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := cl.(io.Closer).Close(); err != nil {
				t.Errorf("Close = %v, want nil", err)
			}
		})
	}
	wg.Wait()
	for range 2 {
		if _, err := cl.Recv(); !errors.Is(err, context.Canceled) || !errors.Is(err, rblob.ErrClientClosed) {
			t.Errorf("Recv after Close = %v, want ErrClientClosed (context.Canceled)", err)
		}
	}
}

func TestStickyContextError(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "a", "1 2 3")
	b := rblob.NewBucket("ctx", raw)
	ctx, cancel := context.WithCancel(t.Context())
	cl, err := b.Stream(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	if _, err := cl.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for range 2 {
		if _, err := cl.Recv(); !errors.Is(err, context.Canceled) {
			t.Errorf("Recv after cancel = %v, want context.Canceled", err)
		}
	}
}

func TestFromHead(t *testing.T) {
	raw := memBucket(t)
	b := rblob.NewBucket("head", raw, rblob.WithBackoff(testBackoff))
	// Empty bucket: from the beginning.
	cl, err := b.Stream(t.Context(), "", reflex.WithStreamFromHead())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	write(t, raw, "a", "1")
	if e, err := cl.Recv(); err != nil || e.ID != "a|eof" {
		t.Fatalf("Recv = %v, %v; want a|eof", e, err)
	}
	// Resolved at Stream: objects written before are skipped, even with a
	// cursor before them.
	write(t, raw, "b", "2 3")
	cl2, err := b.Stream(t.Context(), "a|01|0", reflex.WithStreamFromHead())
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.(io.Closer).Close()
	write(t, raw, "c", "4")
	if e, err := cl2.Recv(); err != nil || e.ID != "c|eof" {
		t.Fatalf("Recv = %v, %v; want c|eof", e, err)
	}
}

func TestMetrics(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "a", "1 2 3") // 5 bytes
	write(t, raw, "b", "")
	write(t, raw, "c", "4 x") // 3 bytes, malformed
	b := rblob.NewBucket("metrics-test", raw, rblob.WithEmptyObjects())
	m := metrics.NewRBlob("metrics-test")
	values := func() map[string]float64 {
		return map[string]float64{
			"read":          counterValue(t, m.Read),
			"bytes":         counterValue(t, m.ReadBytes),
			"decode errors": counterValue(t, m.DecodeErrors),
			"list skip":     counterValue(t, m.ListSkip),
		}
	}
	before := values() // earlier runs (-count) add up

	_, err := drainErr(t, b.Stream, "")
	checkObjectErr(t, err, "c", 1, nil, "invalid JSON")
	want := map[string]float64{"read": 3, "bytes": 8, "decode errors": 1, "list skip": 0}
	got := values()
	for k, w := range want {
		if got[k]-before[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k]-before[k], w)
		}
	}

	// Resuming after b lists a and b, skipped client-side.
	_, _ = drainErr(t, b.Stream, "b|eof")
	if got := counterValue(t, m.ListSkip) - before["list skip"]; got != 2 {
		t.Errorf("list skip = %v after resuming after b, want 2", got)
	}
}

// TestKeyOrderAcrossDirectories: fileblob walks directories, so it lists
// "x/1" and "x/2" around "x-3" although "x-3" sorts first; the stream
// follows key order, as cursors do.
func TestKeyOrderAcrossDirectories(t *testing.T) {
	raw, _ := fileBucket(t)
	write(t, raw, "x/1", "1")
	write(t, raw, "x/2", "2")
	write(t, raw, "x-3", "3")
	write(t, raw, "x0", "4")
	b := rblob.NewBucket("order", raw)
	if got := records(drain(t, b.Stream, "")); got != "3,1,2,4" {
		t.Errorf("records %q, want 3,1,2,4 (keys x-3, x/1, x/2, x0)", got)
	}
	if got := records(drain(t, b.Stream, "x-3|eof")); got != "1,2,4" {
		t.Errorf("after x-3: records %q, want 1,2,4", got)
	}
}

func TestEmptyObjectIsError(t *testing.T) {
	raw := memBucket(t)
	write(t, raw, "a", "1 2")
	write(t, raw, "b", "")
	write(t, raw, "c", "3")
	got, err := func() ([]string, error) {
		cl, err := rblob.NewBucket("empty", raw).Stream(t.Context(), "", reflex.WithStreamToHead())
		if err != nil {
			return nil, err
		}
		defer cl.(io.Closer).Close()
		var ids []string
		for {
			e, err := cl.Recv()
			if err != nil {
				return ids, err
			}
			ids = append(ids, e.ID)
		}
	}()
	if !errors.Is(err, rblob.ErrEmptyObject) {
		t.Fatalf("Recv error = %v, want ErrEmptyObject", err)
	}
	var oe *rblob.ObjectError
	if !errors.As(err, &oe) || oe.Key != "b" || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("error %v does not name the empty object \"b\"", err)
	}
	if strings.Join(got, ",") != "a|01|0,a|eof" {
		t.Errorf("events before the error = %v, want a|01|0, a|eof", got)
	}
	// With WithEmptyObjects the same bucket streams to its head.
	all := drain(t, rblob.NewBucket("empty-ok", raw, rblob.WithEmptyObjects()).Stream, "")
	if len(all) != 3 || all[2].ID != "c|eof" {
		t.Errorf("WithEmptyObjects: got %d events, want 3 ending at c|eof", len(all))
	}
}
