package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemoGraph prints the demo's graph after a run: the consumer has
// caught up (lag 0), in both formats; an unknown format is an error.
func TestDemoGraph(t *testing.T) {
	dir := t.TempDir()
	runDemo(t, "-events", "30", "-rate", "2000", "-progress", "50ms", "-dir", dir, "-db", "")
	for format, want := range map[string][]string{
		"dot":     {`digraph "welcome"`, `label="peer users"`, `welcome_emails\nwrites welcome_emails rows\nlag 0 events`, `-> n2 [label="cursor", style=dashed]`},
		"mermaid": {"flowchart LR", `n1(["stream<br/>user_events`, "lag 0 events", `n1 -->|"gRPC"| n3`},
	} {
		var out bytes.Buffer
		if err := run(t.Context(), []string{"-graph", format, "-dir", dir, "-db", ""}, &out); err != nil {
			t.Fatalf("-graph %s: %v", format, err)
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("-graph %s output lacks %q:\n%s", format, w, out.String())
			}
		}
	}
	if err := run(t.Context(), []string{"-graph", "svg", "-dir", dir, "-db", ""}, &bytes.Buffer{}); err == nil {
		t.Error("-graph svg: no error")
	}
}
