package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/internal/apptest"
	"github.com/mqchat/mqchat/internal/mqtttest"
)

// startChatd runs a chatd node in this process on free loopback ports,
// with the limits that would only slow the load generator lifted and
// group invitations off (its users are strangers put in groups).
func startChatd(t *testing.T) app.Addrs {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	cfg := apptest.Config(t.TempDir())
	cfg.MQTT.WSAddr = ""
	cfg.Limits.SendRate, cfg.Limits.AuthRate = 0, 0
	cfg.Limits.GroupInvites = "auto"
	cfg.Log.Level = "error"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := apptest.Start(t, cfg, slog.New(slog.DiscardHandler))
	return a.Addrs()
}

// runJSON runs chatbench with args against addrs and decodes its report.
// Bounds are the caller's: these are smoke tests of the tool, not
// measurements.
func runJSON(t *testing.T, addrs app.Addrs, args ...string) report {
	t.Helper()
	args = append(args, "--http", addrs.HTTP, "--mqtt", addrs.MQTT, "--json", "--timeout", "2m")
	o, err := parseArgs(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	progress := &lockedBuffer{}
	if err := run(o, &out, progress); err != nil {
		t.Fatalf("chatbench %s: %v\n%s", strings.Join(args, " "), err, progress.String())
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("report %q: %v", out.String(), err)
	}
	var text bytes.Buffer
	r.print(&text)
	t.Logf("%s", text.String())
	return r
}

// lockedBuffer is stderr for a test: the logger and the progress line
// write to it from different goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestIsolationSmoke(t *testing.T) {
	addrs := startChatd(t)
	r := runJSON(t, addrs, "isolation", "--pairs", "2", "--members", "3", "--phase-a", "1s", "--phase-b", "2s",
		"--stall-notes", "20", "--max-ratio", "0")
	iso := r.Isolation
	if r.Scenario != "isolation" || iso == nil {
		t.Fatalf("report %+v has no isolation part", r)
	}
	for name, p := range map[string]phaseStats{"A": iso.PhaseA, "B": iso.PhaseB} {
		if p.Pairs.Count == 0 || p.Group.Count == 0 || p.All.Count != p.Pairs.Count+p.Group.Count {
			t.Errorf("phase %s: %+v", name, p)
		}
	}
	if iso.PhaseA.Seconds != 1 || iso.PhaseB.Seconds != 2 {
		t.Errorf("phases of %vs and %vs", iso.PhaseA.Seconds, iso.PhaseB.Seconds)
	}
	if iso.RatioPairs <= 0 || iso.RatioGroup <= 0 || iso.Ratio != max(iso.RatioPairs, iso.RatioGroup) {
		t.Errorf("ratios %v %v %v", iso.RatioPairs, iso.RatioGroup, iso.Ratio)
	}
	// The server may drop the stalled client before all notes are sent,
	// but the attack starts either way.
	if iso.Stall.Sent == 0 || iso.Writers != 16 || iso.Notes != 20 {
		t.Errorf("attack %+v", iso)
	}
	if iso.DisconnectSec != nil && (*iso.DisconnectSec <= 0 || *iso.DisconnectSec > 2) {
		t.Errorf("dropped after %vs, outside phase B", *iso.DisconnectSec)
	}
	if r.Received == 0 || r.Latency.Count != int(r.Received+iso.Lost) {
		t.Errorf("received %d, latency samples %d, lost %d", r.Received, r.Latency.Count, iso.Lost)
	}
}

func TestAbuseSmoke(t *testing.T) {
	addrs := startChatd(t)
	r := runJSON(t, addrs, "abuse", "--pairs", "2", "--members", "3", "--duration", "4s", "--slot", "1s",
		"--parallel", "4", "--stall-notes", "20", "--server-pid", strconv.Itoa(os.Getpid()),
		"--max-p99", "0", "--max-rss", "0")
	ab := r.Abuse
	if r.Scenario != "abuse" || ab == nil {
		t.Fatalf("report %+v has no abuse part", r)
	}
	if ab.Healthy.All.Count == 0 || ab.Baseline.All.Count == 0 || ab.Worst.stats.Count == 0 {
		t.Errorf("healthy %+v baseline %+v worst %+v", ab.Healthy, ab.Baseline, ab.Worst)
	}
	if w := ab.Worst.ToSec - ab.Worst.FromSec; w < 1 || w > worstWindow {
		t.Errorf("worst window %+v", ab.Worst)
	}
	if ab.RSSStart <= 0 || ab.RSSMax < ab.RSSStart {
		t.Errorf("rss %d then at most %d", ab.RSSStart, ab.RSSMax)
	}
	if len(ab.Seconds) < 3 {
		t.Errorf("%d seconds sampled", len(ab.Seconds))
	}
	// Three attack slots of four attackers: every attacker ran.
	if len(ab.Attackers) != len(attackKinds) {
		t.Fatalf("attackers %+v", ab.Attackers)
	}
	for _, a := range ab.Attackers {
		if a.Runs == 0 || a.Actions == 0 {
			t.Errorf("attacker %+v did nothing", a)
		}
	}
	attacked := false
	for _, s := range ab.Seconds {
		attacked = attacked || len(s.Attackers) > 0
	}
	if !attacked {
		t.Error("no second shows an attacker at work")
	}
}

