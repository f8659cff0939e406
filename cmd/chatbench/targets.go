package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// The performance targets make bench judges chatd by, each a ratio to
// bare mochi (the broker chatd embeds, doing no chat work) measured in the
// same run, or a bound of its own. They are defined here and nowhere else.
const (
	baselineTarget = "mochi" // the --target name scripts/bench.sh gives the bare broker

	// Durable direct throughput (saturation) over bare mochi's pass-through.
	minDirectVsBaseline = 1.0
	// chatd's 3.1.1 throughput over its v5 throughput at the same window.
	minV3VsV5 = 0.9
	// Server CPU per message over bare mochi's, at every paced level.
	maxCPUVsBaseline = 1.5
	// p99 send→receive at the fixed load and at half of chatd's maximum.
	maxP99Ms      = 5.0
	fixedLoad     = "10000/s"
	fixedLoadSize = 10
	halfLoad      = "50%"
	// Fan-out p99 into a group over bare mochi's, at a fixed load.
	maxGroupP99VsBaseline = 1.5
	groupLoad             = "200/s"
	groupLoadSize         = 100
	// Server memory per idle connection (RSS growth over the connections
	// held, divided by their count).
	maxBytesPerConn = 16 << 10
)

// targetResult is one target checked on one row.
type targetResult struct {
	target   string
	row      string
	figure   string
	measured bool
	met      bool
}

// targetResults checks every target on the rows it applies to; a target
// with no such row is reported as not measured.
func (d *tableData) targetResults() []targetResult {
	var out []targetResult
	check := func(target string, applies func(rowKey) bool, eval func(rowKey) (targetResult, bool)) {
		n := 0
		for _, row := range d.rows {
			if !applies(row) {
				continue
			}
			if r, ok := eval(row); ok {
				r.target, r.row, r.measured = target, row.String(), true
				out = append(out, r)
				n++
			}
		}
		if n == 0 {
			out = append(out, targetResult{target: target})
		}
	}
	direct := func(k rowKey) bool { return k.scenario == "direct" }
	saturation := func(k rowKey) bool { return direct(k) && k.load == "" }

	check(fmt.Sprintf("direct throughput >= %.1fx bare mochi", minDirectVsBaseline), saturation,
		func(k rowKey) (targetResult, bool) {
			x, ok := d.ratio(k, baselineTarget, figThroughput)
			return targetResult{met: x >= minDirectVsBaseline,
				figure: fmt.Sprintf("%.2fx (chatd %.0f/s, mochi %.0f/s)", x, d.fig(k, "chatd", figThroughput), d.fig(k, baselineTarget, figThroughput))}, ok
		})
	check(fmt.Sprintf("chatd 3.1.1 throughput >= %.1fx v5", minV3VsV5), func(k rowKey) bool { return saturation(k) && k.version == mqtt3Version },
		func(k rowKey) (targetResult, bool) {
			v5, _ := v5Row(k)
			x, ok := d.ratioOf(k, "chatd", v5, "chatd", figThroughput)
			return targetResult{met: x >= minV3VsV5,
				figure: fmt.Sprintf("%.2fx (v3.1.1 %.0f/s, v5 %.0f/s)", x, d.fig(k, "chatd", figThroughput), d.fig(v5, "chatd", figThroughput))}, ok
		})
	check(fmt.Sprintf("server CPU/msg <= %.1fx bare mochi", maxCPUVsBaseline), func(k rowKey) bool { return direct(k) && strings.HasSuffix(k.load, "%") },
		func(k rowKey) (targetResult, bool) {
			x, ok := d.ratio(k, baselineTarget, figCPU)
			return targetResult{met: x <= maxCPUVsBaseline,
				figure: fmt.Sprintf("%.2fx (chatd %.1fµs, mochi %.1fµs)%s", x, d.fig(k, "chatd", figCPU), d.fig(k, baselineTarget, figCPU), d.saturatedNote(k))}, ok
		})
	p99 := func(k rowKey) (targetResult, bool) {
		c := d.cell(k, "chatd")
		if c == nil {
			return targetResult{}, false
		}
		p := median(c.p99)
		return targetResult{met: p <= maxP99Ms && c.saturated == 0,
			figure: fmt.Sprintf("p99 %.2f ms (p50 %.2f ms)%s", p, median(c.p50), d.saturatedNote(k))}, true
	}
	check(fmt.Sprintf("p99 <= %.0f ms at %s on %d pairs", maxP99Ms, fixedLoad, fixedLoadSize),
		func(k rowKey) bool { return direct(k) && k.size == fixedLoadSize && k.load == fixedLoad }, p99)
	check(fmt.Sprintf("p99 <= %.0f ms at %s of chatd's maximum", maxP99Ms, halfLoad),
		func(k rowKey) bool { return direct(k) && k.load == halfLoad }, p99)
	check(fmt.Sprintf("group p99 <= %.1fx bare mochi at %s", maxGroupP99VsBaseline, groupLoad),
		func(k rowKey) bool { return k.scenario == "group" && k.size == groupLoadSize && k.load == groupLoad },
		func(k rowKey) (targetResult, bool) {
			x, ok := d.ratio(k, baselineTarget, figP99)
			return targetResult{met: x <= maxGroupP99VsBaseline && d.saturatedRuns(k) == 0,
				figure: fmt.Sprintf("%.2fx (chatd %.2f ms, mochi %.2f ms)%s", x, d.fig(k, "chatd", figP99), d.fig(k, baselineTarget, figP99), d.saturatedNote(k))}, ok
		})
	// Not a target of chatd's but the check that the figures above are
	// the servers': the load generator applied the fixed load to the bare
	// broker, and what it cost it in cores.
	check("chatbench applies the fixed load", func(k rowKey) bool { return direct(k) && k.size == fixedLoadSize && k.load == fixedLoad },
		func(k rowKey) (targetResult, bool) {
			c := d.cell(k, baselineTarget)
			if c == nil {
				return targetResult{}, false
			}
			sent, us := median(c.sent), median(c.loadGen)
			return targetResult{met: c.saturated == 0,
				figure: fmt.Sprintf("on mochi: sent %.0f/s of %.0f/s offered, chatbench %.1fµs/msg (%.2f cores)%s", sent, median(c.offered), us, us*sent/1e6, d.saturatedNote(k))}, true
		})
	check(fmt.Sprintf("idle connection <= %d bytes", maxBytesPerConn), func(k rowKey) bool { return k.scenario == "connections" },
		func(k rowKey) (targetResult, bool) {
			b := d.fig(k, "chatd", figMemory)
			figure := fmt.Sprintf("%.0f bytes", b)
			if x, ok := d.ratio(k, baselineTarget, figMemory); ok {
				figure += fmt.Sprintf(" (%.2fx mochi)", x)
			}
			return targetResult{met: b <= maxBytesPerConn, figure: figure}, b > 0
		})
	return out
}

