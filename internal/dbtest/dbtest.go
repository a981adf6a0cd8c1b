// Package dbtest gives tests a fresh MariaDB/MySQL database.
//
// The server is named by the DB_TEST_URI environment variable, a
// go-sql-driver/mysql DSN ending in "/" (for example
// "root@tcp(127.0.0.1:3306)/"). "make test" starts a throw-away server and
// sets it; "make db-up" starts one for interactive use and prints the
// export line.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// EnvURI names the environment variable holding the server DSN.
const EnvURI = "DB_TEST_URI"

const howTo = "start one with `make db-up` (then export the printed DB_TEST_URI) or run the tests with `make test`, which starts a server itself"

// URI returns the server DSN (ending in "/"), skipping the test under
// -short when it is unset and failing it otherwise.
func URI(tb testing.TB) string {
	tb.Helper()
	uri := os.Getenv(EnvURI)
	if uri == "" {
		if testing.Short() {
			tb.Skipf("skipping database test in -short mode: %s is not set", EnvURI)
		}
		tb.Fatalf("database test needs a MariaDB/MySQL server: %s is not set; %s", EnvURI, howTo)
	}
	if !strings.HasSuffix(uri, "/") {
		tb.Fatalf("%s=%q must end in \"/\" (tests create their own databases)", EnvURI, uri)
	}
	return uri
}

// Open creates a uniquely named database, returns a connection pool to it
// (parseTime on, UTC session time zone, utf8mb4) and drops the database
// when the test ends. Under -short it skips if the server is unreachable;
// otherwise it fails naming the DSN and how to start a server.
func Open(tb testing.TB) *sql.DB {
	tb.Helper()
	db, _ := OpenDSN(tb)
	return db
}

// OpenDSN is Open that also returns the DSN of the new database, for tests
// that start other processes or pools against it.
func OpenDSN(tb testing.TB) (*sql.DB, string) {
	tb.Helper()
	return OpenDSNAt(tb, URI(tb))
}

// OpenDSNAt is OpenDSN on the server of uri (a DSN ending in "/") instead
// of the one DB_TEST_URI names, for tests that start their own servers.
func OpenDSNAt(tb testing.TB, uri string) (*sql.DB, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	root, err := sql.Open("mysql", uri)
	if err != nil {
		tb.Fatalf("dbtest: bad %s=%q: %v", EnvURI, uri, err)
	}
	defer root.Close()
	if err := root.PingContext(ctx); err != nil {
		if testing.Short() {
			tb.Skipf("skipping database test in -short mode: %s=%q unreachable: %v", EnvURI, uri, err)
		}
		tb.Fatalf("dbtest: cannot reach MariaDB at %s=%q: %v; %s", EnvURI, uri, err, howTo)
	}

	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test_" + hex.EncodeToString(b)
	if _, err := root.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"); err != nil {
		tb.Fatalf("dbtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := sql.Open("mysql", uri)
		if err != nil {
			return
		}
		defer r.Close()
		_, _ = r.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
	})

	cfg, err := mysql.ParseDSN(uri + name)
	if err != nil {
		tb.Fatalf("dbtest: parse DSN: %v", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.Collation = "utf8mb4_general_ci"
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	dsn := cfg.FormatDSN()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		tb.Fatalf("dbtest: open %s: %v", name, err)
	}
	db.SetMaxOpenConns(50)
	db.SetMaxIdleConns(50)
	tb.Cleanup(func() { db.Close() })
	return db, dsn
}
