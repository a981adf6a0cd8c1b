package monitoring_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/seed-e488ba2e/reflex/internal/metrics"
)

const (
	rulesFile     = "prometheus/reflex-alerts.yml"
	rulesTestFile = "prometheus/reflex-alerts_test.yml"
	dashboardFile = "grafana/reflex-dashboard.json"
)

// aptLine installs promtool and prometheus (Debian's package).
const aptLine = "apt-get update && apt-get install -y prometheus"

// tool returns the path of a Prometheus tool: skipped when missing,
// except under CI=true, where it fails.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/bin/" + name; fileExists(p) {
		return p
	}
	msg := fmt.Sprintf("%s is not installed (Debian: %s; scripts/tools.sh installs it)", name, aptLine)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestRulesPromtool(t *testing.T) {
	promtool := tool(t, "promtool")
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// rulesFileYAML is the part of a rules file the tests read.
type rulesFileYAML struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) rulesFileYAML {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFileYAML
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return rf
}

// dashboardJSON is the part of the dashboard the tests read.
type dashboardJSON struct {
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

func readDashboard(t *testing.T) dashboardJSON {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardJSON
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// grafanaVars replaces the dashboard's variables with values Prometheus
// accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$job", ".*", "$consumer", ".*", "$table", ".*")

// expression is a PromQL expression and where it comes from.
type expression struct{ where, expr string }

// expressions returns every PromQL expression of the rules and the
// dashboard, with the dashboard's variables replaced.
func expressions(t *testing.T) []expression {
	t.Helper()
	rf := readRules(t)
	var out []expression
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out = append(out, expression{"alert " + r.Alert, r.Expr})
		}
	}
	d := readDashboard(t)
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out = append(out, expression{fmt.Sprintf("panel %q target %d", p.Title, i), grafanaVars.Replace(tg.Expr)})
		}
	}
	for i, a := range d.Annotations.List {
		out = append(out, expression{fmt.Sprintf("annotation %d", i), a.Expr})
	}
	for _, v := range d.Templating.List {
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		// label_values(SELECTOR, label) runs SELECTOR as a series query.
		if m := labelValues.FindStringSubmatch(s); m != nil {
			out = append(out, expression{"variable " + v.Name, m[1]})
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d expressions", len(out))
	}
	return out
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// TestExpressionsParse checks that every expression of the dashboard is
// valid PromQL, with Prometheus's own parser (promtool, on a rules file
// of one recording rule per expression); the alerts' are checked by
// TestRulesPromtool.
func TestExpressionsParse(t *testing.T) {
	promtool := tool(t, "promtool")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range expressions(t) {
		q, err := json.Marshal(e.expr) // a JSON string is a YAML string
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - record: dashboard_expr_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules of the dashboard's expressions: %v\n%s", err, out)
	}
}

// registered returns the names of the metrics that reflex registers with
// the default registry, as Prometheus stores them (a histogram's _bucket,
// _sum and _count). Vectors only show metrics with a series, so it
// creates one series of each family through internal/metrics first.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	const x = "monitoring_test"
	c := metrics.NewConsumer(x, nil, time.Hour)
	c.Start(time.Now(), 0, false)
	c.Done(time.Now())
	c.Skipped()
	c.Error()
	metrics.Lags.StartRun(x, 0, func() (int64, bool) { return 1, true })
	metrics.DeadLettered(x)
	metrics.NewEventsTable(x).Loading.Observe(0)
	metrics.NewEventsTable(x).Deserialization.Observe(0)
	metrics.CursorsTableSet(x)
	metrics.CursorsTableFlushErrors(x)
	metrics.CursorsTableConcurrentWriters(x)
	metrics.LeaseShardsOwned(x)
	metrics.LeaseClaimed(x, 0, 1)
	metrics.LeaseLost(x, 0)
	metrics.LeaseRebalances(x)
	metrics.ServerStreams(0)
	metrics.ServerStreamRejected()
	metrics.ServerBufferedBytes(0)
	metrics.BatchBufferLength(x)
	metrics.KeyedInFlight(x)
	metrics.NewRBlob(x)
	metrics.NewRBlobArchiver(x)
	metrics.NewTrim(x).Statement.Observe(0)
	metrics.NewBreaker(x).Reconnect()
	peer := metrics.OpenPeerStream(x, func() (int64, bool) { return 1, true })
	defer peer.Close()
	peer.Sent(1, 1)
	peer.SendError()

	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		if mf.GetType().String() == "HISTOGRAM" {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
	}
	return names
}

// prometheusOwn are series that Prometheus itself makes.
var prometheusOwn = map[string]bool{"ALERTS": true, "ALERTS_FOR_STATE": true, "up": true}