// fig is target's figure in row, 0 when it has no runs there.
func (d *tableData) fig(row rowKey, target string, fig func(*cell) float64) float64 {
	if c := d.cell(row, target); c != nil {
		return fig(c)
	}
	return 0
}

// saturatedRuns counts the runs of row, on any server, that fell short of
// the load they offered.
func (d *tableData) saturatedRuns(row rowKey) int {
	n := 0
	for _, t := range d.targets {
		if c := d.cell(row, t); c != nil {
			n += c.saturated
		}
	}
	return n
}

// saturatedNote names the servers some of whose runs of row fell short of
// the offered load: their latency is not that of the named load.
func (d *tableData) saturatedNote(row rowKey) string {
	var s []string
	for _, t := range d.targets {
		if c := d.cell(row, t); c != nil && c.saturated > 0 {
			s = append(s, fmt.Sprintf("%s %d/%d", t, c.saturated, c.runs))
		}
	}
	if len(s) == 0 {
		return ""
	}
	return "; saturated runs: " + strings.Join(s, ", ")
}

func printTargets(w io.Writer, results []targetResult) error {
	fmt.Fprintln(w, "targets")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range results {
		status := "not measured"
		switch {
		case r.measured && r.met:
			status = "met"
		case r.measured:
			status = "NOT MET"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.target, r.row, status, r.figure)
	}
	return tw.Flush()
}
