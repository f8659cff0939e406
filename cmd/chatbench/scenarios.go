package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// chatIdentities logs users in over MQTT with their token; subscribers get
// their inbox.
func chatIdentities(users []account, device string, subscribe bool) []identity {
	ids := make([]identity, len(users))
	for i, u := range users {
		ids[i] = identity{ClientID: u.ID + "/" + device, Username: u.ID, Password: u.Token}
		if subscribe {
			ids[i].Subs = []string{"users/" + u.ID + "/inbox"}
		}
	}
	return ids
}

func (o options) traffic(recipients int, c codec) *traffic {
	return &traffic{perSender: o.Messages, window: o.Window, rate: o.Rate, sendFor: o.SendFor, recipients: recipients, codec: c, drain: o.Drain}
}

func (o options) params() map[string]any {
	switch o.Scenario {
	case "isolation":
		return map[string]any{"pairs": o.Pairs, "members": o.Members, "pair_rate": o.PairRate, "group_rate": o.GroupRate,
			"phase_a": o.PhaseA.String(), "phase_b": o.PhaseB.String(), "stall_notes": o.StallNotes, "stall_bytes": o.StallBytes}
	case "attachments":
		sizes := make([]string, len(o.Attach.Sizes))
		for i, n := range o.Attach.Sizes {
			sizes[i] = strconv.FormatInt(n, 10)
		}
		return map[string]any{"uploaders": o.Attach.Uploaders, "uploads": o.Attach.Uploads, "sizes": strings.Join(sizes, ","), "png_every": o.Attach.PNGEvery}
	case "abuse":
		return map[string]any{"pairs": o.Pairs, "members": o.Members, "pair_rate": o.PairRate, "group_rate": o.GroupRate,
			"duration": o.Duration.String(), "slot": o.Slot.String(), "parallel": o.Parallel, "attacks": strings.Join(o.Attacks, ",")}
	}
	p := map[string]any{"messages": o.Messages, "window": o.Window, "rate": o.Rate, "body": o.Body, "mqtt": o.MQTTVersion}
	if o.Scenario == "cluster" {
		p["placement"], p["nodes"] = o.Placement, strings.Join(o.Nodes, ",")
	}
	if o.LoadLabel != "" {
		p["load"] = o.LoadLabel
	}
	if o.SendFor > 0 {
		p["send_for"] = o.SendFor.String()
	}
	switch {
	case o.Scenario == "direct" || o.Scenario == "cluster" || (o.Scenario == "raw" && o.Shape == "pairs"):
		p["pairs"] = o.Pairs
	default:
		p["members"] = o.Members
	}
	if o.Scenario == "raw" {
		p["shape"] = o.Shape
	}
	return p
}

// spread places clients that have no target yet over targets in turn,
// recipients first then senders, so that with several targets a pair's two
// clients land on different ones; every client speaks version.
func spread(targets []string, version string, groups ...[]identity) {
	i := 0
	for _, ids := range groups {
		for k := range ids {
			if ids[k].Addr == "" && len(targets) > 0 {
				ids[k].Addr = targets[i%len(targets)]
			}
			ids[k].V3 = version == mqtt3Version
			i++
		}
	}
}

// serverProbe measures servers around the send phase: it is called once
// the clients are connected, and what it returns once the deliveries are
// in (or the drain ran out), to fill in the report.
type serverProbe func(ctx context.Context) (after func(ctx context.Context, r *report))

