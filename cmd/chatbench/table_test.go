package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixture is one --json report as chatbench writes it, reduced to the
// fields the table reads.
type fixture struct {
	scenario, target, shape, version, load string
	size, window                           int
	rate, tput, p50, p99, cpu, perConn     float64
	loadGen                                float64
	saturated                              bool
}

func (f fixture) json() string {
	params := fmt.Sprintf(`"mqtt": %q, "window": %d, "rate": %g, "body": 256`, f.version, f.window, f.rate)
	switch {
	case f.scenario == "connections":
		params = `"connections": 2000`
	case f.shape == "group" || f.scenario == "group":
		params += fmt.Sprintf(`, "members": %d`, f.size)
	default:
		params += fmt.Sprintf(`, "pairs": %d`, f.size)
	}
	if f.shape != "" {
		params += fmt.Sprintf(`, "shape": %q`, f.shape)
	}
	if f.load != "" {
		params += fmt.Sprintf(`, "load": %q`, f.load)
	}
	paced := ""
	if f.rate > 0 {
		paced = fmt.Sprintf(`, "offered_rate": %g, "achieved_send_rate": %g, "saturated": %v`, f.rate, f.rate*0.99, f.saturated)
	}
	return fmt.Sprintf(`{"scenario": %q, "target": %q, "params": {%s}, "throughput": %g,
 "latency": {"count": 100, "p50_ms": %g, "p90_ms": 0, "p99_ms": %g, "max_ms": 0},
 "cpu_us_per_delivery": %g, "loadgen_cpu_us_per_delivery": %g, "bytes_per_conn": %g%s}`,
		f.scenario, f.target, params, f.tput, f.p50, f.p99, f.cpu, f.loadGen, f.perConn, paced)
}

// key is the row the fixture's report lands in.
func (f fixture) key(t *testing.T) rowKey {
	t.Helper()
	var r report
	if err := json.Unmarshal([]byte(f.json()), &r); err != nil {
		t.Fatal(err)
	}
	return r.key()
}

