package main

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// stats are latency percentiles in milliseconds (JSON friendly).
type stats struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func (s stats) String() string {
	if s.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms  (n=%d)", s.P50, s.P90, s.P99, s.Max, s.Count)
}

// summarize sorts d in place and returns its nearest-rank percentiles.
func summarize(d []time.Duration) stats {
	if len(d) == 0 {
		return stats{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	return stats{Count: len(d), P50: ms(percentile(d, 50)), P90: ms(percentile(d, 90)), P99: ms(percentile(d, 99)), Max: ms(d[len(d)-1])}
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of sorted d.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	return sorted[max(0, min(len(sorted)-1, rank))]
}

// recorder collects latency samples from many goroutines.
type recorder struct {
	mu sync.Mutex
	d  []time.Duration
}

func (r *recorder) add(d time.Duration) {
	r.mu.Lock()
	r.d = append(r.d, d)
	r.mu.Unlock()
}

// take returns the samples so far and starts over: one second's worth for
// a progress line.
func (r *recorder) take() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.d
	r.d = nil
	return d
}

func (r *recorder) stats() stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(slices.Clone(r.d))
}

// counters are the live figures of a run, shown by the progress line.
type counters struct {
	sent, acked, received, dups, errors, reconnects atomic.Int64
	connections                                     atomic.Int64
}

// progress prints one line a second to w until stop is closed.
func progress(w io.Writer, c *counters, stop <-chan struct{}) {
	start := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastRecv int64
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			r := c.received.Load()
			fmt.Fprintf(w, "[%5.1fs] conns %d  sent %d  acked %d  received %d (+%d/s)  dups %d  errors %d  reconnects %d\n",
				now.Sub(start).Seconds(), c.connections.Load(), c.sent.Load(), c.acked.Load(), r, r-lastRecv,
				c.dups.Load(), c.errors.Load(), c.reconnects.Load())
			lastRecv = r
		}
	}
}

// report is the outcome of one scenario run, printed as text or JSON.
type report struct {
	Scenario string         `json:"scenario"`
	Target   string         `json:"target"`
	Params   map[string]any `json:"params"`

	Sent       int64 `json:"sent"`
	Acked      int64 `json:"acked"`
	Expected   int64 `json:"deliveries_expected"`
	Received   int64 `json:"deliveries_received"`
	Duplicates int64 `json:"duplicates"`
	Errors     int64 `json:"errors"`
	Reconnects int64 `json:"reconnects"`

	ElapsedSec   float64 `json:"elapsed_sec"`
	Throughput   float64 `json:"throughput"` // deliveries (or requests) per second
	SendsPerSec  float64 `json:"sends_per_sec,omitempty"`
	Latency      stats   `json:"latency"`                  // send -> receive (or request -> response)
	Puback       *stats  `json:"puback,omitempty"`         // publish -> PUBACK
	LastMember   *stats  `json:"last_member,omitempty"`    // publish -> last recipient has it
	Connections  int64   `json:"connections,omitempty"`    // connections scenario
	BaselineRSS  int64   `json:"baseline_rss,omitempty"`   // bytes, before connecting
	RSS          int64   `json:"rss,omitempty"`            // bytes, while holding
	BytesPerConn float64 `json:"bytes_per_conn,omitempty"` // (RSS - baseline) / connections

	// CPU over the measured window (cpumeter.go says how): the server's
	// and the load generator's own, in total and per delivery.
	WindowSec       float64 `json:"cpu_window_sec,omitempty"`
	ServerCPUSec    float64 `json:"server_cpu_sec,omitempty"`
	CPUPerDelivery  float64 `json:"cpu_us_per_delivery,omitempty"`
	LoadGenCPUSec   float64 `json:"loadgen_cpu_sec,omitempty"`
	LoadGenPerDeliv float64 `json:"loadgen_cpu_us_per_delivery,omitempty"`

	// Paced runs (--rate): the offered rate (messages per second over all
	// senders), the send rate achieved, and whether the sends fell short
	// of the offered rate by more than 5%.
	OfferedRate float64 `json:"offered_rate,omitempty"`
	SendRate    float64 `json:"achieved_send_rate,omitempty"`
	Saturated   bool    `json:"saturated,omitempty"`

	Isolation   *isolationResult `json:"isolation,omitempty"`
	Abuse       *abuseResult     `json:"abuse,omitempty"`
	Violations  []string         `json:"violations,omitempty"`     // bounds the run broke; it exits non-zero
	Storm       *stormReport     `json:"presence_storm,omitempty"` // presence-storm scenario
	Cluster     *clusterReport   `json:"cluster,omitempty"`        // cluster scenario
	Attachments *attachReport    `json:"attachments,omitempty"`    // attachments scenario
}

