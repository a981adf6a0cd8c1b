//go:build unix

package faulttest_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex/internal/faulttest"
)

// gone reports whether process pid has exited (or is a zombie waiting
// for a parent that is not the test).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return os.IsNotExist(err)
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// TestMariaDBController starts a throw-away server and checks each
// control: data survives SIGTERM and SIGKILL restarts on the same port,
// a frozen server answers nothing until thawed, a frozen server still
// stops, and the test's cleanup kills the server.
func TestMariaDBController(t *testing.T) {
	m := faulttest.StartMariaDB(t)
	ctx := t.Context()
	db, err := sql.Open("mysql", m.URI()+"?timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE ctl",
		"CREATE TABLE ctl.t (id INT PRIMARY KEY)",
		"INSERT INTO ctl.t VALUES (1)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	addr := m.Addr()

	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		pid := m.PID()
		if err := m.Stop(ctx, sig); err != nil {
			t.Fatalf("Stop(%v): %v", sig, err)
		}
		if !gone(pid) {
			t.Fatalf("mariadbd %d still running after Stop(%v)", pid, sig)
		}
		if m.PID() != 0 {
			t.Errorf("PID() = %d after Stop, want 0", m.PID())
		}
		if err := m.Ping(ctx); err == nil {
			t.Fatalf("Ping succeeded after Stop(%v)", sig)
		}
		before := time.Now()
		at, err := m.Start(ctx)
		if err != nil {
			t.Fatalf("Start after %v: %v", sig, err)
		}
		if at.Before(before) || at.After(time.Now()) {
			t.Errorf("Start returned reachable at %v, not during the call", at)
		}
		if m.Addr() != addr {
			t.Errorf("Addr() = %s after restart, want %s", m.Addr(), addr)
		}
		if _, err := db.ExecContext(ctx, fmt.Sprintf("INSERT INTO ctl.t VALUES (%d)", i+2)); err != nil {
			t.Fatalf("insert after restart: %v", err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM ctl.t").Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows after restarts = %d, %v; want 3", n, err)
	}
	if _, err := m.Start(ctx); err == nil {
		t.Error("Start of a running server succeeded")
	}

	if err := m.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = m.Ping(pctx)
	cancel()
	if err == nil {
		t.Fatal("Ping of a frozen server succeeded")
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := m.Ping(ctx); err != nil {
		t.Fatalf("Ping after Thaw: %v", err)
	}
	if err := m.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("Stop(SIGTERM) of a frozen server: %v", err)
	}
	if _, err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}

	var pid int
	t.Run("cleanup", func(t *testing.T) {
		pid = faulttest.StartMariaDB(t).PID()
	})
	if pid == 0 || !gone(pid) {
		t.Errorf("mariadbd %d of a finished test still runs", pid)
	}
}

// orphanChildEnv, when set, makes TestMariaDBDiesWithTestBinary run as
// the child test binary that starts a server and waits to be killed.
const orphanChildEnv = "FAULTTEST_ORPHAN_CHILD"

// TestMariaDBDiesWithTestBinary kills, with SIGKILL, a test binary that
// started a server: its cleanup cannot run, and the server must still
// exit (the parent-death signal).
func TestMariaDBDiesWithTestBinary(t *testing.T) {
	if os.Getenv(orphanChildEnv) != "" {
		m := faulttest.StartMariaDB(t)
		fmt.Printf("pid %d dir %s\n", m.PID(), m.Dir())
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until killed
		return
	}
	if testing.Short() {
		t.Skip("skipping a test that starts a second test binary in -short mode")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMariaDBDiesWithTestBinary$", "-test.count=1")
	cmd.Env = append(os.Environ(), orphanChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var (
		pid int
		dir string
	)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "pid %d dir %s", &pid, &dir); err == nil {
			break
		}
	}
	if pid == 0 || !strings.Contains(dir, "faulttest-mariadb-") {
		t.Fatalf("the child test binary printed no server pid and directory (%v)", sc.Err())
	}
	// The killed child cannot remove its server's directory.
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if gone(pid) {
		t.Fatalf("mariadbd %d not running before the kill", pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	poll(t, "mariadbd exit after its test binary died", func() (int64, bool) { return 0, gone(pid) })
}
