//go:build unix

package faulttest

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/seed-e488ba2e/reflex/internal/wait"
)

const (
	// startAttempts is how many free ports StartMariaDB tries.
	startAttempts = 10
	// setupGuard bounds installing the data directory and the first start,
	// which take seconds: a hang guard, not a deadline on the work.
	setupGuard = 5 * time.Minute
	// pingEvery is how often Start asks a starting server for a ping.
	pingEvery = 10 * time.Millisecond
	// pingTimeout bounds one ping (connect, handshake and COM_PING), so
	// that a frozen server fails it instead of hanging it.
	pingTimeout = 2 * time.Second
)

// mariadbdArgs are the server options besides paths and port: small
// memory, the InnoDB log size of the data directory, and commits written
// to the OS at once (flushed to disk every second: a killed server loses
// nothing, only a machine crash would).
var mariadbdArgs = []string{
	"--max-connections=1000",
	"--innodb-buffer-pool-size=64M",
	"--innodb-log-file-size=8M",
	"--innodb-flush-log-at-trx-commit=2",
	"--character-set-server=utf8mb4",
	"--collation-server=utf8mb4_general_ci",
}

// MariaDB is a throw-away MariaDB server for fault tests: its own data
// directory (initialised with mariadb-install-db) and a mariadbd process
// on a free loopback port, with user root and no password. A test can
// stop it (SIGTERM or SIGKILL), restart it on the same port and data
// directory, and freeze it (SIGSTOP) and thaw it (SIGCONT).
//
// The server is killed and its directory removed when the test ends, and
// it is started with a parent-death signal (on Linux) so that it dies with
// the test binary even if the test's cleanup never runs. It never touches
// the server of DB_TEST_URI.
//
// Its methods are safe for concurrent use; Start, Stop, Freeze and Thaw
// are serialised.
type MariaDB struct {
	bin  string // mariadbd
	dir  string
	port int
	wg   sync.WaitGroup // the goroutine of each process

	mu   sync.Mutex // serialises Start, Stop, Freeze, Thaw and the cleanup; protects the following fields
	proc *process   // the running server, nil when stopped
}

// process is one mariadbd process.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once it has exited and been reaped
	err    error         // of Wait, set before exited is closed
	frozen bool
}

// StartMariaDB initialises a data directory in a new temporary directory,
// starts mariadbd on a free port of 127.0.0.1 and returns once it answers
// a ping. The server is killed and the directory removed when the test
// ends.
//
// If mariadbd or mariadb-install-db is not installed it skips the test
// under -short (unless CI=true) and fails it otherwise, saying how to
// install them; it fails the test if the server cannot be set up.
func StartMariaDB(tb testing.TB) *MariaDB {
	tb.Helper()
	bin := lookBin("mariadbd", "/usr/sbin/mariadbd", "/usr/libexec/mariadbd")
	install := lookBin("mariadb-install-db", "/usr/bin/mariadb-install-db")
	if install == "" {
		install = lookBin("mysql_install_db", "/usr/bin/mysql_install_db")
	}
	if bin == "" || install == "" {
		msg := "faulttest: mariadbd or mariadb-install-db not found (in PATH, /usr/sbin, /usr/bin): " +
			"install the mariadb-server package (make test does, through scripts/mariadb.sh)"
		if testing.Short() && os.Getenv("CI") != "true" {
			tb.Skip(msg)
		}
		tb.Fatal(msg)
	}
	dir, err := os.MkdirTemp("", "faulttest-mariadb-")
	if err != nil {
		tb.Fatalf("faulttest: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	m := &MariaDB{bin: bin, dir: dir}

	ctx, cancel := context.WithTimeout(context.Background(), setupGuard)
	defer cancel()
	u, err := user.Current()
	if err != nil {
		tb.Fatalf("faulttest: current user: %v", err)
	}
	out, err := exec.CommandContext(ctx, install, "--no-defaults",
		"--datadir="+filepath.Join(dir, "data"), "--user="+u.Username,
		"--auth-root-authentication-method=normal", "--skip-test-db",
		"--innodb-log-file-size=8M").CombinedOutput()
	if err != nil {
		tb.Fatalf("faulttest: %s: %v\n%s", install, err, tail(out, 2000))
	}

	tb.Cleanup(m.kill) // runs before the directory is removed
	for attempt := 1; ; attempt++ {
		m.port = FreePort(tb)
		_, err := m.Start(ctx)
		if err == nil {
			return m
		}
		if !errors.Is(err, errPortInUse) || attempt == startAttempts {
			tb.Fatalf("faulttest: start mariadbd (attempt %d): %v", attempt, err)
		}
	}
}

// lookBin returns the path of the executable name, looked up in PATH and
// then at the given paths, or "".
func lookBin(name string, paths ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Addr returns the server's address, 127.0.0.1:port. It does not change
// across restarts.
func (m *MariaDB) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// URI returns a go-sql-driver/mysql DSN of the server ending in "/", as
// DB_TEST_URI is: root@tcp(127.0.0.1:port)/.
func (m *MariaDB) URI() string { return "root@tcp(" + m.Addr() + ")/" }

// Dir returns the server's temporary directory (data directory, socket,
// error log), removed when the test ends.
func (m *MariaDB) Dir() string { return m.dir }

// PID returns the process ID of the running server, 0 when it is stopped.
func (m *MariaDB) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return 0
	}
	return m.proc.cmd.Process.Pid
}

// errPortInUse is returned by Start when another process holds the port.
var errPortInUse = errors.New("faulttest: mariadbd port in use")

// Start starts the server (again, after Stop) on its port and data
// directory and waits until it answers a ping, polling every 10 ms. It
// returns the time of the first answered ping: the moment the server is
// reachable. It fails if the server is running, if the process exits
// before it answers (the error quotes the end of its error log), or when
// ctx is done.
func (m *MariaDB) Start(ctx context.Context) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		return time.Time{}, errors.New("faulttest: mariadbd is running")
	}
	logPath := filepath.Join(m.dir, "err.log")
	var logFrom int64
	if fi, err := os.Stat(logPath); err == nil {
		logFrom = fi.Size()
	}
	u, err := user.Current()
	if err != nil {
		return time.Time{}, err
	}
	args := append([]string{"--no-defaults",
		"--datadir=" + filepath.Join(m.dir, "data"),
		"--socket=" + filepath.Join(m.dir, "sock"),
		"--port=" + strconv.Itoa(m.port), "--bind-address=127.0.0.1",
		"--user=" + u.Username,
		"--pid-file=" + filepath.Join(m.dir, "pid"),
		"--log-error=" + logPath,
	}, mariadbdArgs...)
	p, err := m.spawn(exec.Command(m.bin, args...))
	if err != nil {
		return time.Time{}, fmt.Errorf("faulttest: start %s: %w", m.bin, err)
	}
	m.proc = p

	var t wait.Timer
	defer t.Stop()
	for {
		if err := m.Ping(ctx); err == nil {
			return time.Now(), nil
		}
		select {
		case <-p.exited:
			m.proc = nil
			log := logSince(logPath, logFrom)
			err := fmt.Errorf("faulttest: mariadbd exited before answering (%v); its log ends:\n%s", p.err, log)
			if bytes.Contains(log, []byte("Address already in use")) || bytes.Contains(log, []byte("Bind on TCP/IP port")) {
				err = fmt.Errorf("%w: %w", errPortInUse, err)
			}
			return time.Time{}, err
		default:
		}
		if err := t.Sleep(ctx, pingEvery); err != nil {
			return time.Time{}, fmt.Errorf("faulttest: mariadbd did not answer a ping: %w", err)
		}
	}
}