// writeFixtures writes each fixture to a file of its own, as make bench
// leaves them, and returns the paths.
func writeFixtures(t *testing.T, fs []fixture) []string {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for i, f := range fs {
		p := filepath.Join(dir, fmt.Sprintf("%03d.json", i))
		if err := os.WriteFile(p, []byte(f.json()), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	return files
}

// on makes a fixture of f for target: chatd runs its own scenario, the
// plain brokers run raw with f's shape.
func on(target string, f fixture) fixture {
	f.target = target
	if target != "chatd" && f.scenario != "connections" {
		f.shape = "pairs"
		if f.scenario == "group" {
			f.shape = "group"
		}
		f.scenario = "raw"
	}
	return f
}

func TestRowNames(t *testing.T) {
	tests := []struct {
		name string
		f    fixture
		want string
	}{
		{"direct saturation", fixture{scenario: "direct", version: "5", size: 10, window: 100}, "direct 10 pairs v5 w100"},
		{"raw pairs keep their version", on("mochi", fixture{scenario: "direct", version: "3.1.1", size: 10, window: 100}), "direct 10 pairs v3.1.1 w100"},
		{"raw group", on("mochi", fixture{scenario: "group", version: "5", size: 100, window: 100}), "group of 100 v5 w100"},
		{"fixed rate", fixture{scenario: "direct", version: "3.1.1", size: 10, window: 100, rate: 10000}, "direct 10 pairs v3.1.1 w100 @10000/s"},
		{"labelled level", on("mosquitto", fixture{scenario: "direct", version: "5", size: 10, window: 100, rate: 8604, load: "50%"}), "direct 10 pairs v5 w100 @50%"},
		{"connections", fixture{scenario: "connections"}, "connections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := loadTable(writeFixtures(t, []fixture{tt.f}))
			if err != nil {
				t.Fatal(err)
			}
			if len(d.rows) != 1 || d.rows[0].String() != tt.want {
				t.Fatalf("rows %v, want [%s]", d.rows, tt.want)
			}
		})
	}
}

// TestReportRow names rows from reports' parameters as they are decoded
// from JSON (numbers as float64), including reports written before
// chatbench spoke 3.1.1 or named the window, and cluster rows, whose names
// are unchanged.
func TestReportRow(t *testing.T) {
	tests := []struct {
		r    report
		want string
	}{
		{report{Scenario: "direct", Params: map[string]any{"rate": 0.0}}, "direct v5"},
		{report{Scenario: "raw", Params: map[string]any{"shape": "pairs", "rate": 0.0}}, "direct v5"},
		{report{Scenario: "raw", Params: map[string]any{"shape": "group"}}, "group v5"},
		{report{Scenario: "direct", Params: map[string]any{"rate": 5000.0}}, "direct v5 @5000/s"},
		{report{Scenario: "connections"}, "connections"},
		{report{Scenario: "direct", Params: map[string]any{"rate": 0.0, "mqtt": "3.1.1"}}, "direct v3.1.1"},
		{report{Scenario: "raw", Params: map[string]any{"shape": "pairs", "rate": 10000.0, "mqtt": "3.1.1", "pairs": 10.0, "window": 100.0}}, "direct 10 pairs v3.1.1 w100 @10000/s"},
		{report{Scenario: "direct", Params: map[string]any{"rate": 0.0, "pairs": 50.0, "window": 8.0}}, "direct 50 pairs v5 w8"},
		{report{Scenario: "raw", Params: map[string]any{"shape": "pairs", "rate": 0.0, "pairs": 50.0, "mqtt": "3.1.1"}}, "direct 50 pairs v3.1.1"},
		{report{Scenario: "history"}, "history"},
		{report{Scenario: "cluster", Params: map[string]any{"placement": "cross", "mqtt": "5", "rate": 150.0}}, "cluster-cross v5@150/s"},
		{report{Scenario: "cluster", Params: map[string]any{"placement": "same", "mqtt": "3.1.1", "rate": 0.0}}, "cluster-same v3.1.1"},
	}
	for _, tt := range tests {
		if got := tt.r.row(); got != tt.want {
			t.Errorf("row(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestTableRatios(t *testing.T) {
	sat := func(v string) fixture { return fixture{scenario: "direct", version: v, size: 10, window: 100} }
	var fs []fixture
	// Three rounds: the medians are chatd 20,000 (v5) and 15,000 (3.1.1),
	// mochi 25,000 (v5) and 10,000 (3.1.1), Mosquitto 40,000 (v5).
	for i, x := range []float64{1, 0.9, 1.2} {
		for _, f := range []struct {
			target, v string
			tput      float64
			p99, cpu  float64
		}{
			{"chatd", "5", 20000, 8, 60}, {"mochi", "5", 25000, 4, 20}, {"mosquitto", "5", 40000, 2, 10},
			{"chatd", "3.1.1", 15000, 9, 70}, {"mochi", "3.1.1", 10000, 3, 35},
		} {
			r := on(f.target, sat(f.v))
			// Round 2 is the median of each figure; the others straddle it.
			scale := x
			if i == 1 {
				scale = 1
			}
			r.tput, r.p99, r.cpu = f.tput*scale, f.p99*scale, f.cpu*scale
			fs = append(fs, r)
		}
	}
	d, err := loadTable(writeFixtures(t, fs))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.targets, ",") != "chatd,mochi,mosquitto" {
		t.Fatalf("targets %v", d.targets)
	}
	v5, v3 := sat("5").key(t), sat("3.1.1").key(t)
	tests := []struct {
		name     string
		ra       rowKey
		a        string
		rb       rowKey
		b        string
		fig      func(*cell) float64
		want     float64
		measured bool
	}{
		{"throughput v5 / mochi", v5, "chatd", v5, "mochi", figThroughput, 0.8, true},
		{"throughput v5 / mosquitto", v5, "chatd", v5, "mosquitto", figThroughput, 0.5, true},
		{"p99 v5 / mochi", v5, "chatd", v5, "mochi", figP99, 2, true},
		{"cpu v3.1.1 / mochi", v3, "chatd", v3, "mochi", figCPU, 2, true},
		{"chatd v3.1.1 / v5", v3, "chatd", v5, "chatd", figThroughput, 0.75, true},
		{"no mosquitto 3.1.1 run", v3, "chatd", v3, "mosquitto", figThroughput, 0, false},
		{"no memory figure", v5, "chatd", v5, "mochi", figMemory, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := d.ratioOf(tt.ra, tt.a, tt.rb, tt.b, tt.fig)
			if ok != tt.measured || math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("ratio = %v, %v; want %v, %v", got, ok, tt.want, tt.measured)
			}
		})
	}
	var out bytes.Buffer
	if err := d.printRatios(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"throughput v3.1.1/v5", "direct 10 pairs v3.1.1 w100", "0.75x", "0.80x", "0.50x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ratios lack %q:\n%s", want, out.String())
		}
	}
}

