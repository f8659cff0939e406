// Command chatbench is mqchat's load generator: real MQTT clients
// (paho.golang) against chatd or any MQTT broker on this machine, reporting
// throughput, send→receive latency, errors and reconnects, with a progress
// line every second and a summary as text or --json. Every run is bounded in
// count and time, stops by itself and targets loopback addresses only.
//
// Scenarios:
//
//	direct       N sender→recipient pairs of chatd users, M QoS 1 messages each
//	group        one chatd user sends M messages to a group of G members
//	raw          the same traffic on plain topics against any broker
//	             (--shape pairs like direct, --shape group like group)
//	connections  C idle subscribed connections; server RSS per connection
//	history-fill fill an embedded store directly (chatd stopped), once
//	history      pages of 50 through chatd's REST API on that store
//	isolation    healthy pairs and a group, then a stalled consumer: p99 ratio
//	abuse        healthy pairs and a group measured while attackers rotate
//	presence-storm  a user in G groups reconnecting while W watchers follow
//	             its presence; an unrelated user's connect and 1:1 delivery
//	             latencies, before and during the storm
//	cluster      direct pairs against a chatd cluster: same-node pairs
//	             (both users on their chat's owner) or cross-node pairs
//	             (sender, recipient and owner on three nodes); CPU per
//	             message of each node and NATS traffic per message
//	attachments  uploaders upload files (some PNGs, which get thumbnails)
//	             and send them in 1:1 chats, then their peers download
//	             them: MiB/s, per-request latency, server CPU per MiB
//	table        medians and ratios of --json result files
//
// --mqtt and --http take comma-separated lists: direct, group, raw and
// cluster spread their clients over the MQTT targets, REST calls go to the
// first HTTP address, and cluster reads each node's /metrics from its own.
//
// isolation and abuse exit non-zero when a bound (--max-ratio, --max-p99,
// --max-rss, ...) is violated or a healthy delivery is lost.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqchat/mqchat/services/chat"
)

type options struct {
	Scenario    string
	HTTP        string // the first of HTTPs: REST calls go there
	MQTT        string // the first of MQTTs
	HTTPs       []string
	MQTTs       []string
	MQTTVersion string
	TargetName  string
	Pairs       int
	Members     int
	Messages    int
	Window      int
	Rate        float64
	LoadLabel   string
	SendFor     time.Duration
	CPUProfile  string
	Body        int
	Shape       string
	Conns       int
	Users       int
	Hold        time.Duration
	ServerPID   int
	Sources     int
	DataDir     string
	Chats       int
	Requests    int
	Concurrency int
	Timeout     time.Duration
	Drain       time.Duration
	JSON        bool
	Prefix      string
	Files       []string
	Plain       bool

	// isolation and abuse
	PairRate      float64
	GroupRate     float64
	PhaseA        time.Duration
	PhaseB        time.Duration
	MaxRatio      float64
	MaxDisconnect time.Duration
	StallNotes    int
	StallBytes    int
	Writers       int
	Duration      time.Duration
	Slot          time.Duration
	Parallel      int
	Attacks       []string
	MaxP99        time.Duration
	MaxRSS        int64

	Storm stormOptions

	Attach attachOptions // attachments

	// cluster
	Nodes       []string // node ids, one per MQTT target, in the same order
	Placement   string   // same or cross
	NATSMonitor string   // nats-server monitoring address, "" = none
	Idle        time.Duration
}

var scenarios = []string{"direct", "group", "raw", "connections", "history-fill", "history", "isolation", "abuse", "table", "presence-storm", "cluster", "attachments"}

const usage = "usage: chatbench direct|group|raw|connections|history-fill|history|isolation|abuse|table|presence-storm|cluster|attachments [flags]"

