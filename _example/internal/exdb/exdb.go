// Package exdb opens the example services' databases: SQLite files by
// default, or databases on a MySQL/MariaDB or PostgreSQL server.
package exdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"github.com/seed-e488ba2e/reflex/rsql"
)

// DB is an open example database and the rsql dialect to use with it.
type DB struct {
	*sql.DB
	Dialect rsql.Dialect
	// MySQL reports whether DB is on a MySQL/MariaDB server, Postgres
	// whether it is on a PostgreSQL server.
	MySQL, Postgres bool
	// Where describes the location, for messages.
	Where string
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Open opens the database called name. With target "" it is the SQLite
// file dir/name.db (the folder is created); with target "mysql://DSN/" (a
// go-sql-driver/mysql DSN ending in "/") it is the database name on that
// server, and with a PostgreSQL URL ("postgres://user@host:port/db", any
// database of the server) the database name on that server, created if
// missing.
func Open(ctx context.Context, target, dir, name string) (*DB, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("exdb: invalid database name %q", name)
	}
	if dsn, ok := strings.CutPrefix(target, "mysql://"); ok {
		return openMySQL(ctx, dsn, name)
	}
	if strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://") {
		return openPostgres(ctx, target, name)
	}
	if target != "" {
		return nil, fmt.Errorf("exdb: unsupported database %q (want empty for SQLite, mysql://user@tcp(host:port)/ or postgres://user@host:port/postgres)", target)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("exdb: %w", err)
	}
	path := filepath.Join(dir, name+".db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate&_time_format=sqlite")
	if err != nil {
		return nil, fmt.Errorf("exdb: open %s: %w", path, err)
	}
	// SQLite has one writer at a time; a small pool keeps lock waits short.
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("exdb: open %s: %w", path, err)
	}
	return &DB{DB: db, Dialect: rsql.SQLite, Where: path}, nil
}

func openMySQL(ctx context.Context, dsn, name string) (*DB, error) {
	if !strings.HasSuffix(dsn, "/") {
		return nil, fmt.Errorf("exdb: MySQL DSN %q must end in \"/\"", dsn)
	}
	root, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("exdb: %w", err)
	}
	defer root.Close()
	if _, err := root.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+name); err != nil {
		return nil, fmt.Errorf("exdb: create database %s on %s: %w", name, dsn, err)
	}
	cfg, err := mysql.ParseDSN(dsn + name)
	if err != nil {
		return nil, fmt.Errorf("exdb: %w", err)
	}
	cfg.ParseTime, cfg.Loc = true, time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("exdb: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("exdb: %w", err)
	}
	return &DB{DB: db, Dialect: rsql.MySQL, MySQL: true, Where: cfg.Addr + "/" + name}, nil
}

func openPostgres(ctx context.Context, uri, name string) (*DB, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("exdb: PostgreSQL URL: %w", err)
	}
	root, err := sql.Open("pgx", uri)
	if err != nil {
		return nil, fmt.Errorf("exdb: %w", err)
	}
	defer root.Close()
	var exists bool
	if err := root.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return nil, fmt.Errorf("exdb: PostgreSQL server %s: %w", u.Host, err)
	}
	if !exists {
		// name is validated: safe as an identifier.
		if _, err := root.ExecContext(ctx, "CREATE DATABASE "+name); err != nil && !isDuplicateDatabase(err) {
			return nil, fmt.Errorf("exdb: create database %s on %s: %w", name, u.Host, err)
		}
	}
	u.Path = "/" + name
	q := u.Query()
	q.Set("timezone", "UTC")
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		return nil, fmt.Errorf("exdb: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("exdb: %w", err)
	}
	return &DB{DB: db, Dialect: rsql.PostgreSQL, Postgres: true, Where: u.Host + "/" + name}, nil
}

// isDuplicateDatabase reports whether err is PostgreSQL's duplicate_database
// (a concurrent CREATE DATABASE won).
func isDuplicateDatabase(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P04"
}

// Q returns query, written with ? markers, for the database's engine:
// PostgreSQL numbers them ($1, $2, ...).
func (db *DB) Q(query string) string {
	if !db.Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Exec runs statements in order, stopping at the first error.
func (db *DB) Exec(ctx context.Context, stmts ...string) error {
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("exdb: %s: %w", strings.Fields(s)[0:3], err)
		}
	}
	return nil
}
