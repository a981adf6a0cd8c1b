package rblob_test

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"gocloud.dev/blob/memblob"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

// recvAsync starts a Recv and returns a channel with its outcome.
func recvAsync(cl reflex.StreamClient) <-chan string {
	out := make(chan string, 1)
	go func() {
		e, err := cl.Recv()
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		out <- e.ID
	}()
	return out
}

func pending(c <-chan string) (string, bool) {
	select {
	case s := <-c:
		return s, false
	default:
		return "", true
	}
}

// TestBackoff: a stream at the head lists the bucket again only after the
// backoff (default 1 minute).
func TestBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		raw := memblob.OpenBucket(nil)
		defer raw.Close()
		b := rblob.NewBucket("backoff", raw)
		cl, err := b.Stream(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.(io.Closer).Close()

		got := recvAsync(cl)
		synctest.Wait() // listed an empty bucket; waiting
		write(t, raw, "a", "1")
		time.Sleep(rblob.DefaultBackoff - time.Millisecond)
		synctest.Wait()
		if s, ok := pending(got); !ok {
			t.Fatalf("Recv returned %q before the backoff elapsed", s)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if s, ok := pending(got); ok || s != "a|eof" {
			t.Fatalf("after the backoff: Recv = %q (pending %v), want a|eof", s, ok)
		}
	})
}

// TestLag: with WithStreamLag, an object's records are delivered once its
// modification time is lag old.
func TestLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		raw := memblob.OpenBucket(nil)
		defer raw.Close()
		write(t, raw, "a", "1")
		b := rblob.NewBucket("lag", raw)

		cl, err := b.Stream(t.Context(), "", reflex.WithStreamLag(10*time.Second), reflex.WithStreamToHead())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Recv(); !reflex.IsHeadReachedErr(err) {
			t.Errorf("to-head Recv of a too recent object = %v, want ErrHeadReached", err)
		}

		cl, err = b.Stream(t.Context(), "", reflex.WithStreamLag(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.(io.Closer).Close()
		time.Sleep(4 * time.Second)
		got := recvAsync(cl)
		time.Sleep(6*time.Second - time.Millisecond)
		synctest.Wait()
		if s, ok := pending(got); !ok {
			t.Fatalf("Recv returned %q before the object was 10s old", s)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if s, ok := pending(got); ok || s != "a|eof" {
			t.Fatalf("Recv = %q (pending %v), want a|eof", s, ok)
		}
	})
}

// TestArchiverMaxAge: an object is written once its first event is max age
// old, however few events it holds, and the cursor follows.
func TestArchiverMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		raw := memblob.OpenBucket(nil)
		defer raw.Close()
		store := reflextest.NewCursorStore()
		a := rblob.NewArchiver(raw, "aged") // defaults: 10,000 events, 1 minute
		defer a.Close()
		a.CursorStore(store)
		ctx := t.Context()
		for i := 1; i <= 3; i++ {
			e := testEvent(i)
			e.ID = strconv.Itoa(i)
			if err := a.Consume(ctx, &e); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		}
		time.Sleep(rblob.DefaultArchiveMaxAge - 3*time.Second - time.Millisecond)
		synctest.Wait()
		if got := keys(t, raw); len(got) != 0 {
			t.Fatalf("objects %q written before the max age", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := keys(t, raw); len(got) != 1 || got[0] != key(1) {
			t.Fatalf("objects = %q after the max age, want [%s]", got, key(1))
		}
		if c := store.Cursor("aged"); c != "3" {
			t.Errorf("cursor = %q, want 3", c)
		}

		// The next object's age counts from its own first event.
		e := testEvent(4)
		e.ID = "4"
		if err := a.Consume(ctx, &e); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rblob.DefaultArchiveMaxAge - time.Millisecond)
		synctest.Wait()
		if got := keys(t, raw); len(got) != 1 {
			t.Fatalf("objects = %q before the second object's max age", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := keys(t, raw); len(got) != 2 {
			t.Fatalf("objects = %q, want 2", got)
		}
	})
}

// TestArchiverMaxAgeError: a failed write by age is returned by the next
// call, and the events stay buffered.
func TestArchiverMaxAgeError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		raw, _ := newStartAfterBucket(t, false, nil) // read-only
		a := rblob.NewArchiver(raw, "aged-err", rblob.WithArchiveMaxAge(time.Second))
		defer a.Close()
		a.CursorStore(reflextest.NewCursorStore())
		e := testEvent(1)
		e.ID = "1"
		if err := a.Consume(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		e2 := testEvent(2)
		e2.ID = "2"
		if err := a.Consume(context.Background(), &e2); err == nil || !strings.Contains(err.Error(), key(1)) {
			t.Errorf("Consume after a failed write by age = %v, want the write error", err)
		}
		// The events are still buffered: Flush tries again.
		if err := a.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), key(1)) {
			t.Errorf("Flush = %v, want the write error again", err)
		}
	})
}

// TestOutOfOrderAfterEmptyListing: an object written below a resumed
// stream's position is reported even when the stream's first listing found
// an empty bucket (it used to be skipped silently).
func TestOutOfOrderAfterEmptyListing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		raw := memblob.OpenBucket(nil)
		defer raw.Close()
		b := rblob.NewBucket("order-empty", raw, rblob.WithBackoff(time.Second))
		cl, err := b.Stream(t.Context(), "b|eof")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.(io.Closer).Close()
		got := recvAsync(cl)
		synctest.Wait()         // listed an empty bucket; waiting
		write(t, raw, "a", "0") // below the position
		write(t, raw, "c", "2")
		time.Sleep(time.Second)
		synctest.Wait()
		s, ok := pending(got)
		if ok || !strings.Contains(s, rblob.ErrOutOfOrder.Error()) || !strings.Contains(s, `"a"`) {
			t.Fatalf("Recv = %q (pending %v), want an ErrOutOfOrder error naming \"a\"", s, ok)
		}
	})
}