// parseArgs reads the scenario and its flags and checks every bound.
func parseArgs(args []string, errOut io.Writer) (options, error) {
	var o options
	if len(args) < 1 || !slices.Contains(scenarios, args[0]) {
		return o, errors.New(usage)
	}
	o.Scenario = args[0]
	fs := flag.NewFlagSet("chatbench "+o.Scenario, flag.ContinueOnError)
	fs.SetOutput(errOut)
	httpList := fs.String("http", "127.0.0.1:8080", "chatd REST address, or comma-separated addresses of a cluster's nodes (loopback only; REST calls go to the first)")
	mqttList := fs.String("mqtt", "127.0.0.1:1883", "MQTT TCP address, or comma-separated addresses clients are spread over (loopback only)")
	fs.StringVar(&o.MQTTVersion, "mqtt-version", "5", "MQTT version of the clients of direct, group, raw and cluster: 5 or 3.1.1")
	nodes := fs.String("nodes", "", "cluster: comma-separated node ids (cluster.node_id), one per --mqtt target in the same order")
	fs.StringVar(&o.Placement, "placement", "same", "cluster: same (sender and recipient on the node owning their chat) or cross (sender, recipient and owner on three different nodes)")
	fs.DurationVar(&o.Idle, "idle", 2*time.Second, "cluster: how long to measure the nodes and NATS with the clients connected and silent before sending, 0-1m (0 = not measured)")
	fs.StringVar(&o.NATSMonitor, "nats-monitor", "", "cluster: nats-server monitoring address (-m) whose /varz counts NATS traffic; empty = not measured")
	fs.StringVar(&o.TargetName, "target", "", "name of the server in the report (default chatd, or broker for raw)")
	fs.IntVar(&o.Pairs, "pairs", 50, "sender→recipient pairs (direct, raw --shape pairs), 1-10000")
	fs.IntVar(&o.Members, "members", 100, "group size, sender included (group, raw --shape group), 2-100000")
	fs.IntVar(&o.Messages, "messages", 1000, "messages per sender, 1-1000000")
	fs.IntVar(&o.Window, "window", 8, "unacknowledged sends in flight per sender, 1-1024")
	fs.Float64Var(&o.Rate, "rate", 0, "fixed load: messages per second over all senders (0 = as fast as the window allows)")
	fs.DurationVar(&o.SendFor, "send-for", 0, "direct, group, raw, cluster: stop sending after this even if --messages are not all sent (0 = no bound), so servers of different speeds are measured over the same time")
	fs.StringVar(&o.LoadLabel, "load-label", "", "names a paced run's load in the table instead of its rate, e.g. 50% (make bench: a share of chatd's maximum)")
	fs.IntVar(&o.Body, "body", 256, "message body bytes, 32-65536")
	fs.StringVar(&o.Shape, "shape", "pairs", "raw traffic shape: pairs or group")
	fs.IntVar(&o.Conns, "conns", 1000, "connections to hold (connections), 1-1000000")
	fs.BoolVar(&o.Plain, "plain", false, "connections: anonymous sessions on plain topics, for brokers other than chatd")
	fs.IntVar(&o.Users, "users", 100, "chatd users the connections are spread over as devices (connections)")
	fs.DurationVar(&o.Hold, "hold", 10*time.Second, "how long to hold the connections before measuring (connections), at most 4m")
	fs.IntVar(&o.ServerPID, "server-pid", 0, "server process for /proc/PID/status (connections; default: the process listening on --mqtt's port)")
	fs.IntVar(&o.Sources, "sources", 0, "127.0.0.x source addresses to spread connections over (0 = one per 25,000 connections)")
	fs.StringVar(&o.DataDir, "data-dir", "", "chatd data dir holding the history store (history-fill, history)")
	fs.IntVar(&o.Chats, "chats", 1000, "chats the history messages are spread over (history-fill)")
	fs.IntVar(&o.Requests, "requests", 5000, "history pages to request (history)")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "concurrent history requests (history)")
	fs.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "the whole run stops after this (history-fill: 30m)")
	fs.DurationVar(&o.Drain, "drain", 30*time.Second, "how long to wait for outstanding deliveries after the last send")
	fs.BoolVar(&o.JSON, "json", false, "print the summary as JSON")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write chatbench's own CPU profile to this file (is the load generator the bottleneck?)")
	o.Storm.flags(fs)
	fs.IntVar(&o.Attach.Uploaders, "uploaders", 4, "attachments: uploader→downloader pairs at work at once, 1-256")
	fs.IntVar(&o.Attach.Uploads, "uploads", 8, "attachments: files each uploader uploads, 1-10000")
	sizes := fs.String("sizes", "256KiB,4MiB", "attachments: file sizes taken in turn, comma separated (bytes, or with KiB, MiB), at most 25MiB")
	fs.IntVar(&o.Attach.PNGEvery, "png-every", 4, "attachments: every n-th file is a PNG, which the server makes a thumbnail of (0 = none)")
	fs.StringVar(&o.Prefix, "prefix", fmt.Sprintf("b%d", time.Now().UnixNano()%1000000), "name prefix, so runs against one server do not collide")
	fs.Float64Var(&o.PairRate, "pair-rate", 10, "isolation, abuse: messages per second of each healthy pair")
	fs.Float64Var(&o.GroupRate, "group-rate", 10, "isolation, abuse: messages per second into the healthy group, its members taking turns")
	fs.DurationVar(&o.PhaseA, "phase-a", 8*time.Second, "isolation: healthy traffic alone, 1s-2m")
	fs.DurationVar(&o.PhaseB, "phase-b", 15*time.Second, "isolation: healthy traffic with the stalled consumer, 1s-2m")
	fs.Float64Var(&o.MaxRatio, "max-ratio", 2, "isolation: fail when a class's p99 in phase B exceeds this multiple of phase A's (0 = no bound)")
	fs.DurationVar(&o.MaxDisconnect, "max-disconnect", 0, "isolation: fail unless the server drops the stalled client within this (0 = no bound)")
	fs.IntVar(&o.StallNotes, "stall-notes", 100, "isolation, abuse: notes to self that fill the stalled connection, 1-10000")
	fs.IntVar(&o.StallBytes, "stall-bytes", 60000, "isolation, abuse: body bytes of each of those notes, 32-16777216")
	fs.IntVar(&o.Writers, "writers", chat.DefaultShards, "isolation, abuse: chatd's chat writers, each of which gets one group message from the stalled user")
	fs.DurationVar(&o.Duration, "duration", 3*time.Minute, "abuse: length of the soak, 1s-10m; presence-storm: how long the storm lasts (default 20s there)")
	fs.DurationVar(&o.Slot, "slot", 10*time.Second, "abuse: how long each turn of the attacker rotation lasts")
	fs.IntVar(&o.Parallel, "parallel", 2, "abuse: attackers running at once, 1-"+strconv.Itoa(len(attackKinds)))
	attacks := fs.String("attacks", strings.Join(attackNames(), ","), "abuse: attackers in rotation order, comma separated")
	fs.DurationVar(&o.MaxP99, "max-p99", 500*time.Millisecond, "abuse: fail when the healthy p99 over the soak exceeds this (0 = no bound)")
	maxRSS := fs.String("max-rss", "1GiB", "abuse: fail when the server's RSS exceeds this (bytes, or with KiB, MiB, GiB; 0 = no bound)")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	o.Attacks = strings.Split(*attacks, ",")
	o.HTTPs, o.MQTTs = splitList(*httpList), splitList(*mqttList)
	o.Nodes = splitList(*nodes)
	if len(o.HTTPs) > 0 {
		o.HTTP = o.HTTPs[0]
	}
	if len(o.MQTTs) > 0 {
		o.MQTT = o.MQTTs[0]
	}
	var err error
	if o.MaxRSS, err = parseSize(*maxRSS); err != nil {
		return o, fmt.Errorf("--max-rss: %w", err)
	}
	if o.Scenario == "attachments" {
		if o.Attach.Sizes, err = parseSizes(*sizes); err != nil {
			return o, fmt.Errorf("--sizes: %w", err)
		}
	}
	o.Files = fs.Args()
	if o.TargetName == "" {
		o.TargetName = "chatd"
		if o.Scenario == "raw" {
			o.TargetName = "broker"
		}
	}
	if o.Sources == 0 {
		o.Sources = (o.Conns + 24999) / 25000
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.Scenario == "history-fill" && !set["timeout"] {
		o.Timeout = 30 * time.Minute
	}
	if o.Scenario == "presence-storm" {
		if !set["duration"] {
			o.Duration = 20 * time.Second
		}
		o.Storm.Duration = o.Duration
	}
	if o.Scenario == "isolation" || o.Scenario == "abuse" {
		// A handful of paced users is enough to see one client hurt the others.
		if !set["pairs"] {
			o.Pairs = 8
		}
		if !set["members"] {
			o.Members = 20
		}
		if !set["drain"] {
			o.Drain = 10 * time.Second
		}
		if o.Scenario == "abuse" && !set["timeout"] {
			o.Timeout = o.Duration + 3*time.Minute // setup and drain besides
		}
	}
	return o, o.validate()
}