// TestDirectSmoke runs direct pairs with MQTT 5 and MQTT 3.1.1 clients:
// every message is delivered once, whichever library sent it.
func TestDirectSmoke(t *testing.T) {
	addrs := startChatd(t)
	for _, v := range []string{"5", mqtt3Version} {
		t.Run("v"+v, func(t *testing.T) {
			r := runJSON(t, addrs, "direct", "--pairs", "3", "--messages", "20", "--mqtt-version", v, "--prefix", "d"+strings.ReplaceAll(v, ".", ""))
			if r.Sent != 60 || r.Acked != 60 || r.Received != 60 || r.Duplicates != 0 || r.Errors != 0 || r.Latency.Count != 60 {
				t.Fatalf("report %+v", r)
			}
			if r.Params["mqtt"] != v {
				t.Fatalf("params %v", r.Params)
			}
		})
	}
}

// TestPacedDirectSmoke runs a paced 3.1.1 direct run: every message is
// delivered, the report says what was offered and achieved, the sends
// were never faster than the offered rate, and the CPU was measured over
// the run's own window.
func TestPacedDirectSmoke(t *testing.T) {
	addrs := startChatd(t)
	r := runJSON(t, addrs, "direct", "--pairs", "2", "--messages", "30", "--rate", "200", "--window", "10",
		"--mqtt-version", mqtt3Version, "--load-label", "50%", "--prefix", "pd")
	checkPaced(t, r, 60, 200)
	if r.Params["load"] != "50%" || r.row() != "direct 2 pairs v3.1.1 w10 @50%" {
		t.Fatalf("params %v, row %q", r.Params, r.row())
	}
}

// TestPacedRawSmoke runs paced raw pairs against a bare mochi broker on
// plain topics, with both client libraries.
func TestPacedRawSmoke(t *testing.T) {
	addr := startMochi(t)
	for _, v := range []string{"5", mqtt3Version} {
		t.Run("v"+v, func(t *testing.T) {
			r := runJSON(t, app.Addrs{MQTT: addr, HTTP: addr}, "raw", "--shape", "pairs", "--pairs", "3", "--messages", "40",
				"--rate", "300", "--window", "10", "--mqtt-version", v, "--target", "mochi", "--prefix", "pr"+strings.ReplaceAll(v, ".", ""))
			checkPaced(t, r, 120, 300)
			if want := "direct 3 pairs v" + v + " w10 @300/s"; r.row() != want {
				t.Fatalf("row %q, want %q", r.row(), want)
			}
		})
	}
}

func checkPaced(t *testing.T, r report, messages int64, rate float64) {
	t.Helper()
	if r.Sent != messages || r.Acked != messages || r.Received != messages || r.Errors != 0 || r.Duplicates != 0 {
		t.Fatalf("report %+v", r)
	}
	// A paced sender's n sends take at least (n-1) periods: never faster
	// than offered. Slower is allowed on a busy machine, and flagged.
	if r.OfferedRate != rate || r.SendRate <= 0 || r.SendRate > rate*1.01 {
		t.Fatalf("offered %v, achieved %v", r.OfferedRate, r.SendRate)
	}
	if r.Saturated != (r.SendRate < saturatedBelow*rate) {
		t.Fatalf("saturated %v at %v of %v offered", r.Saturated, r.SendRate, rate)
	}
	// The window runs from the first send to the last delivery or PUBACK:
	// at least the paced sends' own span, at most the whole run.
	minSpan := float64(messages) / rate * 0.9
	if r.WindowSec < minSpan || r.WindowSec > r.ElapsedSec+1 {
		t.Fatalf("window %vs, elapsed %vs", r.WindowSec, r.ElapsedSec)
	}
	if r.LoadGenCPUSec <= 0 || r.LoadGenPerDeliv <= 0 {
		t.Fatalf("load generator CPU %v, %vµs per delivery", r.LoadGenCPUSec, r.LoadGenPerDeliv)
	}
}

// startMochi runs a bare mochi broker (allow-all, no persistence, like
// cmd/barebroker) in this process on a free loopback port.
func startMochi(t *testing.T) string {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(mqtttest.AllowAll), nil); err != nil {
		t.Fatal(err)
	}
	return mqtttest.ServeTCP(t, srv)
}
