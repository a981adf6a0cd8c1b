package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// EnvPGURI names the environment variable holding the PostgreSQL server
// DSN, a pgx URL of an existing database (for example
// "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"). "make
// test" starts a throw-away server and sets it; scripts/postgres.sh up
// starts one for interactive use and prints the export line.
const EnvPGURI = "DB_TEST_PG_URI"

const pgHowTo = "start one with `scripts/postgres.sh up` (then export the printed DB_TEST_PG_URI) or run the tests with `make test`, which starts a server itself"

// PGURI returns the PostgreSQL server DSN, skipping the test under -short
// when it is unset and failing it otherwise.
func PGURI(tb testing.TB) string {
	tb.Helper()
	uri := os.Getenv(EnvPGURI)
	if uri == "" {
		if testing.Short() {
			tb.Skipf("skipping PostgreSQL test in -short mode: %s is not set", EnvPGURI)
		}
		tb.Fatalf("database test needs a PostgreSQL server: %s is not set; %s", EnvPGURI, pgHowTo)
	}
	return uri
}

// OpenPG creates a uniquely named PostgreSQL database, returns a
// connection pool to it (driver "pgx", session time zone UTC) and drops
// the database when the test ends. Under -short it skips if the server is
// unreachable; otherwise it fails naming the DSN and how to start a server.
func OpenPG(tb testing.TB) *sql.DB {
	tb.Helper()
	db, _ := OpenPGDSN(tb)
	return db
}

// OpenPGDSN is OpenPG that also returns the DSN of the new database, for
// tests that start other processes or pools against it.
func OpenPGDSN(tb testing.TB) (*sql.DB, string) {
	tb.Helper()
	uri := PGURI(tb)
	db, dsn, err := OpenPGDSNAt(tb, uri)
	if err != nil {
		if testing.Short() {
			tb.Skipf("skipping PostgreSQL test in -short mode: %s=%q unreachable: %v", EnvPGURI, uri, err)
		}
		tb.Fatalf("dbtest: %s=%q: %v; %s", EnvPGURI, uri, err, pgHowTo)
	}
	return db, dsn
}

// OpenPGDSNAt creates a uniquely named database on the PostgreSQL server
// of uri (a pgx URL of an existing database), returns a connection pool
// to it (driver "pgx", session time zone UTC) and its DSN, and drops the
// database when the test ends. It returns the error of a server it cannot
// reach, and fails tb on other errors.
func OpenPGDSNAt(tb testing.TB, uri string) (*sql.DB, string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	u, err := url.Parse(uri)
	if err != nil {
		tb.Fatalf("dbtest: bad PostgreSQL URL %q: %v", uri, err)
	}
	root, err := sql.Open("pgx", uri)
	if err != nil {
		tb.Fatalf("dbtest: bad PostgreSQL URL %q: %v", uri, err)
	}
	defer root.Close()
	if err := root.PingContext(ctx); err != nil {
		return nil, "", fmt.Errorf("cannot reach PostgreSQL: %w", err)
	}

	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test_" + hex.EncodeToString(b)
	if _, err := root.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("dbtest: create database: %v", err)
	}

	u.Path = "/" + name
	q := u.Query()
	q.Set("timezone", "UTC")
	u.RawQuery = q.Encode()
	dsn := u.String()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatalf("dbtest: open %s: %v", name, err)
	}
	db.SetMaxOpenConns(50)
	db.SetMaxIdleConns(50)
	tb.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := sql.Open("pgx", uri)
		if err != nil {
			return
		}
		defer r.Close()
		_, _ = r.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return db, dsn, nil
}
