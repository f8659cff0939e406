package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape returns every sample on /metrics, keyed by name{labels}.
func scrape(t *testing.T, s *server) map[string]float64 {
	t.Helper()
	out, err := scrapeURL(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scrapeURL is scrape for callers that may hit a node that is down.
func scrapeURL(url string) (map[string]float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("/metrics: status %d: %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// TestMetricsMoveWithTraffic: /metrics shows the broker's and the
// pipeline's figures moving as messages flow.
func TestMetricsMoveWithTraffic(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	before := scrape(t, s)

	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a.subscribe(t, "users/"+alice.ID+"/#")
	b := dialV3(t, "tcp://"+s.addrs.MQTT, bob, "phone")
	b.subscribe(t, "users/"+bob.ID+"/inbox")
	const n = 10
	for i := 0; i < n; i++ {
		a.send(t, bob.ID, "m"+strconv.Itoa(i), "hello")
	}
	for i := 0; i < n; i++ {
		b.box.next(t, "bob inbox", nil)
	}
	if rc, _ := a.publish(t, "users/"+alice.ID+"/send", []byte("garbage")); rc != 0x99 {
		t.Fatalf("garbage send: reason 0x%02x", rc)
	}
	a.box.next(t, "error event", onTopic("users/"+alice.ID+"/events"))
	if rc, _ := a.publish(t, "users/"+bob.ID+"/send", envelope(bob.ID, "x", "x")); rc != 0x87 {
		t.Fatalf("foreign send: reason 0x%02x", rc)
	}
	if rc, _ := a.publish(t, "users/"+alice.ID+"/send", envelope("aaaaaaaaaaaaaaaaaaaa", "y", "x")); rc != 0x87 {
		t.Fatalf("send to unknown user: reason 0x%02x", rc)
	}
	if _, _, err := connectV5(tcpConn(t, s.addrs.MQTT), alice.ID, "wrong", alice.ID+"/x", nil); err == nil {
		t.Fatal("bad password accepted")
	}
	after := scrape(t, s)

	tests := []struct {
		metric string
		min    float64 // least increase expected
	}{
		{`mqchat_messages_sent_total{result="stored"}`, n},
		{`mqchat_deliveries_total`, 2 * n},
		{`mqchat_store_commit_seconds_count`, 1},
		{`mqchat_store_commit_batch_messages_sum`, n},
		{`mqchat_sends_rejected_total{reason="invalid_payload"}`, 1},
		{`mqchat_sends_rejected_total{reason="not_authorized"}`, 1},
		{`mqchat_sends_rejected_total{reason="unknown_recipient"}`, 1},
		{`mqchat_mqtt_connects_total{outcome="accepted"}`, 2},
		{`mqchat_mqtt_connects_total{outcome="bad_credentials"}`, 1},
		{`mqchat_broker_messages_received_total`, n + 3},
		{`mqchat_broker_messages_sent_total`, 2 * n},
		{`mqchat_broker_bytes_received_total`, 1},
		{`mqchat_broker_bytes_sent_total`, 1},
		{`mqchat_broker_clients_connected`, 2},
		{`mqchat_broker_subscriptions`, 2},
	}
	// Each refusal is counted once, whichever layer refused it.
	for _, reason := range []string{"invalid_payload", "not_authorized", "unknown_recipient"} {
		m := `mqchat_sends_rejected_total{reason="` + reason + `"}`
		if d := after[m] - before[m]; d != 1 {
			t.Errorf("%s moved by %v, want exactly 1", m, d)
		}
	}
	for _, tc := range tests {
		got, ok := after[tc.metric]
		if !ok {
			t.Errorf("%s missing from /metrics", tc.metric)
			continue
		}
		if d := got - before[tc.metric]; d < tc.min {
			t.Errorf("%s moved by %v, want at least %v", tc.metric, d, tc.min)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "mqchat_broker_inflight_messages", "mqchat_broker_retained_messages"} {
		if _, ok := after[name]; !ok {
			t.Errorf("%s missing from /metrics", name)
		}
	}
}
