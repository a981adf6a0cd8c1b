package monitoring_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex/internal/testguard"
)

// TestDashboardAgainstDemo runs the demo (users and welcome services on
// SQLite) with -metrics, a real Prometheus scraping it every second, and
// checks that the dashboard's throughput and lag queries return series of
// the demo's consumer, that the peer panels show the stream its gRPC
// server serves, and that Prometheus evaluates every alert rule without an
// error.
func TestDashboardAgainstDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the demo and Prometheus")
	}
	promBin := tool(t, "prometheus")
	dir := t.TempDir()

	demoBin := filepath.Join(dir, "demo")
	if out, err := exec.Command("go", "build", "-o", demoBin, "../_example/demo").CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // hang guard
	defer cancel()
	demo := exec.CommandContext(ctx, demoBin, "-metrics", "127.0.0.1:0", "-dir", filepath.Join(dir, "data"), "-rate", "50", "-progress", "1s")
	demoOut, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	demo.Stderr = os.Stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(demo) })
	lines := bufio.NewScanner(demoOut)
	var target string
	for target == "" && lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "metrics on http://"); ok {
			target = strings.TrimSuffix(rest, "/metrics")
		}
	}
	if target == "" {
		t.Fatalf("the demo did not print its metrics address: %v", lines.Err())
	}
	go io.Copy(io.Discard, demoOut) // progress lines

	promAddr := freeAddr(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: demo
    static_configs:
      - targets: ["%s"]
`, mustAbs(t, rulesFile), target)), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.CommandContext(ctx, promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var promLog strings.Builder
	prom.Stdout, prom.Stderr = &promLog, &promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop(prom)
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	})

	d := readDashboard(t)
	queries := map[string]string{}
	for _, p := range d.Panels {
		switch p.Title {
		case "Throughput per consumer", "Lag in seconds", "Lag in events", "Peer streams", "Events sent per peer", "Peer lag in events":
			queries[p.Title] = grafanaVars.Replace(p.Targets[0].Expr)
		}
	}
	if len(queries) != 6 {
		t.Fatalf("dashboard panels found: %v", queries)
	}
	// The demo's consumer reads over gRPC, whose client reports the head
	// that the server sends: it has a lag in events too.
	awaitSeries := func(title string, match func(labels map[string]string) bool) {
		t.Helper()
		err := testguard.Poll(2*time.Minute, 200*time.Millisecond, "query "+title, func() (int64, bool, error) {
			series, err := query(ctx, promAddr, queries[title])
			if err != nil {
				return 0, false, nil // Prometheus starting
			}
			for _, s := range series {
				if match(s.Metric) {
					t.Logf("%s: %s = %v", title, s.Metric["consumer_name"], s.Value[1])
					return 1, true, nil
				}
			}
			return int64(len(series)), false, nil
		})
		if err != nil {
			t.Fatalf("%v (query %s)", err, queries[title])
		}
	}
	for _, title := range []string{"Throughput per consumer", "Lag in seconds", "Lag in events"} {
		awaitSeries(title, func(l map[string]string) bool { return l["consumer_name"] == "welcome_emails" })
	}
	// The demo's users service serves the stream that its welcome service
	// reads: the peer panels show it (under "unknown" while the demo's
	// client sends no consumer name).
	for _, title := range []string{"Peer streams", "Events sent per peer", "Peer lag in events"} {
		awaitSeries(title, func(l map[string]string) bool { return l["job"] == "demo" })
	}
	// Prometheus evaluates every alert rule against the demo's series
	// without an error.
	err = testguard.Poll(2*time.Minute, 200*time.Millisecond, "evaluate the alert rules", func() (int64, bool, error) {
		rules, err := alertRules(ctx, promAddr)
		if err != nil {
			return 0, false, nil
		}
		var evaluated int64
		for _, r := range rules {
			switch r.Health {
			case "ok":
				evaluated++
			case "unknown":
			default:
				return 0, false, fmt.Errorf("rule %s: health %s: %s", r.Name, r.Health, r.LastError)
			}
		}
		return evaluated, len(rules) > 0 && evaluated == int64(len(rules)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// promRule is a rule of Prometheus's rules API.
type promRule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// alertRules returns the alerting rules of the Prometheus at addr.
func alertRules(ctx context.Context, addr string) ([]promRule, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/rules?type=alert", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Groups []struct {
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("rules: status %s", body.Status)
	}
	var out []promRule
	for _, g := range body.Data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// promSeries is a series of an instant query's result.
type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
}

// query runs an instant query on the Prometheus at addr.
func query(ctx context.Context, addr, q string) ([]promSeries, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSeries `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, body.Error)
	}
	return body.Data.Result, nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// stop ends a process this test started, politely, and waits for it.
func stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
