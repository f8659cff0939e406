package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
)

// row is what a report is compared as: chatd's direct chat against raw pairs
// on the plain brokers, its group chat against raw fan-out.
func (r report) row() string {
	name := r.Scenario
	if r.Scenario == "cluster" {
		name = fmt.Sprintf("cluster-%v", r.Params["placement"])
	}
	if v, _ := r.Params["mqtt"].(string); v == mqtt3Version || r.Scenario == "cluster" && v != "" {
		name += " v" + v
	}
	if r.Scenario == "raw" {
		name = "direct"
		if r.Params["shape"] == "group" {
			name = "group"
		}
	}
	if rate, _ := r.Params["rate"].(float64); rate > 0 {
		name += fmt.Sprintf("@%.0f/s", rate)
	}
	return name
}

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

type cell struct {
	runs                         int
	tput, p50, p99, perConn, cpu []float64
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
	idleCPU, idleNATS  float64 // idle: the nodes' CPU ms/s summed, NATS msgs in/s
	relays, events     float64 // per-user relays per message, and of them events
}

type tableKey struct{ row, target string }

// printTable reads --json reports and prints the median of each figure per
// (row, target) and chatd's ratios to the other targets.
func printTable(w io.Writer, files []string) error {
	cells := map[tableKey]*cell{}
	var rows, targets []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if r.Isolation != nil || r.Abuse != nil || r.Attachments != nil {
			continue // no throughput to compare: they print their own figures
		}
		k := tableKey{r.row(), r.Target}
		c := cells[k]
		if c == nil {
			c = &cell{}
			cells[k] = c
			if !slices.Contains(rows, k.row) {
				rows = append(rows, k.row)
			}
			if !slices.Contains(targets, k.target) {
				targets = append(targets, k.target)
			}
		}
		c.runs++
		c.tput = append(c.tput, r.Throughput)
		c.p50 = append(c.p50, r.Latency.P50)
		c.p99 = append(c.p99, r.Latency.P99)
		c.perConn = append(c.perConn, r.BytesPerConn)
		c.cpu = append(c.cpu, r.CPUPerDelivery)
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
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\truns\tthroughput/s\tp50 ms\tp99 ms\tserver µs/msg\tbytes/conn\terrors\t")
	for _, row := range rows {
		for _, t := range targets {
			c := cells[tableKey{row, t}]
			if c == nil {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.2f\t%.2f\t%.1f\t%.0f\t%d\t\n", row, t, c.runs, median(c.tput), median(c.p50), median(c.p99), median(c.cpu), median(c.perConn), c.errors)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := printClusterTable(w, rows, targets, cells); err != nil {
		return err
	}
	for _, row := range rows {
		ch := cells[tableKey{row, "chatd"}]
		if ch == nil {
			continue
		}
		for _, t := range targets {
			o := cells[tableKey{row, t}]
			if t == "chatd" || o == nil {
				continue
			}
			if m := median(o.perConn); m > 0 {
				fmt.Fprintf(w, "%-12s chatd/%-10s memory per connection %.2fx\n", row, t, median(ch.perConn)/m)
			} else if m := median(o.tput); m > 0 {
				fmt.Fprintf(w, "%-12s chatd/%-10s throughput %.2fx   p99 %.2fx   server CPU per message %.2fx\n", row, t, median(ch.tput)/m, safeDiv(median(ch.p99), median(o.p99)), safeDiv(median(ch.cpu), median(o.cpu)))
			}
		}
	}
	return nil
}

// printClusterTable prints the medians of the cluster runs' own figures:
// each node's CPU per message, NATS traffic per message, the share of
// sends forwarded to another node and chatbench's own CPU.
func printClusterTable(w io.Writer, rows, targets []string, cells map[tableKey]*cell) error {
	var nodes []string
	for _, c := range cells {
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
	for _, row := range rows {
		for _, t := range targets {
			c := cells[tableKey{row, t}]
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
			line := row + "\t"
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

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
