// Package exserver is the example "users" service: a users table whose
// every change inserts an event into the user_events table in the same
// transaction, served to other services over gRPC.
package exserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/_example/internal/auth"
	"github.com/seed-e488ba2e/reflex/_example/internal/exdb"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// EventType is the type of a user event.
type EventType int

// ReflexType implements reflex.EventType.
func (t EventType) ReflexType() int { return int(t) }

// User event types.
const (
	UserCreated EventType = 1
	UserRenamed EventType = 2
)

// EventsTable is the name of the users service's events table.
const EventsTable = "user_events"

// Service is the users service.
type Service struct {
	db     *exdb.DB
	events *rsql.EventsTable

	mu      sync.Mutex // protects following fields
	rs      *reflex.Server
	gs      *grpc.Server
	done    chan struct{} // closed when Serve returns
	stopped bool
}

// New returns the service over db. Call Migrate before use.
func New(db *exdb.DB) *Service {
	return &Service{db: db, events: rsql.NewEventsTable(EventsTable, rsql.WithEventsDialect(db.Dialect))}
}

// Migrate creates the users and user_events tables if they do not exist.
func (s *Service) Migrate(ctx context.Context) error {
	users := `CREATE TABLE IF NOT EXISTS users (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		name VARCHAR(255) NOT NULL)`
	if s.db.MySQL {
		users = `CREATE TABLE IF NOT EXISTS users (
			id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			name VARCHAR(255) NOT NULL) ENGINE=InnoDB`
	}
	return s.db.Exec(ctx, users, rsql.EventsSchema(s.db.Dialect, EventsTable))
}

// CreateUser inserts a user and its UserCreated event in one transaction
// and returns the user's ID.
func (s *Service) CreateUser(ctx context.Context, name string) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "INSERT INTO users (name) VALUES (?)", name)
	if err != nil {
		return 0, fmt.Errorf("create user: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	notify, err := s.events.Insert(ctx, tx, fmt.Sprint(id), UserCreated)
	if err != nil {
		return 0, fmt.Errorf("create user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("create user: %w", err)
	}
	notify()
	return id, nil
}

// RenameUser changes a user's name and inserts a UserRenamed event in one
// transaction.
func (s *Service) RenameUser(ctx context.Context, id int64, name string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "UPDATE users SET name = ? WHERE id = ?", name, id)
	if err != nil {
		return fmt.Errorf("rename user %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("rename user %d: not found", id)
	}
	notify, err := s.events.Insert(ctx, tx, fmt.Sprint(id), UserRenamed)
	if err != nil {
		return fmt.Errorf("rename user %d: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("rename user %d: %w", id, err)
	}
	notify()
	return nil
}

// Head returns the ID of the newest event, 0 when there is none.
func (s *Service) Head(ctx context.Context) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM "+EventsTable).Scan(&id)
	return id, err
}

// Users returns the number of users.
func (s *Service) Users(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM users").Scan(&n)
	return n, err
}

// Stream is the service's event stream for local consumers.
func (s *Service) Stream() reflex.StreamFunc { return s.events.ToStream(s.db.DB) }

// Serve serves the event stream as reflexpb.Reflex on lis with creds,
// refusing calls without the bearer token. It blocks until Stop, and
// returns nil at once (closing lis) if Stop was called before.
func (s *Service) Serve(lis net.Listener, creds credentials.TransportCredentials, token string) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		lis.Close()
		return nil
	}
	if s.gs != nil {
		s.mu.Unlock()
		return errors.New("exserver: already serving")
	}
	s.rs = reflex.NewServer()
	s.gs = grpc.NewServer(append(auth.ServerOptions(token), grpc.Creds(creds))...)
	s.done = make(chan struct{})
	reflexpb.RegisterReflexServer(s.gs, s.rs.ReflexServer(s.Stream()))
	gs, done := s.gs, s.done
	s.mu.Unlock()
	defer close(done)
	err := gs.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop ends open streams with reflex.ErrStopped, stops serving and waits
// for Serve to return; a later Serve returns at once. It is idempotent and
// safe for concurrent use.
func (s *Service) Stop() {
	s.mu.Lock()
	s.stopped = true
	rs, gs, done := s.rs, s.gs, s.done
	s.mu.Unlock()
	if rs == nil {
		return
	}
	rs.Stop()
	gs.GracefulStop()
	<-done
}
