package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
)

// runDemo runs the demo in-process and parses its summary line.
func runDemo(t *testing.T, args ...string) summary {
	t.Helper()
	var out bytes.Buffer
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatalf("demo %v: %v\noutput:\n%s", args, err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	var s summary
	_, err := fmt.Sscanf(last, "summary: produced=%d consumed=%d welcomed=%d duplicates=%d users=%d welcome_rows=%d cursor=%d head=%d",
		&s.Produced, &s.Consumed, &s.Welcomed, &s.Duplicates, &s.Users, &s.WelcomeRows, &s.Cursor, &s.Head)
	if err != nil {
		t.Fatalf("last line %q: %v", last, err)
	}
	return s
}

// checkResume runs the demo twice over the same databases: every created
// user gets exactly one welcome row, and the second run consumes only the
// new events (no work redone).
func checkResume(t *testing.T, args ...string) {
	first := runDemo(t, append([]string{"-events", "200", "-rate", "2000", "-progress", "50ms"}, args...)...)
	if first.Produced != 200 || first.Users != 200 {
		t.Fatalf("first run: %+v, want 200 users produced", first)
	}
	if first.WelcomeRows != 200 || first.Welcomed != 200 || first.Duplicates != 0 {
		t.Errorf("first run: %+v, want 200 welcome rows written once each", first)
	}
	if first.Cursor != first.Head {
		t.Errorf("first run: cursor %d, head %d", first.Cursor, first.Head)
	}
	second := runDemo(t, append([]string{"-events", "150", "-rate", "2000", "-progress", "50ms"}, args...)...)
	if second.Users != 350 || second.WelcomeRows != 350 {
		t.Errorf("second run: %+v, want 350 users and 350 welcome rows", second)
	}
	if second.Consumed != 150 || second.Welcomed != 150 || second.Duplicates != 0 {
		t.Errorf("second run consumed %d, welcomed %d, duplicates %d; want 150, 150, 0 (resume from the stored cursor)", second.Consumed, second.Welcomed, second.Duplicates)
	}
}

func TestDemoSQLite(t *testing.T) {
	checkResume(t, "-dir", t.TempDir(), "-db", "")
}

func TestDemoMySQL(t *testing.T) {
	uri := dbtest.URI(t)
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "demo_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		db, err := sql.Open("mysql", uri)
		if err != nil {
			return
		}
		defer db.Close()
		for _, s := range []string{"_users", "_welcome"} {
			db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+prefix+s)
		}
	})
	checkResume(t, "-db", "mysql://"+uri, "-prefix", prefix)
}

func TestDemoPostgreSQL(t *testing.T) {
	uri := dbtest.PGURI(t)
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "demo_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		db, err := sql.Open("pgx", uri)
		if err != nil {
			return
		}
		defer db.Close()
		for _, s := range []string{"_users", "_welcome"} {
			db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+prefix+s+" WITH (FORCE)")
		}
	})
	checkResume(t, "-db", uri, "-prefix", prefix)
}

func TestDemoBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-rate", "0"},
		{"-events", "-1"},
		{"-db", "postgres://127.0.0.1:1/postgres"},
		{"-db", "oracle://x/"},
		{"-db", "mysql://root@tcp(127.0.0.1:1)/nodb"},
		{"-prefix", "Bad-Name", "-dir", t.TempDir()},
	} {
		var out bytes.Buffer
		if err := run(t.Context(), args, &out); err == nil {
			t.Errorf("demo %v: no error", args)
		}
	}
}

// TestDemoBinary builds the demo command and runs it as a user would, on
// SQLite, twice: the second run resumes from the stored cursor.
func TestDemoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: builds the demo binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for i, want := range []string{
		"summary: produced=60 consumed=60 welcomed=60 duplicates=0 users=60 welcome_rows=60",
		"summary: produced=40 consumed=40 welcomed=40 duplicates=0 users=100 welcome_rows=100",
	} {
		n := []string{"60", "40"}[i]
		cmd := exec.CommandContext(t.Context(), bin, "-events", n, "-rate", "1000", "-dir", filepath.Join(dir, "data"), "-db", "")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, out)
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("run %d output does not contain %q:\n%s", i+1, want, out)
		}
	}
}
