package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// isolationWarmup is healthy traffic before phase A: the first message of
// a 1:1 chat also writes both users' chat lists, which is not what phase A
// is meant to measure.
const isolationWarmup = time.Second

// isolationScenario measures healthy pairs and a group alone (phase A) and
// then next to one stalled consumer (phase B, see staller), and reports
// the ratio of their p99 latencies and how long the server took to drop
// the stalled client.
func isolationScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	api := newREST(o.HTTP)
	h, err := newHealthyLoad(ctx, o, api, log)
	if err != nil {
		return report{}, err
	}
	defer h.close()
	atk, err := api.registerMany(ctx, o.Prefix+"-a", 1)
	if err != nil {
		return report{}, err
	}
	log.Info("making one group of the stalled user per writer", "writers", o.Writers)
	st, err := newStaller(ctx, o, api, atk[0], h.users)
	if err != nil {
		return report{}, err
	}
	defer st.close()

	stop := make(chan struct{})
	defer close(stop)
	go progress(stderr, &h.c, stop)
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	wait := h.run(sendCtx, ctx)
	log.Info("phase A: healthy traffic alone", "for", o.PhaseA)
	sleepCtx(ctx, isolationWarmup+o.PhaseA)
	bStart := h.since()
	log.Info("phase B: a stalled consumer", "for", o.PhaseB, "notes", o.StallNotes, "note_bytes", o.StallBytes)
	actx, cancel := context.WithTimeout(ctx, o.PhaseB)
	stall := st.run(actx, "1")
	<-actx.Done()
	cancel()
	stopSending()
	wait()
	log.Info("draining", "outstanding", h.outstanding(), "for_at_most", o.Drain)
	h.finish(ctx, o.Drain)

	res := &isolationResult{
		PhaseA:   phaseStats{Seconds: o.PhaseA.Seconds(), classStats: h.classStats(isolationWarmup, isolationWarmup+o.PhaseA)},
		PhaseB:   phaseStats{Seconds: o.PhaseB.Seconds(), classStats: h.classStats(bStart, bStart+o.PhaseB)},
		MaxRatio: o.MaxRatio, Stall: stall, Writers: o.Writers, Notes: o.StallNotes, NoteBytes: o.StallBytes,
		Lost: h.lost, SendErrors: h.c.errors.Load(),
	}
	if stall.Disconnected {
		sec := stall.After.Seconds()
		res.DisconnectSec = &sec
	}
	if res.PhaseA.Pairs.Count == 0 || res.PhaseA.Group.Count == 0 {
		return report{}, fmt.Errorf("phase A delivered nothing to compare with (pairs %d, group %d deliveries)", res.PhaseA.Pairs.Count, res.PhaseA.Group.Count)
	}
	res.RatioPairs = res.PhaseB.Pairs.P99 / res.PhaseA.Pairs.P99
	res.RatioGroup = res.PhaseB.Group.P99 / res.PhaseA.Group.P99
	res.Ratio = max(res.RatioPairs, res.RatioGroup)

	r := h.report(o)
	r.Isolation = res
	if o.MaxRatio > 0 && res.Ratio > o.MaxRatio {
		r.Violations = append(r.Violations, fmt.Sprintf("p99 in phase B is %.2fx phase A's (bound %.2gx)", res.Ratio, o.MaxRatio))
	}
	if o.MaxDisconnect > 0 && (!stall.Disconnected || stall.After > o.MaxDisconnect) {
		r.Violations = append(r.Violations, fmt.Sprintf("the stalled client was not dropped within %v", o.MaxDisconnect))
	}
	r.Violations = append(r.Violations, h.violations()...)
	return r, nil
}

// report fills the figures every scenario has from the healthy traffic.
func (h *healthyLoad) report(o options) report {
	el := h.since().Seconds()
	return report{
		Scenario: o.Scenario, Target: o.TargetName, Params: o.params(),
		Sent: h.c.sent.Load(), Acked: h.c.acked.Load(), Received: h.c.received.Load(),
		Expected: h.c.received.Load() + h.lost, Duplicates: h.c.dups.Load(),
		Errors: h.c.errors.Load() + h.lost, Reconnects: h.c.reconnects.Load(),
		ElapsedSec: el, Throughput: float64(h.c.received.Load()) / el,
		Latency: h.tl[classAll].between(0, time.Duration(1<<62)),
	}
}

// violations are what no misbehaving client may cause: a healthy send
// refused or unanswered, a healthy delivery lost.
func (h *healthyLoad) violations() []string {
	var v []string
	if h.lost > 0 {
		v = append(v, fmt.Sprintf("%d healthy deliveries lost", h.lost))
	}
	if n := h.c.errors.Load(); n > 0 {
		v = append(v, fmt.Sprintf("%d healthy sends failed", n))
	}
	return v
}

// isolationResult is the isolation scenario's own part of the report.
type isolationResult struct {
	PhaseA        phaseStats   `json:"phase_a"`
	PhaseB        phaseStats   `json:"phase_b"`
	RatioPairs    float64      `json:"p99_ratio_pairs"`
	RatioGroup    float64      `json:"p99_ratio_group"`
	Ratio         float64      `json:"p99_ratio"` // the larger of the two
	MaxRatio      float64      `json:"max_ratio"`
	DisconnectSec *float64     `json:"stall_disconnect_sec"` // null: still connected when phase B ended
	Stall         stallOutcome `json:"stall"`
	Writers       int          `json:"writers"`
	Notes         int          `json:"stall_notes"`
	NoteBytes     int          `json:"stall_note_bytes"`
	Lost          int64        `json:"healthy_lost"`
	SendErrors    int64        `json:"healthy_send_errors"`
}

type phaseStats struct {
	Seconds float64 `json:"seconds"`
	classStats
}

func (r *isolationResult) print(w io.Writer) {
	fmt.Fprintf(w, "  phase A      alone, %.0fs\n", r.PhaseA.Seconds)
	r.PhaseA.print(w)
	fmt.Fprintf(w, "  phase B      stalled consumer, %.0fs\n", r.PhaseB.Seconds)
	r.PhaseB.print(w)
	fmt.Fprintf(w, "  p99 B/A      pairs %.2fx  group %.2fx  (bound %.2gx)\n", r.RatioPairs, r.RatioGroup, r.MaxRatio)
	if r.DisconnectSec != nil {
		fmt.Fprintf(w, "  stalled      dropped by the server %.2fs after its first note\n", *r.DisconnectSec)
	} else {
		fmt.Fprintf(w, "  stalled      still connected when phase B ended (%.0fs)\n", r.PhaseB.Seconds)
	}
	fmt.Fprintf(w, "  attack       %d notes of %d bytes, a message into each of %d writers' groups: %d acknowledged, %d refused, %d failed\n",
		r.Notes, r.NoteBytes, r.Writers, r.Stall.Sent, r.Stall.Refused, r.Stall.Errors)
	fmt.Fprintf(w, "  healthy      %d deliveries lost, %d sends failed\n", r.Lost, r.SendErrors)
}

func (p phaseStats) print(w io.Writer) {
	fmt.Fprintf(w, "    pairs      %v\n", p.Pairs)
	fmt.Fprintf(w, "    group      %v\n", p.Group)
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
