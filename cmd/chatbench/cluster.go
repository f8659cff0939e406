package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqchat/mqchat/cluster"
	"github.com/mqchat/mqchat/services/chat"
)

// Placements of a cluster run's pairs.
const (
	placeSame  = "same"  // sender and recipient on the node that owns their chat
	placeCross = "cross" // sender, recipient and owner three different nodes
)

func (o options) validateCluster() error {
	var errs []error
	if o.Placement != placeSame && o.Placement != placeCross {
		errs = append(errs, errors.New("--placement must be same or cross"))
	}
	if len(o.Nodes) != len(o.MQTTs) {
		errs = append(errs, fmt.Errorf("--nodes names %d nodes for %d --mqtt targets: one id per target, in the same order", len(o.Nodes), len(o.MQTTs)))
	}
	if len(o.HTTPs) != len(o.MQTTs) {
		errs = append(errs, fmt.Errorf("--http has %d addresses for %d --mqtt targets: each node's /metrics is read", len(o.HTTPs), len(o.MQTTs)))
	}
	if o.Idle < 0 || o.Idle > time.Minute {
		errs = append(errs, errors.New("--idle must be 0-1m"))
	}
	if o.Placement == placeCross && len(o.Nodes) < 3 {
		errs = append(errs, errors.New("--placement cross needs at least 3 nodes"))
	}
	seen := map[string]bool{}
	for _, n := range o.Nodes {
		if seen[n] {
			errs = append(errs, fmt.Errorf("--nodes names %s twice", n))
		}
		seen[n] = true
	}
	return errors.Join(errs...)
}

// pairPlace is where one pair's clients connect: indexes into the nodes.
type pairPlace struct {
	Owner, Sender, Recipient int
}

// placePairs puts each (sender, recipient) pair on nodes by who owns their
// 1:1 chat, as the cluster computes it over the live nodes. Same: both on
// the owner, so a send is committed and delivered where it arrives. Cross:
// the sender on the owner's next node and the recipient on the one after,
// so every send is forwarded to the owner and every delivery relayed to a
// third node; rotating from the owner spreads the three roles evenly.
func placePairs(pairs [][2]string, nodes []string, placement string) ([]pairPlace, error) {
	if placement == placeCross && len(nodes) < 3 {
		return nil, errors.New("cross-node pairs need at least 3 nodes")
	}
	if len(nodes) == 0 {
		return nil, errors.New("no nodes")
	}
	out := make([]pairPlace, len(pairs))
	for i, p := range pairs {
		owner := slices.Index(nodes, cluster.OwnerOf(chat.DirectChatID(p[0], p[1]), nodes))
		pl := pairPlace{Owner: owner, Sender: owner, Recipient: owner}
		if placement == placeCross {
			pl.Sender, pl.Recipient = (owner+1)%len(nodes), (owner+2)%len(nodes)
		}
		out[i] = pl
	}
	return out, nil
}

// clusterScenario runs direct pairs placed on a cluster's nodes and reads
// each node's CPU, its forwarding counters and the NATS server's traffic
// around the send phase.
func clusterScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	api := newREST(o.HTTP)
	log.Info("registering users", "count", 2*o.Pairs)
	users, err := api.registerMany(ctx, o.Prefix, 2*o.Pairs)
	if err != nil {
		return report{}, err
	}
	senders, recipients := users[:o.Pairs], users[o.Pairs:]
	pairs := make([][2]string, o.Pairs)
	for i := range pairs {
		pairs[i] = [2]string{senders[i].ID, recipients[i].ID}
	}
	places, err := placePairs(pairs, o.Nodes, o.Placement)
	if err != nil {
		return report{}, err
	}
	sendIDs, recvIDs := chatIdentities(senders, "bench", false), chatIdentities(recipients, "bench", true)
	cr := &clusterReport{Placement: o.Placement, MQTTVersion: o.MQTTVersion, Nodes: make([]nodeReport, len(o.Nodes))}
	for i := range cr.Nodes {
		cr.Nodes[i] = nodeReport{ID: o.Nodes[i], MQTT: o.MQTTs[i], HTTP: o.HTTPs[i]}
	}
	cc := chatCodec{size: o.Body}
	t := o.traffic(1, nil)
	for i, pl := range places {
		sendIDs[i].Addr, recvIDs[i].Addr = o.MQTTs[pl.Sender], o.MQTTs[pl.Recipient]
		cr.Nodes[pl.Owner].Owns++
		cr.Nodes[pl.Sender].Senders++
		cr.Nodes[pl.Recipient].Recipients++
		cc.to = append(cc.to, "user:"+recipients[i].ID)
		t.topics = append(t.topics, "users/"+senders[i].ID+"/send")
	}
	t.codec = cc
	probe := func(ctx context.Context) func(context.Context, *report) {
		idle, err := measureIdle(ctx, o, o.Idle)
		if err != nil {
			log.Warn("cluster figures not measured", "error", err)
			return func(context.Context, *report) {}
		}
		cr.Idle = idle
		before, err := scrapeCluster(ctx, o)
		if err != nil {
			log.Warn("cluster figures not measured", "error", err)
			return func(context.Context, *report) {}
		}
		return func(ctx context.Context, r *report) {
			after, err := scrapeCluster(ctx, o)
			if err != nil {
				log.Warn("cluster figures not measured", "error", err)
				return
			}
			cr.fill(before, after, r)
			r.Cluster = cr
		}
	}
	r, err := runTraffic(ctx, o, t, sendIDs, recvIDs, probe, log, stderr)
	r.Target = o.TargetName
	return r, err
}

