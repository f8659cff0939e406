package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p90 of 1..10", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"p100 is max", ms(1, 2, 3), 100, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.d, tt.p); got != tt.want {
				t.Fatalf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	s := summarize(ms(5, 1, 4, 2, 3))
	if s.Count != 5 || s.P50 != 3 || s.Max != 5 {
		t.Fatalf("summarize = %+v", s)
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:1883", true},
		{"127.9.9.9:1883", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"10.0.0.5:1883", false},
		{"example.com:1883", false},
		{"0.0.0.0:1883", false},
		{"127.0.0.1", false}, // no port
	}
	for _, tt := range tests {
		if err := loopbackOnly(tt.addr); (err == nil) != tt.ok {
			t.Errorf("loopbackOnly(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}

func TestParseArgs(t *testing.T) {
	tests := []argCase{
		{"no scenario", "", "usage", nil},
		{"unknown scenario", "flood", "usage", nil},
		{"direct defaults", "direct", "", func(o options) bool {
			return o.Pairs == 50 && o.Window == 8 && o.Body == 256 && o.TargetName == "chatd" && o.Sources == 1
		}},
		{"raw names its target", "raw --mqtt 127.0.0.1:1884 --shape group --members 10", "", func(o options) bool {
			return o.TargetName == "broker" && o.Shape == "group" && o.Members == 10
		}},
		{"remote target refused", "direct --mqtt 192.168.1.2:1883", "not a loopback", nil},
		{"remote REST refused", "group --http 8.8.8.8:80", "not a loopback", nil},
		{"unbounded messages refused", "direct --messages 0", "--messages", nil},
		{"window bounded", "direct --window 5000", "--window", nil},
		{"bad shape", "raw --shape star", "--shape", nil},
		{"sources follow connections", "connections --conns 60000", "", func(o options) bool { return o.Sources == 3 }},
		{"hold bounded", "connections --hold 1h", "--hold", nil},
		{"history needs a dir", "history", "--data-dir", nil},
		{"fill may be large with a longer default timeout", "history-fill --data-dir /tmp/x --messages 10000000", "", func(o options) bool {
			return o.Messages == 10000000 && o.Timeout == 30*time.Minute
		}},
		{"isolation has small defaults", "isolation", "", func(o options) bool {
			return o.Pairs == 8 && o.Members == 20 && o.Drain == 10*time.Second && o.MaxRatio == 2 && o.Writers == 16 &&
				o.PhaseA == 8*time.Second && o.PhaseB == 15*time.Second && o.Timeout == 3*time.Minute
		}},
		{"isolation keeps explicit sizes", "isolation --pairs 3 --members 5 --max-ratio 0", "", func(o options) bool {
			return o.Pairs == 3 && o.Members == 5 && o.MaxRatio == 0
		}},
		{"phases bounded", "isolation --phase-b 5m", "--phase-a and --phase-b", nil},
		{"abuse timeout follows duration", "abuse --duration 5m", "", func(o options) bool {
			return o.Timeout == 8*time.Minute && len(o.Attacks) == len(attackKinds) && o.MaxRSS == 1<<30
		}},
		{"abuse at most 10 minutes", "abuse --duration 11m", "--duration", nil},
		{"abuse needs a baseline slot", "abuse --duration 10s --slot 6s", "--slot", nil},
		{"abuse picks attackers", "abuse --attacks stall,oversize --parallel 1 --max-rss 512MiB --max-p99 2s", "", func(o options) bool {
			return slices.Equal(o.Attacks, []string{"stall", "oversize"}) && o.MaxRSS == 512<<20 && o.MaxP99 == 2*time.Second
		}},
		{"unknown attacker", "abuse --attacks stall,teleport", "unknown attacker", nil},
		{"bad size", "abuse --max-rss lots", "--max-rss", nil},
		{"abuse is loopback only", "abuse --mqtt 10.1.1.1:1883", "not a loopback", nil},
		{"paced level named", "direct --rate 5000 --load-label 50% --send-for 5s", "", func(o options) bool {
			return o.LoadLabel == "50%" && o.Rate == 5000 && o.SendFor == 5*time.Second
		}},
		{"a load label needs a rate", "direct --load-label 50%", "needs --rate", nil},
		{"send-for bounded", "raw --send-for 11m", "--send-for", nil},
		{"table needs files", "table", "result files", nil},
		{"table takes files", "table a.json b.json", "", func(o options) bool { return len(o.Files) == 2 }},
	}
	runArgCases(t, tests)
}

func TestCodecsRoundTrip(t *testing.T) {
	for _, c := range []codec{rawCodec{size: 256}, chatCodec{to: []string{"user:a", "group:g"}, size: 256}} {
		buf := c.encode(nil, 1, 42, 1234567890123)
		s, n, ts, ok := c.decode(buf)
		if !ok || s != 1 || n != 42 || ts != 1234567890123 {
			t.Fatalf("%T: decode = %d %d %d %v", c, s, n, ts, ok)
		}
	}
	if raw := (rawCodec{size: 256}).encode(nil, 0, 0, 1); len(raw) != 256 {
		t.Fatalf("raw payload is %d bytes", len(raw))
	}
	env := string(chatCodec{to: []string{"user:a"}, size: 256}.encode(nil, 0, 3, 99))
	_, body, _ := strings.Cut(env, `"body":`)
	if len(body) != 256+2+1 { // the JSON string's quotes, then the closing brace
		t.Fatalf("body is %d bytes: %s", len(body), body)
	}
	// A delivered message carries more fields around the two it reads.
	delivered := `{"chat":"d:a:b","seq":4,"id":"x","from":"a","cmid":"c0-3","type":"text","body":"t99;xxxx","sent_at":"…"}`
	if s, n, ts, ok := (chatCodec{}).decode([]byte(delivered)); !ok || s != 0 || n != 3 || ts != 99 {
		t.Fatalf("decode delivered = %d %d %d %v", s, n, ts, ok)
	}
	if _, _, _, ok := (chatCodec{}).decode([]byte(`{"type":"sent"}`)); ok {
		t.Fatal("an event decoded as a bench message")
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS(strings.NewReader("Name:\tchatd\nVmPeak:\t 1000 kB\nVmRSS:\t   70312 kB\nThreads: 9\n"))
	if err != nil || got != 70312*1024 {
		t.Fatalf("parseVmRSS = %d, %v", got, err)
	}
	if _, err := parseVmRSS(strings.NewReader("Name: x\n")); err == nil {
		t.Fatal("no VmRSS line accepted")
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may contain spaces and parentheses.
	stat := "4242 (chat d) (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 9 0 100 0 0"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3800*time.Millisecond {
		t.Fatalf("parseStatCPU = %v, %v; want 3.8s", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Fatal("garbage accepted")
	}
}

// argCase is one command line for parseArgs: it fails mentioning wantErr,
// or succeeds with options check accepts.
type argCase struct {
	name, args, wantErr string
	check               func(options) bool
}

func runArgCases(t *testing.T, tests []argCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseArgs(strings.Fields(tt.args), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Fatalf("options %+v", o)
			}
		})
	}
}