func (o options) validate() error {
	check := func(ok bool, msg string) error {
		if !ok {
			return errors.New(msg)
		}
		return nil
	}
	errs := []error{
		check(o.Pairs >= 1 && o.Pairs <= 10000, "--pairs must be 1-10000"),
		check(o.Members >= 2 && o.Members <= 100000, "--members must be 2-100000"),
		check(o.Messages >= 1 && o.Messages <= 1000000 || o.Scenario == "history-fill", "--messages must be 1-1000000"),
		check(o.Messages >= 1 && o.Messages <= 100000000, "--messages must be at most 100000000"),
		check(o.Window >= 1 && o.Window <= 1024, "--window must be 1-1024"),
		check(o.Rate >= 0 && o.Rate <= 1e7, "--rate must be 0-10000000"),
		check(o.SendFor >= 0 && o.SendFor <= 10*time.Minute, "--send-for must be 0-10m"),
		check(o.LoadLabel == "" || o.Rate > 0, "--load-label names a paced load: it needs --rate"),
		check(len(o.LoadLabel) <= 16 && !strings.ContainsAny(o.LoadLabel, " \t"), "--load-label must be one word of at most 16 characters"),
		check(o.Body >= 32 && o.Body <= 65536, "--body must be 32-65536"),
		check(o.Shape == "pairs" || o.Shape == "group", "--shape must be pairs or group"),
		check(o.Conns >= 1 && o.Conns <= 1000000, "--conns must be 1-1000000"),
		check(o.Users >= 1, "--users must be at least 1"),
		check(o.Hold >= 0 && o.Hold <= 4*time.Minute, "--hold must be 0-4m"),
		check(o.Sources >= 1 && o.Sources <= 254, "--sources must be 1-254"),
		check(o.Chats >= 1 && o.Chats <= o.Messages || o.Scenario != "history-fill", "--chats must be 1..messages"),
		check(o.Requests >= 1 && o.Concurrency >= 1 && o.Concurrency <= 256, "--requests >= 1, --concurrency 1-256"),
		check(o.Timeout > 0 && o.Timeout <= 2*time.Hour, "--timeout must be at most 2h"),
		check(o.Drain > 0 && o.Drain <= 10*time.Minute, "--drain must be at most 10m"),
		check(o.DataDir != "" || (o.Scenario != "history" && o.Scenario != "history-fill"), "--data-dir is required"),
		check(len(o.Files) > 0 || o.Scenario != "table", "table needs result files"),
		check(o.PairRate > 0 && o.PairRate <= 1000 && o.GroupRate > 0 && o.GroupRate <= 10000, "--pair-rate must be >0-1000, --group-rate >0-10000"),
		check(o.PhaseA >= time.Second && o.PhaseA <= 2*time.Minute && o.PhaseB >= time.Second && o.PhaseB <= 2*time.Minute, "--phase-a and --phase-b must be 1s-2m"),
		check(o.MaxRatio >= 0 && o.MaxDisconnect >= 0 && o.MaxP99 >= 0 && o.MaxRSS >= 0, "bounds must not be negative"),
		check(o.StallNotes >= 1 && o.StallNotes <= 10000, "--stall-notes must be 1-10000"),
		check(o.StallBytes >= 32 && o.StallBytes <= 16<<20, "--stall-bytes must be 32-16777216"),
		check(o.Writers >= 1 && o.Writers <= 1024, "--writers must be 1-1024"),
		check(o.Duration >= time.Second && o.Duration <= 10*time.Minute, "--duration must be 1s-10m"),
		check(o.Slot >= time.Second && 2*o.Slot <= o.Duration || o.Scenario != "abuse", "--slot must be at least 1s and at most half of --duration (the first slot is the baseline)"),
		check(o.Parallel >= 1 && o.Parallel <= len(attackKinds), fmt.Sprintf("--parallel must be 1-%d", len(attackKinds))),
		checkAttacks(o.Attacks),
		o.Storm.validate(o.Scenario),
	}
	if o.Scenario != "table" && o.Scenario != "history-fill" {
		errs = append(errs, check(len(o.HTTPs) > 0 && len(o.MQTTs) > 0, "--http and --mqtt need at least one address"))
		for _, a := range slices.Concat(o.HTTPs, o.MQTTs) {
			errs = append(errs, loopbackOnly(a))
		}
		if o.NATSMonitor != "" {
			errs = append(errs, loopbackOnly(o.NATSMonitor))
		}
	}
	errs = append(errs, check(o.MQTTVersion == "5" || o.MQTTVersion == mqtt3Version, "--mqtt-version must be 5 or 3.1.1"))
	if o.Scenario == "attachments" {
		errs = append(errs, o.Attach.validate())
	}
	if o.Scenario == "cluster" {
		errs = append(errs, o.validateCluster())
	}
	return errors.Join(errs...)
}

