package rblob_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rblob"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest"
	"github.com/seed-e488ba2e/reflex/rsql/rsqltest/sqlitetest"
)

// tieredEnv is an events table, an archive bucket, an archiver writing the
// table into the bucket, a trimmer of the table behind the archiver, and
// the tiered stream over both.
type tieredEnv struct {
	db       *sql.DB
	table    *rsql.EventsTable
	raw      *blob.Bucket
	bucket   *rblob.Bucket
	store    *rpatterns.MemCursors
	archiver *rblob.Archiver
	trimmer  *rsql.Trimmer
	stream   reflex.StreamFunc
}

// newTieredEnv builds a tieredEnv over a new table named events in db, in
// the dialect d, and the bucket raw; the archiver writes objects of
// perObject events.
func newTieredEnv(t testing.TB, db *sql.DB, d rsql.Dialect, raw *blob.Bucket, perObject int, opts ...rblob.TieredOption) *tieredEnv {
	t.Helper()
	return newTieredEnvTable(t, db, d, raw, perObject, nil, opts...)
}

// newTieredEnvTable is newTieredEnv with options for the table.
func newTieredEnvTable(t testing.TB, db *sql.DB, d rsql.Dialect, raw *blob.Bucket, perObject int, topts []rsql.EventsOption, opts ...rblob.TieredOption) *tieredEnv {
	t.Helper()
	tables := rsqltest.Tables{Dialect: d}
	tables.CreateEventsTable(t, db, "events")
	env := &tieredEnv{db: db, raw: raw, store: rpatterns.MemCursorStore()}
	env.table = rsql.NewEventsTable("events", rsql.WithEventsDialect(d), rsql.WithEventMetadataField("metadata"),
		rsql.WithEventTraceField("trace"), rsql.WithEventsBackoff(5*time.Millisecond))
	if len(topts) > 0 {
		env.table = env.table.Clone(topts...)
	}
	t.Cleanup(func() { _ = env.table.Close() })
	env.bucket = rblob.NewBucket("tiered", raw, rblob.WithBackoff(testBackoff))
	env.archiver = rblob.NewArchiver(raw, "archiver", rblob.WithArchiveMaxEvents(perObject), rblob.WithArchiveMaxAge(0))
	t.Cleanup(func() { _ = env.archiver.Close() })
	tr, err := rsql.NewTrimmer(db, env.table, time.Hour, rsql.WithTrimArchive(env.store, "archiver"), rsql.WithTrimChunk(5))
	if err != nil {
		t.Fatal(err)
	}
	env.trimmer = tr
	env.stream = env.bucket.StreamTiered(env.table.ToStream(db), env.trimmed, opts...)
	return env
}

func (env *tieredEnv) trimmed(ctx context.Context) (int64, error) {
	return env.table.TrimmedThrough(ctx, env.db)
}

// insert inserts events into the table.
func (env *tieredEnv) insert(t testing.TB, events ...reflex.Event) {
	t.Helper()
	evs := make([]rsql.EventToInsert, len(events))
	for i, e := range events {
		evs[i] = rsql.EventToInsert{ForeignID: e.ForeignID, Type: e.Type, MetaData: e.MetaData}
	}
	for len(evs) > 0 {
		k := min(len(evs), 1000)
		notify, err := env.table.InsertMany(context.Background(), env.db, evs[:k])
		if err != nil {
			t.Fatalf("InsertMany: %v", err)
		}
		notify()
		evs = evs[k:]
	}
}

// archiveAll archives the table to its head.
func (env *tieredEnv) archiveAll(t testing.TB) {
	t.Helper()
	err := reflex.Run(context.Background(), env.archiver.Spec(env.table.ToStream(env.db), env.store, reflex.WithStreamToHead()))
	if !reflex.IsHeadReachedErr(err) {
		t.Fatalf("archive: Run = %v, want ErrHeadReached", err)
	}
	if err := env.archiver.Flush(context.Background()); err != nil {
		t.Fatalf("archive: Flush: %v", err)
	}
}

// trimBelow trims the table below id.
func (env *tieredEnv) trimBelow(t testing.TB, id int64) rsql.TrimResult {
	t.Helper()
	r, err := env.trimmer.TrimBelow(context.Background(), id)
	if err != nil {
		t.Fatalf("TrimBelow(%d): %v", id, err)
	}
	return r
}

func (env *tieredEnv) head(t testing.TB) int64 {
	t.Helper()
	h, err := env.table.Head(context.Background(), env.db)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// appender inserts events, archives them and trims all but the last.
func (env *tieredEnv) appender() reflextest.Appender {
	var mu sync.Mutex
	return func(t *testing.T, events ...reflex.Event) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		env.insert(t, events...)
		env.archiveAll(t)
		env.trimBelow(t, env.head(t))
	}
}

// TestStreamTieredConformance runs the stream suite over tiered streams
// whose events move from the table to the archive as they are appended:
// each append is archived and trimmed but for its last event, so that
// streams cross from the archive to the table, and tailing streams are
// trimmed under (and go back to the archive).
func TestStreamTieredConformance(t *testing.T) {
	reflextest.TestStreamFunc(t, reflextest.StreamHarness{
		New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
			env := newTieredEnv(t, sqlitetest.Open(t), rsql.SQLite, memBucket(t), 4)
			return env.stream, env.appender()
		},
		InvalidCursors: reflextest.InvalidIntCursors(),
	})
}

// wantIDs checks that events are exactly the IDs from..to in order.
func wantIDs(t testing.TB, events []*reflex.Event, from, to int64) {
	t.Helper()
	if n := int64(len(events)); n != to-from+1 {
		t.Errorf("got %d events, want %d (%d to %d)", n, to-from+1, from, to)
	}
	for i, e := range events {
		if want := strconv.FormatInt(from+int64(i), 10); e.ID != want {
			t.Fatalf("event %d has ID %s, want %s", i, e.ID, want)
		}
	}
}

// tieredEvent returns the i-th test event: types, foreign IDs and metadata
// derived from i, so that any event can be checked.
func tieredEvent(i int) reflex.Event {
	e := reflex.Event{ForeignID: "f" + strconv.Itoa(i%997), Type: evType(1 + i%5)}
	if i%2 == 0 {
		e.MetaData = []byte("m" + strconv.Itoa(i))
	}
	return e
}

func tieredEvents(from, n int) []reflex.Event {
	out := make([]reflex.Event, n)
	for i := range out {
		out[i] = tieredEvent(from + i)
	}
	return out
}

// checkTieredEvents checks the fields of events with consecutive IDs from
// the first's.
func checkTieredEvents(t testing.TB, events []*reflex.Event) {
	t.Helper()
	for _, e := range events {
		id, _ := strconv.Atoi(e.ID)
		w := tieredEvent(id)
		if e.ForeignID != w.ForeignID || !reflex.IsType(e.Type, w.Type) || string(e.MetaData) != string(w.MetaData) {
			t.Fatalf("event %s = (%q, %d, %q), want (%q, %d, %q)", e.ID, e.ForeignID, e.Type.ReflexType(), e.MetaData,
				w.ForeignID, w.Type.ReflexType(), w.MetaData)
		}
	}
}

// TestStreamTieredSwitch reads across the switch from every kind of
// cursor, in SQLite, MariaDB and PostgreSQL, with fileblob and memblob.
func TestStreamTieredSwitch(t *testing.T) {
	for _, tc := range []struct {
		name string
		db   func(t *testing.T) (*sql.DB, rsql.Dialect)
		raw  func(t *testing.T) *blob.Bucket
	}{
		{"sqlite/memblob", func(t *testing.T) (*sql.DB, rsql.Dialect) { return sqlitetest.Open(t), rsql.SQLite }, func(t *testing.T) *blob.Bucket { return memBucket(t) }},
		{"mysql/fileblob", func(t *testing.T) (*sql.DB, rsql.Dialect) { return dbtest.Open(t), rsql.MySQL }, func(t *testing.T) *blob.Bucket { b, _ := fileBucket(t); return b }},
		{"postgres/fileblob", func(t *testing.T) (*sql.DB, rsql.Dialect) { return dbtest.OpenPG(t), rsql.PostgreSQL }, func(t *testing.T) *blob.Bucket { b, _ := fileBucket(t); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, d := tc.db(t)
			env := newTieredEnv(t, db, d, tc.raw(t), 10)
			env.insert(t, tieredEvents(1, 100)...)
			env.archiveAll(t)
			env.insert(t, tieredEvents(101, 20)...) // not archived
			if r := env.trimBelow(t, 61); r.Through != 60 || r.Oldest != 61 {
				t.Fatalf("TrimBelow(61) = %+v", r)
			}
			for _, after := range []int64{0, 1, 9, 10, 11, 59, 60, 61, 100, 119, 120} {
				a := ""
				if after > 0 {
					a = strconv.FormatInt(after, 10)
				}
				got := drain(t, env.stream, a, reflex.WithStreamToHead())
				wantIDs(t, got, after+1, 120)
				checkTieredEvents(t, got)
			}
			// From the head: nothing, then what is inserted.
			cl, err := env.stream(t.Context(), "", reflex.WithStreamFromHead())
			if err != nil {
				t.Fatal(err)
			}
			defer cl.(io.Closer).Close()
			env.insert(t, tieredEvents(121, 1)...)
			if e, err := cl.Recv(); err != nil || e.ID != "121" {
				t.Fatalf("from head: Recv = %v, %v; want 121", e, err)
			}
			// Lag holds archived events back, like the table's.
			got, err := drainErr(t, env.stream, "", reflex.WithStreamLag(time.Hour))
			if len(got) != 0 || err != nil {
				t.Errorf("to the head with an hour of lag: %d events, %v; want none", len(got), err)
			}
			got, err = drainErr(t, env.stream, "", reflex.WithStreamLag(time.Nanosecond))
			if len(got) != 121 || err != nil {
				t.Errorf("to the head with a nanosecond of lag: %d events, %v; want 121", len(got), err)
			}
		})
	}
}

// TestStreamTieredGRPC serves a tiered stream over gRPC on loopback.
func TestStreamTieredGRPC(t *testing.T) {
	env := newTieredEnv(t, dbtest.Open(t), rsql.MySQL, memBucket(t), 10)
	env.insert(t, tieredEvents(1, 50)...)
	env.archiveAll(t)
	env.trimBelow(t, 41)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := reflex.NewServer()
	gs := grpc.NewServer()
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(env.stream))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.GracefulStop)
	t.Cleanup(rs.Stop) // before GracefulStop: ends the open streams
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	remote := reflex.GRPCStreamFunc(conn)

	got := drain(t, remote, "", reflex.WithStreamToHead())
	wantIDs(t, got, 1, 50)
	checkTieredEvents(t, got)
	got = drain(t, remote, "25", reflex.WithStreamToHead())
	wantIDs(t, got, 26, 50)
	cl, err := remote(t.Context(), "x")
	if err == nil {
		_, err = cl.Recv()
	}
	if !errors.Is(err, reflex.ErrInvalidCursor) {
		t.Errorf("remote stream with cursor x: %v, want ErrInvalidCursor", err)
	}
}