// runTraffic connects recipients and senders, runs t and closes everything.
// probe, when not nil, replaces the single-server CPU reading.
func runTraffic(ctx context.Context, o options, t *traffic, senders, recipients []identity, probe serverProbe, log *slog.Logger, stderr io.Writer) (report, error) {
	d := newDialer(o.Sources)
	spread(o.MQTTs, o.MQTTVersion, recipients, senders)
	t.init(len(senders))
	log.Info("connecting", "recipients", len(recipients), "senders", len(senders))
	recv, err := connectAll(ctx, d, o.MQTT, recipients, &t.c, func(int) func(*paho.Publish) { return t.receiver() })
	if err != nil {
		return report{}, err
	}
	defer closeAll(recv)
	send, err := connectAll(ctx, d, o.MQTT, senders, &t.c, nil)
	if err != nil {
		return report{}, err
	}
	defer closeAll(send)
	t.senders = send
	var after func(context.Context, *report)
	var server *cpuMeter
	if probe != nil {
		after = probe(ctx)
	} else if pid, err := measuredPID(o); err != nil {
		log.Warn("server CPU not measured", "error", err)
	} else {
		// The server's CPU time per delivery is a figure that other load
		// on a shared machine disturbs far less than throughput.
		server = startCPUMeter(func() (time.Duration, error) { return readCPU(pid) }, cpuSampleEvery)
	}
	self := startCPUMeter(readSelfCPU, cpuSampleEvery)
	log.Info("sending", "per_sender", o.Messages, "window", o.Window, "rate", o.Rate, "mqtt", o.MQTTVersion)
	r := t.run(ctx, stderr)
	self.finish()
	r.Scenario, r.Params = o.Scenario, o.params()
	r.WindowSec = t.ended.Sub(t.started).Seconds()
	perDelivery := func(cpu time.Duration) float64 {
		if r.Received == 0 {
			return 0
		}
		return float64(cpu/time.Nanosecond) / 1e3 / float64(r.Received)
	}
	if cpu, err := self.between(t.started, t.ended); err == nil {
		r.LoadGenCPUSec, r.LoadGenPerDeliv = cpu.Seconds(), perDelivery(cpu)
	}
	if server != nil {
		server.finish()
		if cpu, err := server.between(t.started, t.ended); err != nil {
			log.Warn("server CPU not measured", "error", err)
		} else if r.Received > 0 {
			r.ServerCPUSec, r.CPUPerDelivery = cpu.Seconds(), perDelivery(cpu)
		}
	}
	if after != nil {
		after(ctx, &r)
	}
	return r, nil
}

// measuredPID is the one server whose CPU a run measures.
func measuredPID(o options) (int, error) {
	if len(o.MQTTs) > 1 {
		return 0, errors.New("several targets: the cluster scenario reads each node's CPU")
	}
	return serverPID(o)
}

func directScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	api := newREST(o.HTTP)
	log.Info("registering users", "count", 2*o.Pairs)
	users, err := api.registerMany(ctx, o.Prefix, 2*o.Pairs)
	if err != nil {
		return report{}, err
	}
	senders, recipients := users[:o.Pairs], users[o.Pairs:]
	cc := chatCodec{size: o.Body}
	t := o.traffic(1, nil)
	for i, s := range senders {
		cc.to = append(cc.to, "user:"+recipients[i].ID)
		t.topics = append(t.topics, "users/"+s.ID+"/send")
	}
	t.codec = cc
	r, err := runTraffic(ctx, o, t, chatIdentities(senders, "bench", false), chatIdentities(recipients, "bench", true), nil, log, stderr)
	r.Target = o.TargetName
	return r, err
}

func groupScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	api := newREST(o.HTTP)
	log.Info("registering users", "count", o.Members)
	users, err := api.registerMany(ctx, o.Prefix, o.Members)
	if err != nil {
		return report{}, err
	}
	sender := users[0]
	ids := make([]string, 0, o.Members-1)
	for _, u := range users[1:] {
		ids = append(ids, u.ID)
	}
	var g struct {
		GroupID string `json:"group_id"`
	}
	if err := api.do(ctx, "POST", "/v1/groups", sender.Token, map[string]any{"name": o.Prefix, "members": ids}, &g); err != nil {
		return report{}, fmt.Errorf("create group: %w", err)
	}
	t := o.traffic(o.Members-1, chatCodec{to: []string{"group:" + g.GroupID}, size: o.Body})
	t.topics = []string{"users/" + sender.ID + "/send"}
	r, err := runTraffic(ctx, o, t, chatIdentities(users[:1], "bench", false), chatIdentities(users[1:], "bench", true), nil, log, stderr)
	r.Target = o.TargetName
	return r, err
}

// rawScenario is the same traffic on plain topics, for any MQTT broker.
func rawScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	var senders, recipients []identity
	var t *traffic
	base := "bench/" + o.Prefix
	if o.Shape == "pairs" {
		t = o.traffic(1, rawCodec{size: o.Body})
		for i := range o.Pairs {
			topic := fmt.Sprintf("%s/p%d", base, i)
			senders = append(senders, identity{ClientID: fmt.Sprintf("%s-s%d", o.Prefix, i)})
			recipients = append(recipients, identity{ClientID: fmt.Sprintf("%s-r%d", o.Prefix, i), Subs: []string{topic}})
			t.topics = append(t.topics, topic)
		}
	} else {
		t = o.traffic(o.Members-1, rawCodec{size: o.Body})
		topic := base + "/g"
		senders = []identity{{ClientID: o.Prefix + "-s0"}}
		for i := 1; i < o.Members; i++ {
			recipients = append(recipients, identity{ClientID: fmt.Sprintf("%s-r%d", o.Prefix, i), Subs: []string{topic}})
		}
		t.topics = []string{topic}
	}
	r, err := runTraffic(ctx, o, t, senders, recipients, nil, log, stderr)
	r.Target = o.TargetName
	return r, err
}
