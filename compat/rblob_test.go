package compat_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rblob"
)

// luno/reflex's rblob API, with the types its users' code names.
var (
	_ func(context.Context, string, string, ...rblob.Option) (*rblob.Bucket, error)                     = rblob.OpenBucket
	_ func(string, *blob.Bucket, ...rblob.Option) *rblob.Bucket                                         = rblob.NewBucket
	_ func(time.Duration) rblob.Option                                                                  = rblob.WithBackoff
	_ func(func(io.Reader) (rblob.Decoder, error)) rblob.Option                                         = rblob.WithDecoder
	_ func(*rblob.Bucket) error                                                                         = (*rblob.Bucket).Close
	_ func(*rblob.Bucket, context.Context, string, ...reflex.StreamOption) (reflex.StreamClient, error) = (*rblob.Bucket).Stream

	// Option is a func(*Bucket); JSONDecoder a value of the decoder
	// function type, as in luno/reflex.
	_ func(*rblob.Bucket)                           = rblob.Option(nil)
	_ func(io.Reader) (rblob.Decoder, error)        = rblob.JSONDecoder
	_ interface{ Decode() ([]byte, error) }         = rblob.Decoder(nil)
	_ rblob.Decoder                                 = lineDecoder{}
	_ func() func(io.Reader) (rblob.Decoder, error) = func() func(io.Reader) (rblob.Decoder, error) {
		// JSONDecoder is a variable, as in luno/reflex.
		old := rblob.JSONDecoder
		rblob.JSONDecoder = old
		return old
	}
)

// lineDecoder is a user's own Decoder: one record per line.
type lineDecoder struct{ s *bufio.Scanner }

func (d lineDecoder) Decode() ([]byte, error) {
	if !d.s.Scan() {
		if err := d.s.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	return append([]byte(nil), d.s.Bytes()...), nil
}

func newLineDecoder(r io.Reader) (rblob.Decoder, error) {
	return lineDecoder{s: bufio.NewScanner(r)}, nil
}

// withQuickTail is a user's own option, composed of rblob's.
func withQuickTail(b *rblob.Bucket) {
	rblob.WithBackoff(time.Millisecond)(b)
}

// TestRBlob uses the bucket as luno/reflex's users do: options of their
// own, the default JSONDecoder passed as a value, a Decoder of their own,
// the stream as a reflex.StreamFunc and its client as an io.Closer.
func TestRBlob(t *testing.T) {
	ctx := context.Background()
	raw := memblob.OpenBucket(nil)
	defer raw.Close()
	if err := raw.WriteAll(ctx, "2026/05/01/a", []byte(`{"n":1}`+"\n"+`{"n":2}`), nil); err != nil {
		t.Fatal(err)
	}

	var opts []rblob.Option
	opts = append(opts, withQuickTail, rblob.WithDecoder(rblob.JSONDecoder))
	var custom rblob.Option = func(b *rblob.Bucket) { rblob.WithBackoff(time.Second)(b) }
	opts = append(opts, custom)
	bucket := rblob.NewBucket("compat", raw, opts...)

	var stream reflex.StreamFunc = bucket.Stream
	cl, err := stream(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		e, err := cl.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.ID+" "+string(e.MetaData))
	}
	if want := "2026/05/01/a|01|0 {\"n\":1}"; got[0] != want {
		t.Errorf("first event %q, want %q", got[0], want)
	}
	if want := "2026/05/01/a|eof {\"n\":2}"; got[1] != want {
		t.Errorf("second event %q, want %q", got[1], want)
	}
	closer, ok := cl.(io.Closer)
	if !ok {
		t.Fatal("the stream client is not an io.Closer")
	}
	if err := closer.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := cl.Recv(); err == nil {
		t.Error("Recv after Close: want an error")
	}

	lines := rblob.NewBucket("compat-lines", raw, rblob.WithDecoder(newLineDecoder))
	cl, err = lines.Stream(ctx, "2026/05/01/a|01|0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.(io.Closer).Close()
	if e, err := cl.Recv(); err != nil || string(e.MetaData) != `{"n":2}` {
		t.Errorf("Recv with a Decoder of one's own = %v, %v", e, err)
	}

	if _, err := bucket.Stream(ctx, "no-separator"); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("Stream with an invalid cursor = %v, want an error", err)
	}
}
