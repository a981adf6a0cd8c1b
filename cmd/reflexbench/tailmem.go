package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// ---- W4C: memory of a long tail ----------------------------------------

const (
	// tailMemN is the number of events tailed: enough for the read-through
	// cache (10,000 events) to fill and turn over many times.
	tailMemN = 100_000
	// tailMemWarm is the point (events consumed by every consumer) at which
	// the warm-up RSS is taken.
	tailMemWarm = 10_000
	// tailMemRate is the writers' total rate: W4a's 500 events/s would take
	// 200 s per measurement.
	tailMemRate = 2000
	// tailMemWriters commit one event per transaction each, paced to share
	// tailMemRate, so that a load at the head finds a few events at a time.
	tailMemWriters = 4
)

func setupW4c(*config) string {
	return fmt.Sprintf("a child process tails %d events from the head through reflex.Run (default table options, in-memory cursor store, no-op consumers) while %d writer goroutines in the same process commit one event per transaction, %d events/s in total, calling the returned notify func; with 1 and with %d consumers. RSS is the child's VmRSS once every consumer has consumed %d and %d events; peak is its VmHWM; the floor is the VmRSS of the same executable connected and idle. The child keeps up to %d idle connections (database/sql keeps 2 by default, and would open one every few dozen events). In -quick mode it runs once.", tailMemN, tailMemWriters, tailMemRate, w5Consumers, tailMemWarm, tailMemN, tailMemWriters+4)
}

func runW4c(ctx context.Context, c *config, r *WorkloadReport) error {
	// The child's own floor: the same executable, connected and idle.
	out, err := c.runChild(ctx, "idle", "-table", "w4c_idle")
	if err != nil {
		return err
	}
	idle, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		return fmt.Errorf("child idle printed %q", out)
	}
	r.add("idle child RSS (floor)", "MB", "", idle/1024)
	for _, consumers := range []int{1, w5Consumers} {
		table := fmt.Sprintf("w4c_events_%d", consumers)
		if err := createEvents(ctx, c.eng, c.db, table); err != nil {
			return err
		}
		out, err := c.runChild(ctx, "tailmem", "-table", table, "-n", strconv.Itoa(tailMemN), "-consumers", strconv.Itoa(consumers))
		if err != nil {
			return err
		}
		f := strings.Fields(out)
		if len(f) != 3 {
			return fmt.Errorf("child tailmem printed %q", out)
		}
		var kb [3]float64
		for i := range f {
			if kb[i], err = strconv.ParseFloat(f[i], 64); err != nil {
				return fmt.Errorf("child tailmem printed %q", out)
			}
		}
		target := "<= 19.8"
		if consumers > 1 {
			target = "<= 27"
		}
		name := fmt.Sprintf("%d consumer(s): ", consumers)
		r.add(name+"RSS at 10k events", "MB", "", kb[0]/1024)
		r.add(name+"RSS at 100k events", "MB", target, kb[1]/1024)
		r.add(name+"peak RSS", "MB", target, kb[2]/1024)
		r.add(name+"RSS growth 10k->100k", "MB", "", (kb[1]-kb[0])/1024)
		r.add(name+"peak RSS above the floor", "MB", "", kb[2]/1024-idle/1024)
		if _, err := c.db.ExecContext(ctx, "DROP TABLE "+table); err != nil {
			return err
		}
	}
	return nil
}

