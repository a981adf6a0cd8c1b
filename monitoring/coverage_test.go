package monitoring_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const readmeFile = "README.md"

// metricsSource is the package that defines every collector of reflex.
const metricsSource = "../internal/metrics"

// definedName matches the name of a collector in metricsSource: in the
// options of a vector or as the name of a descriptor.
var definedName = regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*)"(reflex_\w+)"`)

// TestRegisteredCoversMetricsPackage fails if a metric that
// internal/metrics defines is missing from registered, so that the check of
// the expressions knows every metric reflex can export.
func TestRegisteredCoversMetricsPackage(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(metricsSource, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := registered(t)
	var defined int
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range definedName.FindAllStringSubmatch(string(b), -1) {
			defined++
			if !names[m[1]] {
				t.Errorf("%s defines %s, which registered does not gather: create a series of it there", f, m[1])
			}
		}
	}
	if defined < 50 {
		t.Fatalf("found only %d metric names in %s", defined, metricsSource)
	}
}

// ruleTestsYAML is the part of a promtool unit test file the tests read.
type ruleTestsYAML struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// runbookHeading matches the start of an alert's runbook entry in the
// README.
var runbookHeading = regexp.MustCompile(`(?m)^\*\*(Reflex\w+)\*\*`)

// TestAlertsDocumentedAndTested checks that every alert has a severity, a
// summary and a description naming its runbook entry, a runbook entry in
// the README (and the README none for an alert that does not exist), and
// promtool unit tests where it fires and where it does not.
func TestAlertsDocumentedAndTested(t *testing.T) {
	rf := readRules(t)
	b, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	runbooks := map[string]bool{}
	for _, m := range runbookHeading.FindAllStringSubmatch(string(b), -1) {
		runbooks[m[1]] = true
	}
	b, err = os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTestsYAML
	if err := yaml.Unmarshal(b, &rt); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	if len(rt.RuleFiles) != 1 || filepath.Join(filepath.Dir(rulesTestFile), rt.RuleFiles[0]) != rulesFile {
		t.Errorf("%s tests %v, want %s", rulesTestFile, rt.RuleFiles, filepath.Base(rulesFile))
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				quiet[a.Alertname] = true
			}
			for _, e := range a.ExpAlerts {
				if e.ExpAnnotations["summary"] == "" || e.ExpAnnotations["description"] == "" {
					t.Errorf("%s at %s: a firing case that does not check the summary and description", a.Alertname, a.EvalTime)
				}
				firing[a.Alertname] = true
			}
		}
	}

	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			name := r.Alert
			if alerts[name] {
				t.Errorf("alert %s defined twice", name)
			}
			alerts[name] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s has severity %q, want warning or critical", name, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no summary", name)
			}
			if !strings.HasSuffix(r.Annotations["description"], "runbook: "+name+".") {
				t.Errorf("alert %s: its description does not end by naming its runbook entry: %q", name, r.Annotations["description"])
			}
			if !runbooks[name] {
				t.Errorf("alert %s has no runbook entry (**%s**) in %s", name, name, readmeFile)
			}
			if !firing[name] {
				t.Errorf("alert %s has no promtool test where it fires", name)
			}
			if !quiet[name] {
				t.Errorf("alert %s has no promtool test where it does not fire (exp_alerts: [])", name)
			}
		}
	}
	if len(alerts) < 19 {
		t.Errorf("found only %d alerts in %s", len(alerts), rulesFile)
	}
	for name := range runbooks {
		if !alerts[name] {
			t.Errorf("%s has a runbook entry for %s, which %s does not define", readmeFile, name, rulesFile)
		}
	}
	for name := range firing {
		if !alerts[name] {
			t.Errorf("%s tests %s, which %s does not define", rulesTestFile, name, rulesFile)
		}
	}
}
