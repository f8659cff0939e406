package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// rowKey is what a report is compared as: chatd's direct chat against raw
// pairs on the plain brokers, its group chat against raw fan-out, each
// with the clients' MQTT version, the window and the load of the run.
type rowKey struct {
	scenario string // direct, group, cluster-same, connections, history, …
	size     int    // pairs, or group members with the sender; 0 elsewhere
	version  string // the clients' MQTT version, 5 or 3.1.1; "" outside traffic
	window   int    // sends in flight per sender
	load     string // "" = as fast as the window allows; a --load-label (50%); or the rate (10000/s)
}

// key reads the row of a report from its scenario and parameters.
func (r report) key() rowKey {
	k := rowKey{scenario: r.Scenario}
	switch r.Scenario {
	case "raw":
		k.scenario = "direct"
		if r.Params["shape"] == "group" {
			k.scenario = "group"
		}
	case "cluster":
		k.scenario = fmt.Sprintf("cluster-%v", r.Params["placement"])
	case "direct", "group":
	default:
		return k
	}
	k.size = int(paramNum(r.Params, "pairs"))
	if k.scenario == "group" {
		k.size = int(paramNum(r.Params, "members"))
	}
	k.version, _ = r.Params["mqtt"].(string)
	if k.version == "" {
		k.version = "5" // reports from before chatbench spoke 3.1.1
	}
	k.window = int(paramNum(r.Params, "window"))
	if label, _ := r.Params["load"].(string); label != "" {
		k.load = label
	} else if rate := paramNum(r.Params, "rate"); rate > 0 {
		k.load = fmt.Sprintf("%.0f/s", rate)
	}
	return k
}

func paramNum(p map[string]any, name string) float64 {
	f, _ := p[name].(float64)
	if i, ok := p[name].(int); ok {
		f = float64(i)
	}
	return f
}

func (k rowKey) String() string {
	var b strings.Builder
	switch {
	case strings.HasPrefix(k.scenario, "cluster-"):
		fmt.Fprintf(&b, "%s v%s", k.scenario, k.version)
		if k.load != "" {
			b.WriteString("@" + k.load)
		}
		return b.String()
	case k.scenario == "direct" && k.size > 0:
		fmt.Fprintf(&b, "direct %d pairs", k.size)
	case k.scenario == "group" && k.size > 0:
		fmt.Fprintf(&b, "group of %d", k.size)
	case k.scenario == "direct" || k.scenario == "group":
		b.WriteString(k.scenario)
	default:
		return k.scenario
	}
	b.WriteString(" v" + k.version)
	if k.window > 0 {
		fmt.Fprintf(&b, " w%d", k.window)
	}
	if k.load != "" {
		b.WriteString(" @" + k.load)
	}
	return b.String()
}

// row is the name of the report's row in the table.
func (r report) row() string { return r.key().String() }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cell holds one server's runs of one row.
type cell struct {
	runs                         int
	tput, p50, p99, perConn, cpu []float64
	offered, sent, loadGen       []float64
	saturated                    int // paced runs that fell short of the offered load
	errors                       int64
	cluster                      []clusterFigures
}

// clusterFigures are the per-message figures of one cluster run.
type clusterFigures struct {
	nodeCPU            map[string]float64 // node id → µs per message
	natsIn, natsOut    float64            // NATS messages per chat message
	natsInB, natsOutB  float64            // NATS bytes per chat message
	forwarded, loadGen float64            // forwards per send; chatbench µs per message
	nodeOrder          []string
	idleCPU, idleNATS  float64 // idle: the nodes' CPU ms/s summed, NATS msgs/s in
	relays, events     float64 // per-user relays per message, and of them events
}

type tableKey struct {
	row    rowKey
	target string
}

// tableData is every report of a table, by row and server.
type tableData struct {
	rows    []rowKey
	targets []string // chatd first, then the others by name
	cells   map[tableKey]*cell
}

func (d *tableData) cell(row rowKey, target string) *cell { return d.cells[tableKey{row, target}] }

// loadTable reads --json reports; isolation, abuse and attachments runs
// print their own figures and are left out.
func loadTable(files []string) (*tableData, error) {
	d := &tableData{cells: map[tableKey]*cell{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if r.Isolation != nil || r.Abuse != nil || r.Attachments != nil {
			continue
		}
		d.add(r)
	}
	slices.SortStableFunc(d.targets, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "chatd":
			return -1
		case b == "chatd":
			return 1
		}
		return strings.Compare(a, b)
	})
	return d, nil
}