func TestTargets(t *testing.T) {
	direct := func(v string, pairs int, rate float64, load string) fixture {
		return fixture{scenario: "direct", version: v, size: pairs, window: 100, rate: rate, load: load}
	}
	with := func(f fixture, tput, p99, cpu float64) fixture {
		// chatbench's own CPU: as much as the server's, for the fixture.
		f.tput, f.p99, f.p50, f.cpu, f.loadGen = tput, p99, p99/4, cpu, cpu
		return f
	}
	saturated := func(f fixture) fixture { f.saturated = true; return f }
	all := []fixture{
		// Saturation: v5 beats mochi, 3.1.1 does not; 3.1.1 is 0.6x of v5.
		on("chatd", with(direct("5", 10, 0, ""), 30000, 50, 40)), on("mochi", with(direct("5", 10, 0, ""), 25000, 20, 25)),
		on("chatd", with(direct("3.1.1", 10, 0, ""), 18000, 60, 50)), on("mochi", with(direct("3.1.1", 10, 0, ""), 24000, 20, 25)),
		// 50% level: CPU 1.2x mochi's and p99 3 ms; 100%: CPU 2x and saturated.
		on("chatd", with(direct("5", 10, 15000, "50%"), 15000, 3, 30)), on("mochi", with(direct("5", 10, 15000, "50%"), 15000, 1, 25)),
		on("chatd", saturated(with(direct("5", 10, 30000, "100%"), 27000, 40, 50))), on("mochi", with(direct("5", 10, 30000, "100%"), 30000, 2, 25)),
		// Fixed 10,000/s on 10 pairs: p99 6 ms, not met.
		on("chatd", with(direct("5", 10, 10000, ""), 10000, 6, 30)), on("mochi", with(direct("5", 10, 10000, ""), 10000, 2, 20)),
		// Group at 200/s: 1.4x mochi's p99.
		on("chatd", with(fixture{scenario: "group", version: "5", size: 100, window: 100, rate: 200}, 19800, 7, 15)),
		on("mochi", with(fixture{scenario: "group", version: "5", size: 100, window: 100, rate: 200}, 19800, 5, 10)),
		{scenario: "connections", target: "chatd", perConn: 40000}, {scenario: "connections", target: "mochi", perConn: 39000},
	}
	files := writeFixtures(t, all)
	d, err := loadTable(files)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		target, row string
		measured    bool
		met         bool
		figure      string // a part of it
	}
	wants := []want{
		{"direct throughput >= 1.0x bare mochi", "direct 10 pairs v5 w100", true, true, "1.20x (chatd 30000/s, mochi 25000/s)"},
		{"direct throughput >= 1.0x bare mochi", "direct 10 pairs v3.1.1 w100", true, false, "0.75x"},
		{"chatd 3.1.1 throughput >= 0.9x v5", "direct 10 pairs v3.1.1 w100", true, false, "0.60x (v3.1.1 18000/s, v5 30000/s)"},
		{"server CPU/msg <= 1.5x bare mochi", "direct 10 pairs v5 w100 @50%", true, true, "1.20x"},
		{"server CPU/msg <= 1.5x bare mochi", "direct 10 pairs v5 w100 @100%", true, false, "2.00x (chatd 50.0µs, mochi 25.0µs); saturated runs: chatd 1/1"},
		{"p99 <= 5 ms at 10000/s on 10 pairs", "direct 10 pairs v5 w100 @10000/s", true, false, "p99 6.00 ms"},
		{"p99 <= 5 ms at 50% of chatd's maximum", "direct 10 pairs v5 w100 @50%", true, true, "p99 3.00 ms"},
		{"group p99 <= 1.5x bare mochi at 200/s", "group of 100 v5 w100 @200/s", true, true, "1.40x"},
		{"chatbench applies the fixed load", "direct 10 pairs v5 w100 @10000/s", true, true, "on mochi: sent 9900/s of 10000/s offered, chatbench 20.0µs/msg (0.20 cores)"},
		{"idle connection <= 16384 bytes", "connections", true, false, "40000 bytes (1.03x mochi)"},
	}
	got := d.targetResults()
	if len(got) != len(wants) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		g := got[i]
		if g.target != w.target || g.row != w.row || g.measured != w.measured || g.met != w.met || !strings.Contains(g.figure, w.figure) {
			t.Errorf("result %d = %+v, want %+v", i, g, w)
		}
	}

	// The printed table has the three parts, the targets last.
	var printed bytes.Buffer
	if err := printTable(&printed, files); err != nil {
		t.Fatal(err)
	}
	medians, rest, _ := strings.Cut(printed.String(), "chatd ratios")
	ratios, targets, ok := strings.Cut(rest, "\ntargets\n")
	if !ok || !strings.Contains(medians, "1/1 runs") || !strings.Contains(ratios, "1.20x") ||
		!strings.Contains(targets, "NOT MET") || strings.Count(targets, "\n") != len(wants) {
		t.Errorf("table:\n%s", printed.String())
	}

	// A saturated run never meets a latency target, whatever its p99.
	d, err = loadTable(writeFixtures(t, []fixture{on("chatd", saturated(with(direct("3.1.1", 10, 10000, ""), 8000, 2, 30)))}))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range d.targetResults() {
		if r.row == "direct 10 pairs v3.1.1 w100 @10000/s" && (r.met || !strings.Contains(r.figure, "saturated runs: chatd 1/1")) {
			t.Errorf("saturated run: %+v", r)
		}
		if r.row == "" && r.measured {
			t.Errorf("%+v measured without a row", r)
		}
	}

	// Nothing to judge: every target is reported, as not measured.
	var out bytes.Buffer
	if err := printTargets(&out, (&tableData{cells: map[tableKey]*cell{}}).targetResults()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "not measured"); n != 8 {
		t.Fatalf("%d targets not measured, want 8:\n%s", n, out.String())
	}
}

