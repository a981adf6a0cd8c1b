// Command reflexbench measures reflex against a MariaDB/MySQL or a
// PostgreSQL server and reports each workload next to a raw baseline
// measured in the same run.
//
// Usage:
//
//	reflexbench [-engine mysql|postgres] [-dsn DSN] [-quick] [-runs N] [-only W1,W2] [-json FILE] [-cpuprofile FILE]
//
// The engine is MySQL by default, PostgreSQL with -engine postgres or a
// postgres:// DSN. The DSN (default $DB_TEST_URI for MySQL, ending in
// "/"; $DB_TEST_PG_URI for PostgreSQL, a URL of any database of the
// server) names the server: reflexbench creates and drops its own
// database. Without a DSN it re-runs itself under the project's
// scripts/mariadb.sh or scripts/postgres.sh, which start a throw-away
// server. It prints a table and, with -json, writes the same figures as
// JSON ("-" for standard output).
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
)

// config is what every workload gets.
type config struct {
	eng   engine
	dsn   string // DSN of the benchmark database (MySQL: parseTime, UTC)
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
		engName  = flag.String("engine", "", "mysql or postgres (default: from the DSN, else mysql)")
		dsn      = flag.String("dsn", "", "MariaDB DSN ending in \"/\" (default $DB_TEST_URI) or PostgreSQL URL (default $DB_TEST_PG_URI)")
		quick    = flag.Bool("quick", false, "small workloads, finishing in under a minute")
		runs     = flag.Int("runs", 3, "runs per workload (median and min-max are reported)")
		only     = flag.String("only", "", "comma-separated workload IDs to run (default all)")
		jsonPath = flag.String("json", "", "write the report as JSON to this file (\"-\" for stdout)")
		cpuProf  = flag.String("cpuprofile", "", "write a CPU profile of this process to this file, and of each W2 catch-up child to FILE.catchup.<n>")
	)
	flag.Parse()
	eng := engineOfDSN(*dsn)
	if *engName != "" {
		var err error
		if eng, err = engineNamed(*engName); err != nil {
			fmt.Fprintf(os.Stderr, "reflexbench: %v\n", err)
			os.Exit(2)
		}
	}
	if *dsn == "" {
		*dsn = os.Getenv(eng.env)
	}
	if *dsn == "" {
		if err := underScript(eng); err != nil {
			fmt.Fprintf(os.Stderr, "reflexbench: no -dsn or %s, and starting a server failed: %v\n", eng.env, err)
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
	err = run(ctx, eng, *dsn, *quick, *runs, *only, *jsonPath, *cpuProf)
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

// underScript re-runs this command under the engine's script (run mode),
// which starts a throw-away server and exports its DSN.
func underScript(eng engine) error {
	script := eng.script
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

func run(ctx context.Context, eng engine, rootDSN string, quick bool, runs int, only, jsonPath, cpuProfile string) error {
	if err := eng.checkRoot(rootDSN); err != nil {
		return err
	}
	root, err := sql.Open(eng.driver, rootDSN)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.PingContext(ctx); err != nil {
		return fmt.Errorf("cannot reach the %s server: %w (start a server with `make db-up`)", eng.name, err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "reflexbench_" + hex.EncodeToString(b)
	dsn, err := eng.createDB(ctx, root, rootDSN, name)
	if err != nil {
		return err
	}
	defer eng.dropDB(context.WithoutCancel(ctx), root, name)

	c := &config{eng: eng, dsn: dsn, quick: quick, cpuProfile: cpuProfile}
	if c.self, err = os.Executable(); err != nil {
		return err
	}
	if c.db, err = c.open(); err != nil {
		return err
	}
	defer c.db.Close()
	c.db.SetMaxOpenConns(64)
	c.db.SetMaxIdleConns(64)

	rep := &Report{Machine: machine(), Server: eng.serverInfo(ctx, root), Runs: runs, Quick: quick}
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

// open opens a pool to the benchmark database.
func (c *config) open() (*sql.DB, error) { return sql.Open(c.eng.driver, c.dsn) }