func main() {
	o, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(2)
	}
	if _, set := os.LookupEnv("GOGC"); !set && slices.Contains([]string{"direct", "group", "raw", "cluster"}, o.Scenario) {
		// The load generator shares the machine's cores with the server it
		// measures: collecting a small heap a quarter as often cut its CPU
		// per message by about a tenth at 10,000 msgs/s (40 to 37 µs), for
		// some 60 MB more memory.
		debug.SetGCPercent(400)
	}
	if err := run(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
}

func run(o options, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var res report
	var err error
	switch o.Scenario {
	case "table":
		return printTable(stdout, o.Files)
	case "history-fill":
		return historyFill(ctx, o, log)
	case "direct":
		res, err = directScenario(ctx, o, log, stderr)
	case "group":
		res, err = groupScenario(ctx, o, log, stderr)
	case "raw":
		res, err = rawScenario(ctx, o, log, stderr)
	case "connections":
		res, err = connectionsScenario(ctx, o, log, stderr)
	case "history":
		res, err = historyScenario(ctx, o, log, stderr)
	case "isolation":
		res, err = isolationScenario(ctx, o, log, stderr)
	case "abuse":
		res, err = abuseScenario(ctx, o, log, stderr)
	case "presence-storm":
		res, err = presenceStormScenario(ctx, o, log, stderr)
	case "cluster":
		res, err = clusterScenario(ctx, o, log, stderr)
	case "attachments":
		res, err = attachmentsScenario(ctx, o, log)
	}
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		res.print(stdout)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("stopped early: %w", ctx.Err())
	}
	if len(res.Violations) > 0 {
		return fmt.Errorf("bounds violated: %s", strings.Join(res.Violations, "; "))
	}
	return nil
}

// splitList reads a comma-separated flag, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseSize reads a byte count: a plain number, or one with a KiB, MiB or
// GiB suffix.
func parseSize(size string) (int64, error) {
	s, mult := size, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("%q is not a size like 512MiB or 1GiB", size)
	}
	return int64(n * float64(mult)), nil
}

// loopbackOnly refuses targets off this machine: load goes to loopback only.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback address; chatbench only loads this machine", addr)
	}
	return nil
}
