package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// worstWindow is the width of the window whose p99 the abuse report
// singles out: long enough to hold a stall, short enough not to dilute it.
const worstWindow = 10

// abuseScenario is a soak: healthy pairs and a group are measured the
// whole time while attackers take turns (--slot each, --parallel at once)
// after a first slot of healthy traffic alone. It samples the server's
// RSS every second.
func abuseScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	pid, err := serverPID(o)
	if err != nil {
		return report{}, fmt.Errorf("find the server process (pass --server-pid): %w", err)
	}
	api := newREST(o.HTTP)
	h, err := newHealthyLoad(ctx, o, api, log)
	if err != nil {
		return report{}, err
	}
	defer h.close()
	env, err := newAttackEnv(ctx, o, api, h.users, log)
	if err != nil {
		return report{}, err
	}
	defer env.close()
	kinds := make([]attackKind, len(o.Attacks))
	counters := make([]*attackCounters, len(o.Attacks))
	for i, n := range o.Attacks {
		for _, k := range attackKinds {
			if k.name == n {
				kinds[i], counters[i] = k, &attackCounters{}
			}
		}
	}
	rss0, err := readRSS(pid)
	if err != nil {
		return report{}, err
	}

	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	wait := h.run(sendCtx, ctx)
	var active atomic.Pointer[[]string]
	sampling := make(chan struct{})
	samples := make(chan []secondStat, 1)
	go func() { samples <- sampleSeconds(h, pid, &active, stderr, sampling) }()

	log.Info("soak", "duration", o.Duration, "slot", o.Slot, "parallel", o.Parallel, "attackers", strings.Join(o.Attacks, ","), "server_pid", pid)
	slots := int(o.Duration / o.Slot)
	sleepCtx(ctx, o.Slot) // the first slot is the baseline
	for s := 1; s < slots && ctx.Err() == nil; s++ {
		sctx, cancel := context.WithTimeout(ctx, o.Slot)
		var names []string
		var wg sync.WaitGroup
		for j := range min(o.Parallel, len(kinds)) {
			i := ((s-1)*o.Parallel + j) % len(kinds)
			names = append(names, kinds[i].name)
			counters[i].runs.Add(1)
			wg.Go(func() { kinds[i].run(sctx, env, counters[i]) })
		}
		active.Store(&names)
		<-sctx.Done()
		wg.Wait() // attackers stop with their context; closing what they hold is quick
		cancel()
		active.Store(nil)
	}
	sleepCtx(ctx, o.Duration-time.Duration(slots)*o.Slot)
	soak := h.since()
	stopSending()
	wait()
	close(sampling)
	series := <-samples
	log.Info("draining", "outstanding", h.outstanding(), "for_at_most", o.Drain)
	h.finish(ctx, o.Drain)

	res := &abuseResult{
		DurationSec: soak.Seconds(), SlotSec: o.Slot.Seconds(),
		Healthy:  h.classStats(0, soak),
		Baseline: h.classStats(min(isolationWarmup, o.Slot/2), o.Slot),
		Lost:     h.lost, SendErrors: h.c.errors.Load(),
		RSSStart: rss0, RSSMax: rss0, MaxP99Ms: ms(o.MaxP99), MaxRSS: o.MaxRSS,
		StallDrops: env.drops, Seconds: series,
	}
	secs := int(soak / time.Second)
	first, worst := h.tl[classAll].worst(worstWindow, secs)
	res.Worst = window{FromSec: first, ToSec: max(min(first+worstWindow, secs), first+1), stats: worst}
	bySend := h.tl[classAll].perSecond()
	for i := range res.Seconds {
		res.RSSMax = max(res.RSSMax, res.Seconds[i].RSS)
		if i < len(bySend) {
			res.Seconds[i].SentP99 = bySend[i].P99
		}
	}
	for i, k := range kinds {
		res.Attackers = append(res.Attackers, counters[i].stat(k.name))
	}
	r := h.report(o)
	r.Abuse = res
	if o.MaxP99 > 0 && res.Healthy.All.P99 > ms(o.MaxP99) {
		r.Violations = append(r.Violations, fmt.Sprintf("healthy p99 %.1fms over the soak (bound %v)", res.Healthy.All.P99, o.MaxP99))
	}
	if o.MaxRSS > 0 && res.RSSMax > o.MaxRSS {
		r.Violations = append(r.Violations, fmt.Sprintf("server RSS reached %.1f MiB (bound %.1f MiB)", mib(res.RSSMax), mib(o.MaxRSS)))
	}
	r.Violations = append(r.Violations, h.violations()...)
	return r, nil
}