func (d *tableData) add(r report) {
	k := tableKey{r.key(), r.Target}
	c := d.cells[k]
	if c == nil {
		c = &cell{}
		d.cells[k] = c
		if !slices.Contains(d.rows, k.row) {
			d.rows = append(d.rows, k.row)
		}
		if !slices.Contains(d.targets, k.target) {
			d.targets = append(d.targets, k.target)
		}
	}
	c.runs++
	c.tput = append(c.tput, r.Throughput)
	c.p50 = append(c.p50, r.Latency.P50)
	c.p99 = append(c.p99, r.Latency.P99)
	c.perConn = append(c.perConn, r.BytesPerConn)
	c.cpu = append(c.cpu, r.CPUPerDelivery)
	c.loadGen = append(c.loadGen, r.LoadGenPerDeliv)
	if r.OfferedRate > 0 {
		c.offered = append(c.offered, r.OfferedRate)
		c.sent = append(c.sent, r.SendRate)
	} else {
		c.sent = append(c.sent, r.SendsPerSec)
	}
	if r.Saturated {
		c.saturated++
	}
	c.errors += r.Errors
	if cr := r.Cluster; cr != nil {
		f := clusterFigures{nodeCPU: map[string]float64{}, loadGen: cr.LoadGenCPUPer}
		for _, n := range cr.Nodes {
			f.nodeCPU[n.ID] = n.CPUPerMsg
			f.nodeOrder = append(f.nodeOrder, n.ID)
		}
		if cr.NATS != nil {
			f.natsIn, f.natsOut, f.natsInB, f.natsOutB = cr.NATS.InMsgsPerMsg, cr.NATS.OutMsgsPerMsg, cr.NATS.InBytesPerMsg, cr.NATS.OutBytesPerMsg
		}
		if r.Acked > 0 {
			f.forwarded = cr.ForwardsOK / float64(r.Acked)
		}
		if r.Received > 0 {
			f.relays, f.events = cr.RelaysOut/float64(r.Received), cr.RelaysOutEvent/float64(r.Received)
		}
		if cr.Idle != nil {
			for _, ms := range cr.Idle.NodeCPU {
				f.idleCPU += ms
			}
			f.idleNATS = cr.Idle.NATSInMsgs
		}
		c.cluster = append(c.cluster, f)
	}
}

// Figures of a cell that ratios are taken of: medians over its runs.
var (
	figThroughput = func(c *cell) float64 { return median(c.tput) }
	figP99        = func(c *cell) float64 { return median(c.p99) }
	figCPU        = func(c *cell) float64 { return median(c.cpu) }
	figMemory     = func(c *cell) float64 { return median(c.perConn) }
)

// ratio is chatd's figure over target's in row; false when either is
// missing or zero.
func (d *tableData) ratio(row rowKey, target string, fig func(*cell) float64) (float64, bool) {
	return d.ratioOf(row, "chatd", row, target, fig)
}

// ratioOf is a's figure in row ra over b's in row rb.
func (d *tableData) ratioOf(ra rowKey, a string, rb rowKey, b string, fig func(*cell) float64) (float64, bool) {
	ca, cb := d.cell(ra, a), d.cell(rb, b)
	if ca == nil || cb == nil {
		return 0, false
	}
	num, den := fig(ca), fig(cb)
	if num == 0 || den == 0 {
		return 0, false
	}
	return num / den, true
}

// v5Row is the MQTT 5 row a 3.1.1 saturation row's chatd throughput is
// compared with: same scenario, size and window. Paced rows offer the same
// rate to both versions, or shares of different maxima: no comparison.
func v5Row(k rowKey) (rowKey, bool) {
	if k.version != mqtt3Version || k.load != "" {
		return rowKey{}, false
	}
	k.version = "5"
	return k, true
}

// printTable reads --json reports and prints the median of each figure
// per row and server, chatd's ratios to the other servers, and the
// performance targets met or not.
func printTable(w io.Writer, files []string) error {
	d, err := loadTable(files)
	if err != nil {
		return err
	}
	if err := d.printMedians(w); err != nil {
		return err
	}
	if err := d.printClusterTable(w); err != nil {
		return err
	}
	if err := d.printRatios(w); err != nil {
		return err
	}
	// The targets are judged on make bench's scenarios; a table of other
	// runs (make bench-cluster's) would only list them as not measured.
	if !slices.ContainsFunc(d.rows, func(k rowKey) bool {
		return k.scenario == "direct" || k.scenario == "group" || k.scenario == "connections"
	}) {
		return nil
	}
	return printTargets(w, d.targetResults())
}