// clusterReport is what a cluster run adds to the report.
type clusterReport struct {
	Placement   string       `json:"placement"`
	MQTTVersion string       `json:"mqtt_version"`
	Nodes       []nodeReport `json:"nodes"`
	// Forwarded sends and per-user relays, summed over the nodes: a check
	// that the cluster placed the chats where chatbench computed (none
	// forwarded for same-node pairs, every send for cross-node ones).
	ForwardsOK     float64 `json:"forwards_ok"`
	ForwardsFailed float64 `json:"forwards_failed"`
	RelaysOut      float64 `json:"relays_out"`
	RelaysOutEvent float64 `json:"relays_out_events"` // of RelaysOut, kind="events"
	// OwnershipNote is set when the forwards do not match the placement.
	OwnershipNote string       `json:"ownership_note,omitempty"`
	NATS          *natsTraffic `json:"nats,omitempty"`
	// The load generator's own CPU: on one machine it competes with the
	// nodes, and a heavier client library leaves them less.
	LoadGenCPUSec float64 `json:"loadgen_cpu_sec"`
	LoadGenCPUPer float64 `json:"loadgen_cpu_us_per_msg"`
	// Idle is the cluster with the run's clients connected and silent,
	// just before sending: what the figures above include besides the
	// messages (membership renewals, presence, metrics, the runtime).
	Idle *idleReport `json:"idle,omitempty"`
}

// idleReport is per second of the idle window.
type idleReport struct {
	Seconds        float64   `json:"seconds"`
	NodeCPU        []float64 `json:"node_cpu_ms_per_sec"` // per node, in --nodes order
	NATSInMsgs     float64   `json:"nats_in_msgs_per_sec"`
	NATSOutMsgs    float64   `json:"nats_out_msgs_per_sec"`
	NATSInBytes    float64   `json:"nats_in_bytes_per_sec"`
	NATSOutBytes   float64   `json:"nats_out_bytes_per_sec"`
	ForwardsPerSec float64   `json:"forwards_per_sec"`
}

// measureIdle reads the cluster twice, window apart, with nothing sent in
// between; a zero window measures nothing.
func measureIdle(ctx context.Context, o options, window time.Duration) (*idleReport, error) {
	if window <= 0 {
		return nil, nil
	}
	a, err := scrapeCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if !sleepCtx(ctx, window) {
		return nil, ctx.Err()
	}
	b, err := scrapeCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	idle := &idleReport{Seconds: secs}
	var fw float64
	for i := range a.cpu {
		idle.NodeCPU = append(idle.NodeCPU, (b.cpu[i]-a.cpu[i])*1000/secs)
		fw += b.forwardsOK[i] - a.forwardsOK[i]
	}
	idle.ForwardsPerSec = fw / secs
	if a.varz != nil && b.varz != nil {
		idle.NATSInMsgs = float64(b.varz.InMsgs-a.varz.InMsgs) / secs
		idle.NATSOutMsgs = float64(b.varz.OutMsgs-a.varz.OutMsgs) / secs
		idle.NATSInBytes = float64(b.varz.InBytes-a.varz.InBytes) / secs
		idle.NATSOutBytes = float64(b.varz.OutBytes-a.varz.OutBytes) / secs
	}
	return idle, nil
}

