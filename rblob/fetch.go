package rblob

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocloud.dev/blob"

	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

// readAheadMax caps the bytes of an object read when it is opened (ahead
// of use, for the next object of a stream): archive objects of 10,000
// events fit whole; the rest of a larger object is read as it is decoded.
const readAheadMax = 8 << 20

// readAheadHook, if positive, replaces readAheadMax: tests set it (see
// export_test.go) to make records straddle buffer ends.
var readAheadHook atomic.Int64

func readAheadLimit() int {
	if n := readAheadHook.Load(); n > 0 {
		return int(n)
	}
	return readAheadMax
}

// fetched is an object opened for reading, with its first bytes read.
type fetched struct {
	key     string
	r       *blob.Reader // nil if opening failed
	cancel  context.CancelFunc
	modTime time.Time
	buf     []byte       // the bytes read (src.buf is what is left of them)
	src     objectSource // the object's bytes, from the start
	err     error        // opening failed
	// pre and preErr are what the read-ahead goroutine prepared from the
	// object: a reader with events decoded ahead, or the error it met.
	pre    objectReader
	preErr error
}

// fetch opens key and reads up to readAheadMax bytes of it into buf (which
// it may reallocate). m, if not nil, counts the object and its bytes. The
// reader lives until release.
func fetch(ctx context.Context, b *blob.Bucket, key string, buf []byte, m *metrics.RBlob) *fetched {
	ctx, cancel := context.WithCancel(ctx)
	return fetchCtx(ctx, cancel, b, key, buf, m)
}

// fetchCtx is fetch with the reader's context; release calls cancel.
func fetchCtx(ctx context.Context, cancel context.CancelFunc, b *blob.Bucket, key string, buf []byte, m *metrics.RBlob) *fetched {
	f := &fetched{key: key, cancel: cancel}
	r, err := b.NewReader(ctx, key, nil)
	if err != nil {
		f.err = err
		return f
	}
	f.r, f.modTime = r, r.ModTime()
	var bytesRead prometheus.Counter
	if m != nil {
		m.Read.Inc()
		bytesRead = m.ReadBytes
	}
	// One byte more than the object, so that the read that finds its end
	// needs no second buffer.
	want := int(min(max(r.Size(), 0), int64(readAheadLimit()))) + 1
	if cap(buf) < want {
		buf = make([]byte, 0, want+want/8)
	}
	buf = buf[:0]
	for len(buf) < want {
		n, err := r.Read(buf[len(buf):want])
		buf = buf[:len(buf)+n]
		if err != nil {
			f.src.rerr = err
			break
		}
	}
	if bytesRead != nil {
		bytesRead.Add(float64(len(buf)))
	}
	f.buf = buf
	f.src.buf = buf
	if f.src.rerr == nil {
		f.src.rest = countingReader{r: r, n: bytesRead}
	}
	return f
}

// release closes the object and returns its read buffer for reuse.
func (f *fetched) release() []byte {
	if f.r != nil {
		_ = f.r.Close()
	}
	f.cancel()
	buf := f.buf
	*f = fetched{}
	if cap(buf) > readAheadMax+readAheadMax/8+1 {
		return nil
	}
	return buf[:0]
}

// objectSource is an io.Reader of an object: the bytes read ahead, then
// the rest (nil once rerr holds the error that ended the reads: io.EOF at
// the end of the object). JSONDecoder takes its bytes without copying.
type objectSource struct {
	buf  []byte
	rest io.Reader
	rerr error
}

func (s *objectSource) Read(p []byte) (int, error) {
	if len(s.buf) > 0 {
		n := copy(p, s.buf)
		s.buf = s.buf[n:]
		return n, nil
	}
	if s.rest != nil {
		return s.rest.Read(p)
	}
	if s.rerr == nil {
		return 0, io.EOF
	}
	return 0, s.rerr
}

// countingReader counts the bytes read into a metric (if not nil).
type countingReader struct {
	r io.Reader
	n prometheus.Counter
}

func (cr countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	if n > 0 && cr.n != nil {
		cr.n.Add(float64(n))
	}
	return n, err
}

// readAhead fetches one object on a goroutine of its own, owned by a
// stream client: start starts it, take waits for its result, stop cancels
// it and waits. It is used under the client's lock.
type readAhead struct {
	key    string // the object being fetched; "" when none
	cancel context.CancelFunc
	done   chan *fetched // buffered: the goroutine never blocks on it
	wg     sync.WaitGroup
}

// start fetches key; then, if prepare is not nil, it calls prepare with
// the object, on the same goroutine.
func (a *readAhead) start(ctx context.Context, b *blob.Bucket, key string, buf []byte, m *metrics.RBlob, prepare func(context.Context, *fetched)) {
	a.stop()
	ctx, cancel := context.WithCancel(ctx)
	a.key, a.cancel = key, cancel
	if a.done == nil {
		a.done = make(chan *fetched, 1)
	}
	a.wg.Go(func() {
		f := fetchCtx(ctx, cancel, b, key, buf, m)
		if f.err == nil && prepare != nil {
			prepare(ctx, f)
		}
		a.done <- f
	})
}

// take returns the object if it is key's, waiting for it; else it stops
// any fetch and returns nil. The object's reader stays valid until the
// object is released.
func (a *readAhead) take(key string) *fetched {
	if a.key == "" || a.key != key {
		a.stop()
		return nil
	}
	f := <-a.done // f.cancel is a.cancel: f's release cancels
	a.wg.Wait()
	a.key, a.cancel = "", nil
	return f
}

// stop cancels the fetch, if any, waits for its goroutine and releases
// what it fetched.
func (a *readAhead) stop() {
	if a.key == "" {
		return
	}
	a.cancel()
	f := <-a.done
	a.wg.Wait()
	f.release()
	a.key, a.cancel = "", nil
}