// childTailMem is the child of W4C: it prints "rssWarmKB rssEndKB peakKB".
func childTailMem(ctx context.Context, eng engine, db *sql.DB, table string, n, consumers int) error {
	// Keep the connections the writers and the streams use at once, as a
	// service sizes its pool: with database/sql's default of 2 idle
	// connections, the pool would close and open one every few dozen
	// events (about 3,000 per run on PostgreSQL), which measures
	// connection set-up, not the tail.
	db.SetMaxIdleConns(tailMemWriters + 4)
	events := rsql.NewEventsTable(table, rsql.WithEventsDialect(eng.dialect))
	defer events.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		warm, done atomic.Int64 // consumers past tailMemWarm, past n
		rssWarm    atomic.Int64
		ready      sync.WaitGroup
		wg         sync.WaitGroup
	)
	errs := make([]error, consumers)
	ready.Add(consumers)
	for i := range consumers {
		var got int
		consumer := reflex.NewConsumer(fmt.Sprintf("tailmem_%d", i), func(context.Context, *reflex.Event) error {
			got++
			switch got {
			case tailMemWarm:
				if warm.Add(1) == int64(consumers) {
					rssWarm.Store(procStatusKB("VmRSS"))
				}
			case n:
				if done.Add(1) == int64(consumers) {
					cancel()
				}
			}
			return nil
		})
		stream := events.ToStream(db)
		opened := func(ctx context.Context, after string, opts ...reflex.StreamOption) (reflex.StreamClient, error) {
			cl, err := stream(ctx, after, opts...)
			ready.Done()
			return cl, err
		}
		spec := reflex.NewSpec(opened, &memStore{m: map[string]string{}}, consumer, reflex.WithStreamFromHead())
		wg.Go(func() { errs[i] = reflex.Run(ctx, spec) })
	}
	ready.Wait()

	var next atomic.Int64 // sequence numbers handed to the writers
	werrs := make([]error, tailMemWriters)
	var writers sync.WaitGroup
	for w := range tailMemWriters {
		writers.Go(func() {
			werrs[w] = pace(ctx, n/tailMemWriters, tailMemRate/tailMemWriters, func(int) error {
				seq := int(next.Add(1) - 1)
				notify, err := writeOne(ctx, db, events, seq)
				if err != nil {
					return err
				}
				notify()
				return nil
			})
		})
	}
	writers.Wait()
	wg.Wait()
	if done.Load() != int64(consumers) {
		for _, err := range append(werrs, errs...) {
			if err != nil {
				return err
			}
		}
		return fmt.Errorf("%d of %d consumers saw all %d events", done.Load(), consumers, n)
	}
	fmt.Println(rssWarm.Load(), procStatusKB("VmRSS"), procStatusKB("VmHWM"))
	return writeMemProfile(consumers)
}

func init() {
	if os.Getenv("REFLEXBENCH_MEMPROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation, for exact in-use figures
	}
}

// writeMemProfile writes, when $REFLEXBENCH_MEMPROFILE names a file, the
// child's heap profile (after a GC) to that file suffixed with "." and the
// number of consumers, and its RSS by kind, memory statistics and
// goroutine count to standard error: what W4C's RSS is made of.
func writeMemProfile(consumers int) error {
	path := os.Getenv("REFLEXBENCH_MEMPROFILE")
	if path == "" {
		return nil
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	const mb = 1 << 20
	fmt.Fprintf(os.Stderr, "rss: anon %d kB, file %d kB; ", procStatusKB("RssAnon"), procStatusKB("RssFile"))
	fmt.Fprintf(os.Stderr, "memstats: heap inuse %.1f MB, idle %.1f MB, released %.1f MB, stacks %.1f MB, other sys %.1f MB, total sys %.1f MB; %d goroutines; %d GCs\n",
		float64(ms.HeapInuse)/mb, float64(ms.HeapIdle)/mb, float64(ms.HeapReleased)/mb, float64(ms.StackSys)/mb,
		float64(ms.Sys-ms.HeapSys-ms.StackSys)/mb, float64(ms.Sys)/mb, runtime.NumGoroutine(), ms.NumGC)
	f, err := os.Create(fmt.Sprintf("%s.%d", path, consumers))
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// procStatusKB returns a field of /proc/self/status in KiB, 0 if unknown.
func procStatusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(name) != field {
			continue
		}
		f := strings.Fields(string(val))
		if len(f) == 0 {
			return 0
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		return kb
	}
	return 0
}

// tailMemDeadline bounds the child: the writers need n/tailMemRate seconds.
func tailMemDeadline(n int) time.Duration {
	return time.Duration(n)*time.Second/tailMemRate + 2*time.Minute
}