type nodeReport struct {
	ID         string  `json:"id"`
	MQTT       string  `json:"mqtt"`
	HTTP       string  `json:"http"`
	Owns       int     `json:"owns"`       // chats of the run it owns
	Senders    int     `json:"senders"`    // sending clients connected to it
	Recipients int     `json:"recipients"` // receiving clients connected to it
	CPUSec     float64 `json:"cpu_sec"`
	// CPUPerMsg is the node's CPU microseconds per message delivered in
	// the whole cluster: the three nodes' figures add up to the cluster's.
	CPUPerMsg float64 `json:"cpu_us_per_msg"`
}

// natsTraffic is the NATS server's traffic during the send phase, from
// /varz, and per delivered chat message.
type natsTraffic struct {
	InMsgs         int64   `json:"in_msgs"`
	OutMsgs        int64   `json:"out_msgs"`
	InBytes        int64   `json:"in_bytes"`
	OutBytes       int64   `json:"out_bytes"`
	InMsgsPerMsg   float64 `json:"in_msgs_per_msg"`
	OutMsgsPerMsg  float64 `json:"out_msgs_per_msg"`
	InBytesPerMsg  float64 `json:"in_bytes_per_msg"`
	OutBytesPerMsg float64 `json:"out_bytes_per_msg"`
}

// clusterSample is one reading of every node and of NATS.
type clusterSample struct {
	cpu, forwardsOK, forwardsFailed, relaysOut, relaysEvents []float64 // per node
	varz                                                     *varz
	self                                                     time.Duration // chatbench's CPU
}

type varz struct {
	InMsgs   int64 `json:"in_msgs"`
	OutMsgs  int64 `json:"out_msgs"`
	InBytes  int64 `json:"in_bytes"`
	OutBytes int64 `json:"out_bytes"`
}

func scrapeCluster(ctx context.Context, o options) (clusterSample, error) {
	var s clusterSample
	self, err := readSelfCPU()
	if err != nil {
		return s, err
	}
	s.self = self
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, addr := range o.HTTPs {
		m, err := scrapeMetrics(ctx, hc, "http://"+addr+"/metrics")
		if err != nil {
			return s, err
		}
		cpu, ok := m.sum("process_cpu_seconds_total", nil)
		if !ok {
			return s, fmt.Errorf("%s/metrics has no process_cpu_seconds_total", addr)
		}
		okFw, _ := m.sum("mqchat_cluster_forwards_total", map[string]string{"result": "ok"})
		all, _ := m.sum("mqchat_cluster_forwards_total", nil)
		out, _ := m.sum("mqchat_cluster_relays_total", map[string]string{"direction": "out"})
		s.cpu = append(s.cpu, cpu)
		s.forwardsOK = append(s.forwardsOK, okFw)
		s.forwardsFailed = append(s.forwardsFailed, all-okFw)
		s.relaysOut = append(s.relaysOut, out)
		ev, _ := m.sum("mqchat_cluster_relays_total", map[string]string{"direction": "out", "kind": "events"})
		s.relaysEvents = append(s.relaysEvents, ev)
	}
	if o.NATSMonitor != "" {
		var v varz
		if err := getJSON(ctx, hc, "http://"+o.NATSMonitor+"/varz", &v); err != nil {
			return s, err
		}
		s.varz = &v
	}
	return s, nil
}

// fill computes the figures of the send phase from the readings before and
// after it, per message delivered.
func (c *clusterReport) fill(before, after clusterSample, r *report) {
	perMsg := func(x float64) float64 {
		if r.Received == 0 {
			return 0
		}
		return x / float64(r.Received)
	}
	var cpu float64
	for i := range c.Nodes {
		d := after.cpu[i] - before.cpu[i]
		c.Nodes[i].CPUSec = d
		c.Nodes[i].CPUPerMsg = perMsg(d * 1e6)
		cpu += d
		c.ForwardsOK += after.forwardsOK[i] - before.forwardsOK[i]
		c.ForwardsFailed += after.forwardsFailed[i] - before.forwardsFailed[i]
		c.RelaysOut += after.relaysOut[i] - before.relaysOut[i]
		c.RelaysOutEvent += after.relaysEvents[i] - before.relaysEvents[i]
	}
	r.ServerCPUSec, r.CPUPerDelivery = cpu, perMsg(cpu*1e6)
	c.LoadGenCPUSec = (after.self - before.self).Seconds()
	c.LoadGenCPUPer = perMsg(c.LoadGenCPUSec * 1e6)
	c.OwnershipNote = ownershipNote(c.Placement, c.ForwardsOK+c.ForwardsFailed, r.Acked)
	if before.varz != nil && after.varz != nil {
		n := &natsTraffic{
			InMsgs: after.varz.InMsgs - before.varz.InMsgs, OutMsgs: after.varz.OutMsgs - before.varz.OutMsgs,
			InBytes: after.varz.InBytes - before.varz.InBytes, OutBytes: after.varz.OutBytes - before.varz.OutBytes,
		}
		n.InMsgsPerMsg, n.OutMsgsPerMsg = perMsg(float64(n.InMsgs)), perMsg(float64(n.OutMsgs))
		n.InBytesPerMsg, n.OutBytesPerMsg = perMsg(float64(n.InBytes)), perMsg(float64(n.OutBytes))
		c.NATS = n
	}
}