// TestExpressionsUseRegisteredMetrics fails if an expression of the rules
// or the dashboard names a metric that the library does not register.
func TestExpressionsUseRegisteredMetrics(t *testing.T) {
	names := registered(t)
	used := map[string]bool{}
	for _, e := range expressions(t) {
		ms, err := metricNames(e.expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", e.where, err, e.expr)
			continue
		}
		if len(ms) == 0 && !strings.Contains(e.expr, "__name__") {
			t.Errorf("%s names no metric: %s", e.where, e.expr)
		}
		for _, m := range ms {
			used[m] = true
			if !names[m] && !prometheusOwn[m] {
				t.Errorf("%s names %s, which reflex does not register", e.where, m)
			}
		}
	}
	// The dashboard covers what it promises.
	for _, m := range []string{"reflex_consumer_latency_seconds_count", "reflex_consumer_lag_events", "reflex_consumer_lag_seconds",
		"reflex_consumer_latency_seconds_bucket", "reflex_events_table_open_gaps", "reflex_cursors_table_set_total",
		"reflex_events_table_rcache_hits_total", "reflex_consumer_dead_lettered_events_count", "reflex_lease_losses_total",
		"reflex_lease_shards_owned", "reflex_lease_claims_total", "reflex_lease_epoch",
		"reflex_server_peer_streams", "reflex_server_peer_events_sent_total", "reflex_server_peer_sent_bytes_total",
		"reflex_server_peer_lag_events", "reflex_server_peer_send_errors_total",
		"reflex_client_breaker_state", "reflex_client_reconnect_attempts_total",
		"reflex_events_table_trimmed_rows_total", "reflex_events_table_oldest_retained_timestamp_seconds",
		"reflex_events_table_trim_statement_seconds_bucket", "reflex_events_table_trim_passes_total",
		"reflex_rblob_archived_events_total", "reflex_rblob_decode_errors_total"} {
		if !used[m] {
			t.Errorf("no expression uses %s", m)
		}
	}
}

func TestDashboardLayout(t *testing.T) {
	d := readDashboard(t)
	ids := map[int]bool{}
	var titles []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q has grid position %+v", p.Title, p.GridPos)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		titles = append(titles, p.Title)
	}
	for i, p := range d.Panels {
		for _, q := range d.Panels[:i] {
			a, b := p.GridPos, q.GridPos
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("panels %q and %q overlap: %+v, %+v", p.Title, q.Title, a, b)
			}
		}
	}
	sort.Strings(titles)
	for _, want := range []string{"Throughput per consumer", "Lag in events", "Lag in seconds", "Consume latency",
		"Open gaps", "Oldest gap age", "Cursor writes", "Cursor flush errors and concurrent writers",
		"Read-through cache hit ratio", "Consumer errors and dead letters", "Shard leases",
		"Peer streams", "Peer lag in events", "Events sent per peer", "Bytes sent per peer", "Client circuit breakers",
		"Trimmed rows", "Oldest retained event age", "Trim statement latency", "Archived events"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q (panels: %v)", want, titles)
		}
	}
}

// promqlWords are the identifiers of PromQL that are not metric names
// even when they are not followed by "(": keywords, and aggregation
// operators (followed by a by or without clause).
var promqlWords = map[string]bool{"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true,
	"ignoring": true, "group_left": true, "group_right": true, "bool": true, "offset": true, "inf": true, "nan": true, "atan2": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true}

// labelLists are the keywords followed by a list of label names.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// metricNames returns the metric names of a PromQL expression: the
// identifiers that are not functions, keywords, label names (in braces or
// in by/without/on/ignoring/group_* lists), strings, numbers or
// durations. It fails on unbalanced brackets or an unterminated string
// (promtool checks the rest of the syntax).
func metricNames(expr string) ([]string, error) {
	var (
		names  []string
		stack  []byte // open brackets
		labels []bool // whether each open paren is a label list
		lastKw string // keyword just before, for label lists
	)
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	inBraces := func() bool { return slices.Contains(stack, '{') || slices.Contains(stack, '[') }
	inLabelList := func() bool { return len(labels) > 0 && labels[len(labels)-1] }
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i = j + 1
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '(' || c == '{' || c == '[':
			stack = append(stack, c)
			if c == '(' {
				labels = append(labels, labelLists[lastKw])
			}
			lastKw = ""
			i++
		case c == ')' || c == '}' || c == ']':
			open := map[byte]byte{')': '(', '}': '{', ']': '['}[c]
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return nil, fmt.Errorf("unbalanced %q at %d", c, i)
			}
			stack = stack[:len(stack)-1]
			if c == ')' {
				labels = labels[:len(labels)-1]
			}
			i++
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++ // a number or a duration such as 10m
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\n' || expr[k] == '\t') {
				k++
			}
			call := k < len(expr) && expr[k] == '('
			switch {
			case inBraces() || inLabelList():
			case promqlWords[strings.ToLower(word)]:
			case call:
			default:
				names = append(names, word)
			}
			lastKw = strings.ToLower(word)
			i = j
		default:
			i++
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return names, nil
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`sum by (consumer_name) (rate(reflex_a_total{job=~"$job", x="by (y)"}[1m]))`, "[reflex_a_total]"},
		{`max by (job, c) (a) > 0 and on (job, c) sum by (job, c) (rate(b_count[10m])) == 0`, "[a b_count]"},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) / ignoring(le) group_left (x) c offset 5m`, "[h_bucket c]"},
		{`ALERTS{alertname=~"Reflex.*"}`, "[ALERTS]"},
		{`{__name__=~"reflex_.*"}`, "[]"},
		{`1 + 2e3`, "[]"},
	} {
		got, err := metricNames(tc.expr)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("metricNames(%s) = %v, %v; want %s", tc.expr, got, err, tc.want)
		}
	}
	for _, bad := range []string{`sum(a`, `a{b="c}`, `a]`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%s) = nil error", bad)
		}
	}
}