func TestCPUAt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	samples := []cpuSample{{at(0), 100 * time.Millisecond}, {at(20), 110 * time.Millisecond}, {at(40), 130 * time.Millisecond}}
	tests := []struct {
		name string
		at   time.Time
		want time.Duration
	}{
		{"before the first sample", at(-5), 100 * time.Millisecond},
		{"on a sample", at(20), 110 * time.Millisecond},
		{"halfway", at(10), 105 * time.Millisecond},
		{"a quarter into the second span", at(25), 115 * time.Millisecond},
		{"after the last sample", at(60), 130 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuAt(samples, tt.at); got != tt.want {
				t.Fatalf("cpuAt = %v, want %v", got, tt.want)
			}
		})
	}
	if got := cpuAt(nil, t0); got != 0 {
		t.Fatalf("no samples: %v", got)
	}
}

// TestTableWithoutTargets: a table of cluster runs (make bench-cluster's)
// has no targets block, as none of them could be measured there.
func TestTableWithoutTargets(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster.json")
	run := `{"scenario": "cluster", "target": "chatd", "params": {"placement": "same", "mqtt": "5", "rate": 0, "pairs": 10},
 "throughput": 1000, "latency": {"count": 10, "p50_ms": 1, "p99_ms": 2}}`
	if err := os.WriteFile(p, []byte(run), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printTable(&out, []string{p}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cluster-same v5") || strings.Contains(out.String(), "targets") {
		t.Fatalf("table:\n%s", out.String())
	}
}