// ownershipNote says when the cluster's forwards disagree with the
// placement: its membership view is not the --nodes list (a node missing
// or unknown), so same-node pairs were not on their owner or cross-node
// sends were not forwarded. Within 5%: a send retried after a failed
// forward counts twice.
func ownershipNote(placement string, forwards float64, acked int64) string {
	switch {
	case acked == 0:
		return ""
	case placement == placeSame && forwards > 0.05*float64(acked):
		return fmt.Sprintf("%.0f of %d sends were forwarded although every pair sat on its chat's owner: the cluster's nodes are not --nodes", forwards, acked)
	case placement == placeCross && forwards < 0.95*float64(acked):
		return fmt.Sprintf("only %.0f of %d sends were forwarded although no sender sat on its chat's owner: the cluster's nodes are not --nodes", forwards, acked)
	}
	return ""
}

func (c *clusterReport) print(w io.Writer) {
	fmt.Fprintf(w, "  cluster      %s-node pairs, MQTT %s; forwarded %.0f (failed %.0f), relayed %.0f (%.0f events)\n",
		c.Placement, c.MQTTVersion, c.ForwardsOK, c.ForwardsFailed, c.RelaysOut, c.RelaysOutEvent)
	for _, n := range c.Nodes {
		fmt.Fprintf(w, "  node %-7s owns %d chats, %d senders, %d recipients: CPU %.2fs, %.1fµs per message\n",
			n.ID, n.Owns, n.Senders, n.Recipients, n.CPUSec, n.CPUPerMsg)
	}
	fmt.Fprintf(w, "  chatbench    CPU %.2fs, %.1fµs per message\n", c.LoadGenCPUSec, c.LoadGenCPUPer)
	if c.NATS != nil {
		fmt.Fprintf(w, "  NATS         per message: %.2f msgs in, %.2f out; %.0f bytes in, %.0f out\n",
			c.NATS.InMsgsPerMsg, c.NATS.OutMsgsPerMsg, c.NATS.InBytesPerMsg, c.NATS.OutBytesPerMsg)
	}
	if i := c.Idle; i != nil {
		fmt.Fprintf(w, "  idle         over %.1fs: node CPU %s ms/s; NATS %.1f msgs/s in, %.1f out, %.0f bytes/s in\n",
			i.Seconds, fmtFloats(i.NodeCPU, "%.1f"), i.NATSInMsgs, i.NATSOutMsgs, i.NATSInBytes)
	}
	if c.OwnershipNote != "" {
		fmt.Fprintf(w, "  WARNING      %s\n", c.OwnershipNote)
	}
}

// metricSet is a Prometheus text exposition, parsed just enough for
// counters and gauges: name, labels, value.
type metricSet []metricSample

type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

func scrapeMetrics(ctx context.Context, hc *http.Client, url string) (metricSet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the text format; label values holding commas or
// escaped quotes are not handled (no metric read here has them).
func parseMetrics(r io.Reader) (metricSet, error) {
	var out metricSet
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var s metricSample
		var rest string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, fmt.Errorf("metrics line %q", line)
			}
			s.name, rest = line[:i], line[j+1:]
			s.labels = map[string]string{}
			for _, kv := range strings.Split(line[i+1:j], ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					continue
				}
				s.labels[strings.TrimSpace(k)] = strings.Trim(v, `"`)
			}
		} else {
			s.name, rest, _ = strings.Cut(line, " ")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %q has no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// sum adds the series of name whose labels include want; ok is false when
// there is none.
func (m metricSet) sum(name string, want map[string]string) (total float64, ok bool) {
	for _, s := range m {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			total, ok = total+s.value, true
		}
	}
	return total, ok
}

func fmtFloats(xs []float64, format string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, "/")
}

func getJSON(ctx context.Context, hc *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	return nil
}
