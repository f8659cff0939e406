package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTimeline(t *testing.T) {
	ms := func(x int) time.Duration { return time.Duration(x) * time.Millisecond }
	var tl timeline
	// Second 0: ten fast messages; second 1: one slow; second 3: nine more
	// fast ones; second 2 sent nothing.
	for i := range 10 {
		tl.add(ms(i*100), ms(2))
	}
	tl.add(ms(1500), ms(4000))
	for i := range 9 {
		tl.add(ms(3000+i*100), ms(3))
	}
	tl.add(-ms(5), ms(1)) // clock skew lands in the first second

	tests := []struct {
		name     string
		from, to time.Duration
		count    int
		p99      float64
	}{
		{"all", 0, time.Hour, 21, 4000},
		{"first second", 0, time.Second, 11, 2},
		{"half-open: 1.5s is not before 1.5s", time.Second, ms(1500), 0, 0},
		{"cuts inside a second", ms(1500), ms(3200), 3, 4000},
		{"empty second", 2 * time.Second, 3 * time.Second, 0, 0},
	}
	for _, tt := range tests {
		if s := tl.between(tt.from, tt.to); s.Count != tt.count || s.P99 != tt.p99 {
			t.Errorf("%s: between(%v, %v) = %+v, want count %d p99 %v", tt.name, tt.from, tt.to, s, tt.count, tt.p99)
		}
	}

	per := tl.perSecond()
	if len(per) != 4 || per[0].Count != 11 || per[1].P99 != 4000 || per[2].Count != 0 || per[3].Count != 9 {
		t.Fatalf("perSecond = %+v", per)
	}
	// [0s, 2s) and [1s, 3s) share the slow message as their p99; the
	// window with nothing else in it is the worse one.
	if first, s := tl.worst(2, 4); first != 1 || s.P99 != 4000 || s.Count != 1 {
		t.Fatalf("worst(2) = %d %+v, want the window starting at 1", first, s)
	}
	if first, s := tl.worst(1, 4); first != 1 || s.Count != 1 {
		t.Fatalf("worst(1) = %d %+v, want second 1", first, s)
	}
	if first, s := tl.worst(10, 4); first != 0 || s.Count != 21 {
		t.Fatalf("worst wider than the run = %d %+v, want one window of everything", first, s)
	}
	if first, s := tl.worst(2, 2); first != 0 || s.Count != 12 {
		t.Fatalf("worst within the first 2 seconds = %d %+v", first, s)
	}
	// A stall in seconds 3-4: every window of 2 touching second 3 has its
	// slowest message as p99, and the one holding both stalled seconds is
	// the worst.
	var stall timeline
	for sec := range 8 {
		for i := range 10 {
			lat := ms(1)
			if sec >= 3 && sec <= 4 {
				lat = ms(2000 - (sec-3)*1000 - i*10) // sent later, waited less
			}
			stall.add(time.Duration(sec)*time.Second+ms(i*100), lat)
		}
	}
	if first, _ := stall.worst(2, 8); first != 3 {
		t.Fatalf("worst(2) = %d, want the window of both stalled seconds", first)
	}

	var empty timeline
	if _, s := empty.worst(10, 100); s.Count != 0 {
		t.Fatalf("empty worst = %+v", s)
	}
	empty.add(time.Duration(maxTimelineBins)*time.Second, ms(1))
	if len(empty.perSecond()) != 0 {
		t.Fatal("a sample past the bound was kept")
	}
}

func TestRecorderTake(t *testing.T) {
	var r recorder
	r.add(time.Millisecond)
	r.add(2 * time.Millisecond)
	if got := r.take(); len(got) != 2 {
		t.Fatalf("take = %v", got)
	}
	if got := r.take(); len(got) != 0 {
		t.Fatalf("second take = %v, want nothing", got)
	}
}

func TestBackoff(t *testing.T) {
	var b backoff
	var got []time.Duration
	for range 8 {
		got = append(got, b.next())
	}
	want := []time.Duration{50, 100, 200, 400, 800, 1600, 2000, 2000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff = %v", got)
		}
	}
	b.reset()
	if d := b.next(); d != backoffMin {
		t.Fatalf("after reset: %v", d)
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"4096", 4096, true}, {"512MiB", 512 << 20, true}, {"1GiB", 1 << 30, true},
		{"1.5GiB", 3 << 29, true}, {"64KiB", 64 << 10, true}, {"", 0, false}, {"-1", 0, false}, {"1TB", 0, false},
	} {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestAttackCountersFailed(t *testing.T) {
	live, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended, end := context.WithCancel(context.Background())
	end()
	var c attackCounters
	for _, tt := range []struct {
		ctx context.Context
		err error
	}{
		{live, &refusedError{what: "connect", code: 0x97}},                // refused
		{live, fmt.Errorf("x: %w", &refusedError{what: "subscribe"})},     // refused
		{live, &httpError{status: 429}},                                   // refused
		{live, &httpError{status: 409}},                                   // refused
		{live, &httpError{status: 503}},                                   // error
		{live, io.EOF},                                                    // dropped
		{live, fmt.Errorf("write: %w", syscall.ECONNRESET)},               // dropped
		{live, errServerDisconnect},                                       // dropped
		{live, errors.New("dial: no route")},                              // error
		{ended, &refusedError{what: "publish"}},                           // the run's own end: not counted
		{ended, fmt.Errorf("read: %w", errors.New("closed by the tool"))}, // not counted
	} {
		c.failed(tt.ctx, tt.err)
	}
	if s := c.stat("x"); s.Refused != 4 || s.Dropped != 3 || s.Errors != 2 {
		t.Fatalf("counted %+v, want 4 refused, 3 dropped, 2 errors", s)
	}
}

func TestAttackNames(t *testing.T) {
	if err := checkAttacks(attackNames()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range attackNames() {
		if seen[n] {
			t.Fatalf("attacker %q listed twice", n)
		}
		seen[n] = true
	}
	if err := checkAttacks(nil); err == nil {
		t.Fatal("no attackers accepted")
	}
	if err := checkAttacks([]string{"stall", "alias", "stall"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("a repeated attacker: %v", err)
	}
}

func TestTableSkipsIsolationAndAbuse(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, r report) string {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := []string{
		write("a.json", report{Scenario: "direct", Target: "chatd", Params: map[string]any{"rate": 0.0}, Throughput: 100}),
		write("b.json", report{Scenario: "isolation", Target: "chatd", Isolation: &isolationResult{Ratio: 3}}),
		write("c.json", report{Scenario: "abuse", Target: "chatd", Abuse: &abuseResult{}}),
	}
	var out strings.Builder
	if err := printTable(&out, files); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "direct") || strings.Contains(out.String(), "isolation") || strings.Contains(out.String(), "abuse") {
		t.Fatalf("table:\n%s", out.String())
	}
}
