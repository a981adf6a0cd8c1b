// Command demo runs the example users service and welcome service together:
// the users service creates users at a steady rate, inserting an event in
// the same transaction as each user, and serves the events over gRPC (TLS
// and a bearer token on 127.0.0.1); the welcome service consumes them with
// its own cursors table and writes one welcome row per user. A progress line
// shows produced, consumed and the lag.
//
// Usage:
//
//	go run ./_example/demo [-events N] [-rate R] [-dir DIR] [-db mysql://DSN/ | -db postgres://URL] [-metrics ADDR] [-graph dot|mermaid]
//
// By default both services keep SQLite files in DIR (default
// $TMPDIR/reflex-demo); running again resumes from the stored cursor. With
// -db (or $REFLEX_DEMO_DB) set to mysql://user@tcp(host:port)/ or to a
// PostgreSQL URL such as postgres://user@host:5432/postgres they use the
// databases reflex_demo_users and reflex_demo_welcome on that server
// (created if missing). With -metrics ADDR (host:port, port 0 for any) it
// serves its Prometheus metrics at http://ADDR/metrics and prints that
// address first. With -graph, it prints its event network (Graphviz DOT or
// Mermaid, with the consumer's lag in those databases) and exits.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/_example/exclient"
	"github.com/seed-e488ba2e/reflex/_example/exserver"
	"github.com/seed-e488ba2e/reflex/_example/internal/auth"
	"github.com/seed-e488ba2e/reflex/_example/internal/exdb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// summary is what a run did, printed as its last line.