// spawn starts cmd from a goroutine owned by m, which then reaps it. The
// goroutine keeps its OS thread locked while the process runs: on Linux
// the parent-death signal fires when the thread that started the process
// exits, not only the process.
func (m *MariaDB) spawn(cmd *exec.Cmd) (*process, error) {
	cmd.SysProcAttr = procAttr()
	p := &process{cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	m.wg.Go(func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.exited)
	})
	return p, <-started
}

// Stop sends sig (syscall.SIGTERM for a clean shutdown, syscall.SIGKILL
// for a crash) to the server and waits until the process has exited, or
// until ctx is done. A frozen server is thawed after the signal so that
// it can act on it. It fails if the server is not running.
func (m *MariaDB) Stop(ctx context.Context, sig syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.proc
	if p == nil {
		return errors.New("faulttest: mariadbd is not running")
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("faulttest: signal mariadbd: %w", err)
	}
	if p.frozen {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.frozen = false
	}
	select {
	case <-p.exited:
		m.proc = nil
		return nil
	case <-ctx.Done():
		return fmt.Errorf("faulttest: mariadbd did not exit after %v: %w", sig, ctx.Err())
	}
}

// Freeze stops the server process with SIGSTOP: it keeps its connections
// and answers nothing, like a server behind a partition, until Thaw. It
// returns once the process is stopped, or when ctx is done.
func (m *MariaDB) Freeze(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.proc
	if p == nil {
		return errors.New("faulttest: mariadbd is not running")
	}
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("faulttest: freeze mariadbd: %w", err)
	}
	p.frozen = true
	return waitStopped(ctx, p.cmd.Process.Pid)
}

// Thaw resumes a server frozen by Freeze with SIGCONT.
func (m *MariaDB) Thaw() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.proc
	if p == nil {
		return errors.New("faulttest: mariadbd is not running")
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("faulttest: thaw mariadbd: %w", err)
	}
	p.frozen = false
	return nil
}

// Ping connects to the server as root, sends a ping and disconnects. It
// fails if the server does not answer within 2 s or before ctx is done.
func (m *MariaDB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", m.Addr()
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = pingTimeout, pingTimeout, pingTimeout
	cfg.Logger = discardLogger{}
	cn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	c, err := cn.Connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if p, ok := c.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

type discardLogger struct{}

func (discardLogger) Print(...any) {}

// kill is the test's cleanup: SIGKILL the running server (frozen or not),
// wait for it, and wait for the goroutines of m.
func (m *MariaDB) kill() {
	m.mu.Lock()
	if p := m.proc; p != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		m.proc = nil
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// logSince returns the end of the log file at path written after offset
// from, at most 2000 bytes.
func logSince(path string, from int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return []byte(err.Error())
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return []byte(err.Error())
	}
	b, _ := io.ReadAll(f)
	return tail(b, 2000)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
