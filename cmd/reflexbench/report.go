package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Metric is one figure of a workload, measured once per run.
type Metric struct {
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Values []float64 `json:"values"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	// Target, if set, is the goal for the median, e.g. ">= 0.95".
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
}

// WorkloadReport is the outcome of one workload over all runs.
type WorkloadReport struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Setup   string    `json:"setup"`
	Metrics []*Metric `json:"metrics"`
	Error   string    `json:"error,omitempty"`
}

// Report is what reflexbench prints.
type Report struct {
	Machine   Machine           `json:"machine"`
	Server    map[string]string `json:"server"`
	Runs      int               `json:"runs"`
	Quick     bool              `json:"quick"`
	Workloads []*WorkloadReport `json:"workloads"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	Cores    int    `json:"cores"`
	MemoryMB int64  `json:"memory_mb"`
	GoOS     string `json:"goos"`
	GoArch   string `json:"goarch"`
	Go       string `json:"go"`
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoOS: runtime.GOOS, GoArch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryMB = kb / 1024
			}
		}
	}
	return m
}

// add records one run's value of a metric.
func (w *WorkloadReport) add(name, unit, target string, v float64) {
	for _, m := range w.Metrics {
		if m.Name == name {
			m.Values = append(m.Values, v)
			return
		}
	}
	w.Metrics = append(w.Metrics, &Metric{Name: name, Unit: unit, Target: target, Values: []float64{v}})
}

func (w *WorkloadReport) summarise() {
	for _, m := range w.Metrics {
		s := slices.Clone(m.Values)
		slices.Sort(s)
		m.Min, m.Max = s[0], s[len(s)-1]
		if n := len(s); n%2 == 1 {
			m.Median = s[n/2]
		} else {
			m.Median = (s[n/2-1] + s[n/2]) / 2
		}
		if m.Target != "" {
			met := meets(m.Median, m.Target)
			m.Met = &met
		}
	}
}

// meets evaluates targets of the form ">= x" or "<= x".
func meets(v float64, target string) bool {
	op, num, _ := strings.Cut(target, " ")
	x, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return false
	}
	switch op {
	case ">=":
		return v >= x
	case "<=":
		return v <= x
	}
	return false
}

func (r *Report) printTable(w io.Writer) {
	fmt.Fprintf(w, "machine: %d cores, %d MB, %s %s/%s\n", r.Machine.Cores, r.Machine.MemoryMB, r.Machine.Go, r.Machine.GoOS, r.Machine.GoArch)
	keys := make([]string, 0, len(r.Server))
	for k := range r.Server {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "server: %s = %s\n", k, r.Server[k])
	}
	fmt.Fprintf(w, "runs per workload: %d (quick=%v)\n\n", r.Runs, r.Quick)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tmetric\tmedian\tmin\tmax\tunit\ttarget\tmet")
	for _, wl := range r.Workloads {
		if wl.Error != "" {
			fmt.Fprintf(tw, "%s\tERROR: %s\t\t\t\t\t\t\n", wl.ID, wl.Error)
			continue
		}
		for _, m := range wl.Metrics {
			met := ""
			if m.Met != nil {
				met = map[bool]string{true: "yes", false: "NO"}[*m.Met]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", wl.ID, m.Name, num(m.Median), num(m.Min), num(m.Max), m.Unit, m.Target, met)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, wl := range r.Workloads {
		fmt.Fprintf(w, "%s %s: %s\n", wl.ID, wl.Title, wl.Setup)
	}
}

func num(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