// printMedians is one line per row and server. Throughput is deliveries
// per second; a paced row shows the offered and the achieved send rate,
// and how many of its runs fell short of the offered load.
func (d *tableData) printMedians(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\truns\toffered msg/s\tsent msg/s\tdeliveries/s\tp50 ms\tp99 ms\tserver µs/msg\tchatbench µs/msg\tbytes/conn\terrors\tsaturated\t")
	for _, row := range d.rows {
		for _, t := range d.targets {
			c := d.cell(row, t)
			if c == nil {
				continue
			}
			offered, sat := "", ""
			if len(c.offered) > 0 {
				offered = fmt.Sprintf("%.0f", median(c.offered))
			}
			if c.saturated > 0 {
				sat = fmt.Sprintf("%d/%d runs", c.saturated, c.runs)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", row, t, c.runs, offered,
				blankZero("%.0f", median(c.sent)), blankZero("%.0f", median(c.tput)), blankZero("%.2f", median(c.p50)), blankZero("%.2f", median(c.p99)),
				blankZero("%.1f", median(c.cpu)), blankZero("%.1f", median(c.loadGen)), blankZero("%.0f", median(c.perConn)), c.errors, sat)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

func blankZero(format string, x float64) string {
	if x == 0 {
		return ""
	}
	return fmt.Sprintf(format, x)
}

// printRatios is chatd's medians over each other server's, per row, and
// for a 3.1.1 row chatd's throughput over its v5 throughput in the same
// row otherwise. A column no row has a figure for is left out.
func (d *tableData) printRatios(w io.Writer) error {
	type column struct {
		head string
		get  func(row rowKey) (float64, bool)
	}
	var cols []column
	for _, t := range d.targets {
		if t == "chatd" {
			continue
		}
		for _, f := range []struct {
			name string
			fig  func(*cell) float64
		}{{"throughput", figThroughput}, {"p99", figP99}, {"CPU/msg", figCPU}, {"memory/conn", figMemory}} {
			cols = append(cols, column{f.name + " /" + t, func(row rowKey) (float64, bool) { return d.ratio(row, t, f.fig) }})
		}
	}
	cols = append(cols, column{"throughput v3.1.1/v5", func(row rowKey) (float64, bool) {
		v5, ok := v5Row(row)
		if !ok {
			return 0, false
		}
		return d.ratioOf(row, "chatd", v5, "chatd", figThroughput)
	}})
	cols = slices.DeleteFunc(cols, func(c column) bool {
		return !slices.ContainsFunc(d.rows, func(row rowKey) bool { _, ok := c.get(row); return ok })
	})
	if len(cols) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "chatd ratios\t"
	for _, c := range cols {
		head += c.head + "\t"
	}
	fmt.Fprintln(tw, head)
	for _, row := range d.rows {
		line, any := row.String()+"\t", false
		for _, c := range cols {
			if x, ok := c.get(row); ok {
				line += fmt.Sprintf("%.2fx\t", x)
				any = true
			} else {
				line += "\t"
			}
		}
		if any {
			fmt.Fprintln(tw, line)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

// printClusterTable prints the medians of the cluster runs' own figures:
// each node's CPU per message, NATS traffic per message, the share of
// sends forwarded to another node and chatbench's own CPU.
func (d *tableData) printClusterTable(w io.Writer) error {
	var nodes []string
	for _, c := range d.cells {
		for _, f := range c.cluster {
			for _, n := range f.nodeOrder {
				if !slices.Contains(nodes, n) {
					nodes = append(nodes, n)
				}
			}
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	slices.Sort(nodes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "scenario\t"
	for _, n := range nodes {
		head += n + " µs/msg\t"
	}
	fmt.Fprintln(tw, head+"NATS msgs in/msg\tout/msg\tNATS bytes in/msg\tout/msg\tforwarded/send\trelays/msg\tof them events\tchatbench µs/msg\tidle CPU ms/s\tidle NATS msgs/s\t")
	for _, row := range d.rows {
		for _, t := range d.targets {
			c := d.cell(row, t)
			if c == nil || len(c.cluster) == 0 {
				continue
			}
			med := func(get func(clusterFigures) float64) float64 {
				xs := make([]float64, len(c.cluster))
				for i, f := range c.cluster {
					xs[i] = get(f)
				}
				return median(xs)
			}
			line := row.String() + "\t"
			for _, n := range nodes {
				line += fmt.Sprintf("%.1f\t", med(func(f clusterFigures) float64 { return f.nodeCPU[n] }))
			}
			line += fmt.Sprintf("%.2f\t%.2f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t",
				med(func(f clusterFigures) float64 { return f.natsIn }), med(func(f clusterFigures) float64 { return f.natsOut }),
				med(func(f clusterFigures) float64 { return f.natsInB }), med(func(f clusterFigures) float64 { return f.natsOutB }),
				med(func(f clusterFigures) float64 { return f.forwarded }),
				med(func(f clusterFigures) float64 { return f.relays }), med(func(f clusterFigures) float64 { return f.events }),
				med(func(f clusterFigures) float64 { return f.loadGen }),
				med(func(f clusterFigures) float64 { return f.idleCPU }), med(func(f clusterFigures) float64 { return f.idleNATS }))
			fmt.Fprintln(tw, line)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}