func (r report) print(w io.Writer) {
	if r.Storm != nil {
		r.Storm.print(w, r)
		return
	}
	fmt.Fprintf(w, "scenario %s on %s %v\n", r.Scenario, r.Target, r.Params)
	defer func() {
		for _, v := range r.Violations {
			fmt.Fprintf(w, "  VIOLATED     %s\n", v)
		}
	}()
	if r.Isolation != nil {
		r.Isolation.print(w)
		return
	}
	if r.Abuse != nil {
		r.Abuse.print(w)
		return
	}
	if r.Attachments != nil {
		r.Attachments.print(w)
		return
	}
	if r.Connections > 0 || r.BaselineRSS > 0 {
		fmt.Fprintf(w, "  connections  %d held, %d errors\n", r.Connections, r.Errors)
		fmt.Fprintf(w, "  server RSS   %.1f MiB before, %.1f MiB holding: %.0f bytes per connection\n",
			float64(r.BaselineRSS)/(1<<20), float64(r.RSS)/(1<<20), r.BytesPerConn)
		return
	}
	if r.Scenario == "history" {
		fmt.Fprintf(w, "  pages        %d of %d requests, %d errors, %.0f/s over %.2fs\n", r.Received, r.Sent, r.Errors, r.Throughput, r.ElapsedSec)
		fmt.Fprintf(w, "  latency      %v\n", r.Latency)
		return
	}
	if r.Sent > 0 {
		fmt.Fprintf(w, "  sends        %d sent, %d acked (%.0f/s)\n", r.Sent, r.Acked, r.SendsPerSec)
	}
	fmt.Fprintf(w, "  deliveries   %d of %d, %d duplicates, %d errors, %d reconnects\n", r.Received, r.Expected, r.Duplicates, r.Errors, r.Reconnects)
	fmt.Fprintf(w, "  throughput   %.0f/s over %.2fs\n", r.Throughput, r.ElapsedSec)
	fmt.Fprintf(w, "  latency      %v\n", r.Latency)
	if r.OfferedRate > 0 {
		sat := ""
		if r.Saturated {
			sat = "  SATURATED: the offered load was not applied"
		}
		fmt.Fprintf(w, "  paced        offered %.0f msgs/s, sent %.0f/s%s\n", r.OfferedRate, r.SendRate, sat)
	}
	if r.ServerCPUSec > 0 {
		fmt.Fprintf(w, "  server CPU   %.2fs over %.2fs, %.1fµs per delivery\n", r.ServerCPUSec, r.WindowSec, r.CPUPerDelivery)
	}
	if r.LoadGenCPUSec > 0 && r.Cluster == nil { // a cluster run prints its own
		fmt.Fprintf(w, "  chatbench    CPU %.2fs, %.1fµs per delivery\n", r.LoadGenCPUSec, r.LoadGenPerDeliv)
	}
	if r.Puback != nil {
		fmt.Fprintf(w, "  PUBACK       %v\n", *r.Puback)
	}
	if r.LastMember != nil {
		fmt.Fprintf(w, "  last member  %v\n", *r.LastMember)
	}
	if r.Cluster != nil {
		r.Cluster.print(w)
	}
}