type summary struct {
	Produced, Consumed, Welcomed, Duplicates int64
	Users, WelcomeRows, Cursor, Head         int64
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(out)
	var (
		events = fs.Int("events", 0, "stop after creating this many users and consuming every event (0: run until Ctrl-C)")
		rate   = fs.Float64("rate", 20, "users created per second")
		dir    = fs.String("dir", filepath.Join(os.TempDir(), "reflex-demo"), "folder for the SQLite files")
		dbURL  = fs.String("db", os.Getenv("REFLEX_DEMO_DB"), "mysql://DSN/ or postgres://URL to use MySQL/MariaDB or PostgreSQL instead of SQLite (default $REFLEX_DEMO_DB)")
		every  = fs.Duration("progress", 500*time.Millisecond, "progress line interval")
		prefix = fs.String("prefix", "reflex_demo", "prefix of the database (or SQLite file) names")
		graph  = fs.String("graph", "", "print the event network as dot or mermaid, with live lag, and exit")
		mAddr  = fs.String("metrics", "", "serve Prometheus metrics on `ADDR` (host:port) at /metrics")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *graph != "" {
		return printGraph(ctx, *graph, *dir, *dbURL, *prefix, out)
	}
	if *rate <= 0 || *events < 0 {
		return errors.New("-rate must be positive and -events not negative")
	}
	if *mAddr != "" {
		lis, err := net.Listen("tcp", *mAddr)
		if err != nil {
			return fmt.Errorf("-metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		served := make(chan struct{})
		go func() { defer close(served); srv.Serve(lis) }()
		defer func() { srv.Close(); <-served }()
		fmt.Fprintf(out, "metrics on http://%s/metrics\n", lis.Addr())
	}
	sum, err := demo(ctx, *events, *rate, *dir, *dbURL, *prefix, *every, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "summary: produced=%d consumed=%d welcomed=%d duplicates=%d users=%d welcome_rows=%d cursor=%d head=%d\n",
		sum.Produced, sum.Consumed, sum.Welcomed, sum.Duplicates, sum.Users, sum.WelcomeRows, sum.Cursor, sum.Head)
	return nil
}

func demo(ctx context.Context, events int, rate float64, dir, dbURL, prefix string, every time.Duration, out io.Writer) (summary, error) {
	var sum summary
	usersDB, err := exdb.Open(ctx, dbURL, dir, prefix+"_users")
	if err != nil {
		return sum, err
	}
	defer usersDB.Close()
	welcomeDB, err := exdb.Open(ctx, dbURL, dir, prefix+"_welcome")
	if err != nil {
		return sum, err
	}
	defer welcomeDB.Close()
	fmt.Fprintf(out, "users service on %s, welcome service on %s\n", usersDB.Where, welcomeDB.Where)

	users := exserver.New(usersDB)
	if err := users.Migrate(ctx); err != nil {
		return sum, err
	}
	welcome := exclient.New(welcomeDB)
	if err := welcome.Migrate(ctx); err != nil {
		return sum, err
	}
	defer welcome.Close()

	// The users service serves its events over TLS with a bearer token.
	serverCreds, clientCreds, err := auth.SelfSigned()
	if err != nil {
		return sum, err
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return sum, err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { users.Serve(lis, serverCreds, token) })
	defer users.Stop()

	conn, err := exclient.Dial(lis.Addr().String(), clientCreds, token)
	if err != nil {
		return sum, err
	}
	defer conn.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		errMu   sync.Mutex
		lastErr error
	)
	welcome.OnError = func(err error) {
		errMu.Lock()
		lastErr = err
		errMu.Unlock()
	}
	wg.Go(func() {
		welcome.Run(ctx, reflex.GRPCStreamFunc(conn, reflex.WithGRPCConsumerName(exclient.ConsumerName)))
	})

	// Produce users at a steady rate.
	var produced sync.WaitGroup
	var made int64
	var prodErr error
	var prodMu sync.Mutex
	produced.Go(func() {
		start := time.Now()
		for i := 0; events == 0 || i < events; i++ {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			if _, err := users.CreateUser(ctx, fmt.Sprintf("user-%d", i)); err != nil {
				if ctx.Err() == nil {
					prodMu.Lock()
					prodErr = err
					prodMu.Unlock()
					cancel()
				}
				return
			}
			prodMu.Lock()
			made++
			prodMu.Unlock()
		}
	})
	producerDone := make(chan struct{})
	go func() { produced.Wait(); close(producerDone) }()

	tty := false
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	finishing := false
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-producerDone:
			producerDone, finishing = nil, true
		case <-tick.C:
		}
		head, err := users.Head(context.WithoutCancel(ctx))
		if err != nil {
			return sum, err
		}
		st := welcome.Stats()
		lagEvents := max(0, head-st.LastID)
		lagSecs := 0.0
		if lagEvents > 0 && !st.LastTime.IsZero() {
			lagSecs = time.Since(st.LastTime).Seconds()
		}
		prodMu.Lock()
		p := made
		prodMu.Unlock()
		line := fmt.Sprintf("produced %d  consumed %d  welcomed %d  lag %d events %.2fs", p, st.Consumed, st.Welcomed, lagEvents, lagSecs)
		if tty {
			fmt.Fprintf(out, "\r%-78s", line)
		} else {
			fmt.Fprintln(out, line)
		}
		if finishing && lagEvents == 0 && st.LastID == head {
			done = true
		}
	}
	if tty {
		fmt.Fprintln(out)
	}
	cancel()
	users.Stop()
	wg.Wait()
	if err := welcome.Close(); err != nil {
		return sum, fmt.Errorf("flush cursor: %w", err)
	}
	prodMu.Lock()
	err = prodErr
	sum.Produced = made
	prodMu.Unlock()
	if err != nil {
		return sum, fmt.Errorf("create user: %w", err)
	}
	bg := context.WithoutCancel(ctx)
	st := welcome.Stats()
	sum.Consumed, sum.Welcomed, sum.Duplicates = st.Consumed, st.Welcomed, st.Duplicates
	if sum.Users, err = users.Users(bg); err != nil {
		return sum, err
	}
	if sum.WelcomeRows, err = welcome.Welcomes(bg); err != nil {
		return sum, err
	}
	if sum.Cursor, err = welcome.Cursor(bg); err != nil {
		return sum, err
	}
	if sum.Head, err = users.Head(bg); err != nil {
		return sum, err
	}
	if events > 0 && sum.Cursor != sum.Head {
		errMu.Lock()
		defer errMu.Unlock()
		return sum, fmt.Errorf("stopped with cursor %d behind head %d (last consumer error: %v)", sum.Cursor, sum.Head, lastErr)
	}
	return sum, nil
}
