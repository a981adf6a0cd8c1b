// Command reflexbench measures reflex against a MariaDB/MySQL server and
// reports each workload next to a raw baseline measured in the same run.
//
// Usage:
//
//	reflexbench [-dsn DSN] [-quick] [-runs N] [-only W1,W2] [-json FILE] [-cpuprofile FILE]
//
// The DSN (default $DB_TEST_URI) must end in "/": reflexbench creates and
// drops its own database. Without a DSN it re-runs itself under the
// project's scripts/mariadb.sh, which starts a throw-away server. It prints
// a table and, with -json, writes the same figures as JSON ("-" for
// standard output).
//
// With -cpuprofile, it writes a CPU profile of its own process (all
// workloads but W2's Run, and the baselines) to FILE, and one of each W2
// catch-up child process to FILE.catchup.<n>, for go tool pprof.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// config is what every workload gets.
type config struct {
	dsn   string // DSN of the benchmark database (parseTime, UTC)
	db    *sql.DB
	quick bool
	self  string // path of this executable, for child processes

	preloaded bool    // the catch-up table is filled
	rawRate   float64 // W2's raw loop rate, reused by W3

	cpuProfile string // -cpuprofile: children write cpuProfile.<mode>.<n>
	children   int    // child processes started, to name their profiles
}

// workload is one benchmark: run measures once and records its metrics.
type workload struct {
	id, title string
	setup     func(c *config) string
	run       func(ctx context.Context, c *config, r *WorkloadReport) error
	// quickRuns, if not zero, replaces -runs in -quick mode (for workloads
	// too long to repeat there).
	quickRuns int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		os.Exit(child(os.Args[2:]))
	}
	var (
		dsn      = flag.String("dsn", os.Getenv("DB_TEST_URI"), "MariaDB DSN ending in \"/\" (default $DB_TEST_URI)")
		quick    = flag.Bool("quick", false, "small workloads, finishing in under a minute")
		runs     = flag.Int("runs", 3, "runs per workload (median and min-max are reported)")
		only     = flag.String("only", "", "comma-separated workload IDs to run (default all)")
		jsonPath = flag.String("json", "", "write the report as JSON to this file (\"-\" for stdout)")
		cpuProf  = flag.String("cpuprofile", "", "write a CPU profile of this process to this file, and of each W2 catch-up child to FILE.catchup.<n>")
	)
	flag.Parse()
	if *dsn == "" {
		if err := underScript(); err != nil {
			fmt.Fprintf(os.Stderr, "reflexbench: no -dsn or DB_TEST_URI, and starting a server failed: %v\n", err)
			os.Exit(2)
		}
		return
	}
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "reflexbench: -runs must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	stopProfile, err := startCPUProfile(*cpuProf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "reflexbench: %v\n", err)
		os.Exit(1)
	}
	err = run(ctx, *dsn, *quick, *runs, *only, *jsonPath, *cpuProf)
	stopProfile()
	if err != nil {
		fmt.Fprintf(os.Stderr, "reflexbench: %v\n", err)
		os.Exit(1)
	}
}

// startCPUProfile starts writing a CPU profile to path ("" for none) and
// returns the function that stops it.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// underScript re-runs this command under scripts/mariadb.sh run.
func underScript() error {
	script := "scripts/mariadb.sh"
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("%s not found (run from the repository root, or give -dsn)", script)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(script, append([]string{"run", self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		return err
	}
	return nil
}

func run(ctx context.Context, rootDSN string, quick bool, runs int, only, jsonPath, cpuProfile string) error {
	if !strings.HasSuffix(rootDSN, "/") {
		return fmt.Errorf("DSN %q must end in \"/\"", rootDSN)
	}
	root, err := sql.Open("mysql", rootDSN)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.PingContext(ctx); err != nil {
		return fmt.Errorf("cannot reach %q: %w (start a server with `make db-up`)", rootDSN, err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "reflexbench_" + hex.EncodeToString(b)
	if _, err := root.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return err
	}
	defer root.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE "+name)

	cfg, err := mysql.ParseDSN(rootDSN + name)
	if err != nil {
		return err
	}
	cfg.ParseTime, cfg.Loc = true, time.UTC
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	c := &config{dsn: cfg.FormatDSN(), quick: quick, cpuProfile: cpuProfile}
	if c.self, err = os.Executable(); err != nil {
		return err
	}
	if c.db, err = sql.Open("mysql", c.dsn); err != nil {
		return err
	}
	defer c.db.Close()
	c.db.SetMaxOpenConns(64)
	c.db.SetMaxIdleConns(64)

	rep := &Report{Machine: machine(), Server: serverInfo(ctx, root), Runs: runs, Quick: quick}
	want := map[string]bool{}
	for _, id := range strings.Split(only, ",") {
		if id = strings.TrimSpace(strings.ToUpper(id)); id != "" {
			want[id] = true
		}
	}
	for _, w := range workloads() {
		if len(want) > 0 && !want[w.id] {
			continue
		}
		wr := &WorkloadReport{ID: w.id, Title: w.title, Setup: w.setup(c)}
		rep.Workloads = append(rep.Workloads, wr)
		fmt.Fprintf(os.Stderr, "reflexbench: %s %s ...\n", w.id, w.title)
		n := runs
		if quick && w.quickRuns > 0 {
			n = w.quickRuns
		}
		for i := 0; i < n && wr.Error == ""; i++ {
			if err := w.run(ctx, c, wr); err != nil {
				wr.Error = err.Error()
			}
		}
		if wr.Error == "" {
			wr.summarise()
		}
		if ctx.Err() != nil {
			break
		}
	}
	rep.printTable(os.Stdout)
	switch jsonPath {
	case "":
	case "-":
		return rep.writeJSON(os.Stdout)
	default:
		f, err := os.Create(jsonPath)
		if err != nil {
			return err
		}
		defer f.Close()
		return rep.writeJSON(f)
	}
	return nil
}

// serverInfo reads the server version and durability settings.
func serverInfo(ctx context.Context, db *sql.DB) map[string]string {
	info := map[string]string{}
	var v string
	if db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v) == nil {
		info["version"] = v
	}
	for _, name := range []string{"innodb_flush_log_at_trx_commit", "sync_binlog", "log_bin", "innodb_buffer_pool_size", "innodb_doublewrite"} {
		var n, val string
		if db.QueryRowContext(ctx, "SHOW GLOBAL VARIABLES LIKE '"+name+"'").Scan(&n, &val) == nil {
			info[name] = val
		}
	}
	return info
}

// comSelect returns the server's global count of SELECT statements.
func comSelect(ctx context.Context, db *sql.DB) (int64, error) {
	var name string
	var n int64
	err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Com_select'").Scan(&name, &n)
	return n, err
}