// sampleSeconds prints a line a second until stop closes: healthy
// deliveries that arrived in that second and their p99, deliveries still
// awaited, the server's RSS and the attackers at work.
func sampleSeconds(h *healthyLoad, pid int, active *atomic.Pointer[[]string], w io.Writer, stop <-chan struct{}) []secondStat {
	var out []secondStat
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return out
		case <-t.C:
		}
		lat := summarize(h.live.take())
		rss, _ := readRSS(pid) // a failed read shows as 0
		s := secondStat{T: len(out), Received: lat.Count, P99: lat.P99, RSS: rss}
		if a := active.Load(); a != nil {
			s.Attackers = *a
		}
		out = append(out, s)
		fmt.Fprintf(w, "[%4ds] healthy %4d/s  p99 %8.1fms  awaited %5d  server RSS %7.1f MiB  attackers %s\n",
			s.T+1, s.Received, s.P99, h.outstanding(), mib(rss), strings.Join(s.Attackers, ","))
	}
}

// abuseResult is the abuse scenario's own part of the report.
type abuseResult struct {
	DurationSec float64      `json:"duration_sec"`
	SlotSec     float64      `json:"slot_sec"`
	Healthy     classStats   `json:"healthy"`  // every message sent during the soak
	Baseline    classStats   `json:"baseline"` // the first slot, no attacker yet
	Worst       window       `json:"worst_10s"`
	Lost        int64        `json:"healthy_lost"`
	SendErrors  int64        `json:"healthy_send_errors"`
	RSSStart    int64        `json:"rss_start"`
	RSSMax      int64        `json:"rss_max"`
	MaxP99Ms    float64      `json:"max_p99_ms"`
	MaxRSS      int64        `json:"max_rss"`
	Attackers   []attackStat `json:"attackers"`
	StallDrops  []float64    `json:"stall_dropped_after_sec"` // per stalled connection the server dropped
	Seconds     []secondStat `json:"seconds"`
}

// window is a stretch of whole seconds of sending.
type window struct {
	FromSec int `json:"from_sec"`
	ToSec   int `json:"to_sec"`
	stats
}

// secondStat is one second of the soak. P99 is over the healthy deliveries
// that arrived in it (what the progress line showed); SentP99 over those of
// the messages sent in it, late and lost ones included.
type secondStat struct {
	T         int      `json:"t"`
	Received  int      `json:"received"`
	P99       float64  `json:"p99_ms"`
	SentP99   float64  `json:"sent_p99_ms"`
	RSS       int64    `json:"rss"`
	Attackers []string `json:"attackers,omitempty"`
}

func (r *abuseResult) print(w io.Writer) {
	fmt.Fprintf(w, "  healthy      %v\n", r.Healthy.All)
	fmt.Fprintf(w, "    pairs      %v\n", r.Healthy.Pairs)
	fmt.Fprintf(w, "    group      %v\n", r.Healthy.Group)
	fmt.Fprintf(w, "  baseline     first %.0fs, no attacker: %v\n", r.SlotSec, r.Baseline.All)
	fmt.Fprintf(w, "  worst %ds    sent in [%ds, %ds): %v\n", worstWindow, r.Worst.FromSec, r.Worst.ToSec, r.Worst.stats)
	fmt.Fprintf(w, "  healthy      %d deliveries lost, %d sends failed\n", r.Lost, r.SendErrors)
	fmt.Fprintf(w, "  server RSS   %.1f MiB at the start, %.1f MiB at most\n", mib(r.RSSStart), mib(r.RSSMax))
	fmt.Fprintf(w, "  %-12s %5s %9s %9s %9s %9s\n", "attacker", "runs", "actions", "refused", "dropped", "errors")
	for _, a := range r.Attackers {
		fmt.Fprintf(w, "  %-12s %5d %9d %9d %9d %9d\n", a.Kind, a.Runs, a.Actions, a.Refused, a.Dropped, a.Errors)
	}
	if len(r.StallDrops) > 0 {
		var s []string
		for _, d := range r.StallDrops {
			s = append(s, fmt.Sprintf("%.2fs", d))
		}
		fmt.Fprintf(w, "  stalled      dropped %s after their first note\n", strings.Join(s, ", "))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }
