// Package exclient is the example "welcome" service: it consumes the users
// service's events over gRPC with a named consumer and its own cursors
// table, and writes one welcome-email outbox row per created user.
package exclient

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/_example/exserver"
	"github.com/seed-e488ba2e/reflex/_example/internal/auth"
	"github.com/seed-e488ba2e/reflex/_example/internal/exdb"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// ConsumerName is the name under which the client's cursor is stored.
const ConsumerName = "welcome_emails"

// Dial connects to a users service at addr with TLS creds and the bearer
// token, with a connection backoff of at most 1 s (gRPC's default grows
// to 2 minutes), so that the consumer is back within a second or two of
// the service.
func Dial(addr string, creds credentials.TransportCredentials, token string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(auth.Token(token)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}))
}

// Stats is a snapshot of the client's progress.
type Stats struct {
	Consumed   int64     // events consumed by this process
	Welcomed   int64     // welcome rows written by this process
	Duplicates int64     // created users that already had a welcome row (redone work)
	LastID     int64     // ID of the last consumed event
	LastTime   time.Time // timestamp of the last consumed event
}

// Client is the welcome service.
type Client struct {
	// OnError, if set, is called with each error that ended a run.
	OnError func(error)

	db      *exdb.DB
	cursors *rsql.CursorsTable

	consumed, welcomed, duplicates, lastID atomic.Int64

	mu       sync.Mutex // protects lastTime
	lastTime time.Time
}

// New returns the client over db. Call Migrate before use and Close after.
func New(db *exdb.DB) *Client {
	return &Client{
		db:      db,
		cursors: rsql.NewCursorsTable("cursors", rsql.WithCursorsDialect(db.Dialect), rsql.WithCursorAsyncPeriod(time.Second)),
	}
}

// Migrate creates the cursors and welcome_emails tables if missing.
func (c *Client) Migrate(ctx context.Context) error {
	outbox := `CREATE TABLE IF NOT EXISTS welcome_emails (
		user_id BIGINT NOT NULL PRIMARY KEY,
		event_id BIGINT NOT NULL)`
	return c.db.Exec(ctx, rsql.CursorsSchema(c.db.Dialect, "cursors"), outbox)
}

// Close flushes the stored cursor and stops its background writer.
func (c *Client) Close() error { return c.cursors.Close() }

// Stats returns the client's progress.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Consumed:   c.consumed.Load(),
		Welcomed:   c.welcomed.Load(),
		Duplicates: c.duplicates.Load(),
		LastID:     c.lastID.Load(),
		LastTime:   c.lastTime,
	}
}

// Cursor returns the stored cursor (0 when none).
func (c *Client) Cursor(ctx context.Context) (int64, error) {
	s, err := c.cursors.GetCursor(ctx, c.db.DB, ConsumerName)
	if err != nil || s == "" {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

// Welcomes returns the number of welcome rows.
func (c *Client) Welcomes(ctx context.Context) (int64, error) {
	var n int64
	err := c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM welcome_emails").Scan(&n)
	return n, err
}

func (c *Client) consume(ctx context.Context, e *reflex.Event) error {
	if reflex.IsType(e.Type, exserver.UserCreated) {
		insert := "INSERT OR IGNORE INTO welcome_emails (user_id, event_id) VALUES (?, ?)"
		switch {
		case c.db.MySQL:
			insert = "INSERT IGNORE INTO welcome_emails (user_id, event_id) VALUES (?, ?)"
		case c.db.Postgres:
			insert = "INSERT INTO welcome_emails (user_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
		}
		res, err := c.db.ExecContext(ctx, insert, e.ForeignIDInt(), e.IDInt())
		if err != nil {
			return fmt.Errorf("welcome user %s: %w", e.ForeignID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			c.welcomed.Add(1)
		} else {
			c.duplicates.Add(1)
		}
	}
	c.consumed.Add(1)
	c.lastID.Store(e.IDInt())
	c.mu.Lock()
	c.lastTime = e.Timestamp
	c.mu.Unlock()
	return nil
}

// Run consumes stream until ctx ends, running reflex.Run again a second
// after each failure (reported to OnError). It returns ctx's error.
func (c *Client) Run(ctx context.Context, stream reflex.StreamFunc) error {
	spec := reflex.NewSpec(stream, c.cursors.ToStore(c.db.DB), reflex.NewConsumer(ConsumerName, c.consume))
	for {
		err := reflex.Run(ctx, spec)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.OnError != nil && !errors.Is(err, context.Canceled) {
			c.OnError(err)
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
