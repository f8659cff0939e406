package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseStormArgs(t *testing.T) {
	tests := []argCase{
		{"defaults", "presence-storm", "", func(o options) bool {
			s := o.Storm
			return s.Watchers == 200 && s.Groups == 1000 && s.Flappers == 2 && s.Duration == 20*time.Second && s.Baseline == 5*time.Second
		}},
		{"sized", "presence-storm --watchers 50 --groups 300 --flappers 4 --duration 1m --baseline 0s", "", func(o options) bool {
			s := o.Storm
			return s.Watchers == 50 && s.Groups == 300 && s.Flappers == 4 && s.Duration == time.Minute && s.Baseline == 0
		}},
		{"watchers bounded", "presence-storm --watchers 0", "--watchers", nil},
		{"groups bounded", "presence-storm --groups 100001", "--groups", nil},
		{"flappers bounded", "presence-storm --flappers 65", "--flappers", nil},
		{"duration bounded", "presence-storm --duration 11m", "--duration", nil},
		{"loopback only", "presence-storm --http 10.1.1.1:8080", "not a loopback", nil},
		{"other scenarios ignore the storm flags", "direct --watchers 0", "", func(o options) bool { return o.Scenario == "direct" }},
	}
	runArgCases(t, tests)
}

func TestStormReportPrint(t *testing.T) {
	r := report{Scenario: "presence-storm", Target: "chatd", ElapsedSec: 20, Storm: &stormReport{
		Watchers: 200, Groups: 1000, Flaps: 300, PresenceDelivered: 8000,
		Baseline: probes{Connect: stats{Count: 10, P50: 1, P99: 2}, Delivery: stats{Count: 10, P50: 3, P99: 4}},
		Storm:    probes{Connect: stats{Count: 9, P50: 5, P99: 6}, Delivery: stats{Count: 9, P50: 7, P99: 8}, Errors: 1},
	}}
	var b bytes.Buffer
	r.print(&b)
	out := b.String()
	for _, want := range []string{"300 flaps (600 presence changes)", "8000 presence messages to 200 watchers of a user in 1000 groups",
		"baseline     connect→SUBACK p50 1.00ms", "storm        connect→SUBACK p50 5.00ms", "1:1 delivery   p50 7.00ms", "errors         1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
