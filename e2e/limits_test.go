package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/config"
)

// TestSendRateLimit: past a user's send burst, sends are refused with 0x97
// (v5), an error event and HTTP 429, nothing is stored, other users are not
// affected, and the connection stays usable.
func TestSendRateLimit(t *testing.T) {
	const burst = 5
	s := startServer(t, func(c *config.Config) {
		c.Limits.SendRate = 1
		c.Limits.SendBurst = burst
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a.subscribe(t, "users/"+alice.ID+"/events")
	b := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")

	for i := 0; i < burst; i++ {
		a.send(t, bob.ID, fmt.Sprintf("ok%d", i), "x")
	}
	rc, err := a.publish(t, "users/"+alice.ID+"/send", envelope(bob.ID, "over", "x"))
	if rc != 0x97 || err == nil {
		t.Fatalf("send over the limit: reason 0x%02x (%v), want 0x97", rc, err)
	}
	if ev := a.box.next(t, "error event", onEvent(alice.ID, "error")).event(t); ev.Code != "quota_exceeded" || ev.ReasonCode != 0x97 {
		t.Fatalf("error event %+v", ev)
	}
	chat := directChat(alice.ID, bob.ID)
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/messages", alice.Token, map[string]any{"body": "x"}, map[string]string{"Idempotency-Key": "http-over"}, &e); st != http.StatusTooManyRequests || e.Error.Code != "quota_exceeded" {
		t.Fatalf("HTTP send over the limit: %d %+v", st, e)
	}
	// Bob has his own bucket.
	b.send(t, alice.ID, "bob-ok", "x")
	if got := len(s.history(t, alice, chat, "?limit=200").Messages); got != burst+1 {
		t.Fatalf("history holds %d messages, want %d", got, burst+1)
	}
	// The bucket refills: within a few seconds alice may send again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rc, _ := a.publish(t, "users/"+alice.ID+"/send", envelope(bob.ID, "later", "x"))
		if rc == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after refill time: 0x%02x", rc)
		}
		a.box.next(t, "error event", onEvent(alice.ID, "error"))
		time.Sleep(200 * time.Millisecond) // waiting for the bucket's refill is the point here
	}
}

// TestAuthRateLimit: /v1/auth/* answers 429 past the per-IP burst.
func TestAuthRateLimit(t *testing.T) {
	const burst = 3
	s := startServer(t, func(c *config.Config) {
		c.Limits.AuthRate = 1
		c.Limits.AuthBurst = burst
	})
	creds := map[string]string{"username": "nobody", "password": "wrong password"}
	for i := 0; i < burst; i++ {
		if st := s.call(t, "POST", "/v1/auth/login", "", creds, nil, nil); st != http.StatusUnauthorized {
			t.Fatalf("login %d: status %d, want 401", i, st)
		}
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if st := s.call(t, "POST", "/v1/auth/login", "", creds, nil, &e); st != http.StatusTooManyRequests || e.Error.Code != "rate_limited" {
		t.Fatalf("login over the limit: %d %+v", st, e)
	}
	// A spoofed X-Forwarded-For does not buy a fresh bucket.
	if st := s.call(t, "POST", "/v1/auth/login", "", creds, map[string]string{"X-Forwarded-For": "203.0.113.9"}, nil); st != http.StatusTooManyRequests {
		t.Fatalf("login with spoofed X-Forwarded-For: %d, want 429", st)
	}
	// Other endpoints are not limited by it.
	if st := s.call(t, "GET", "/healthz", "", nil, nil, nil); st != http.StatusOK {
		t.Fatalf("healthz: %d", st)
	}
}

// TestKeepAliveCap: a client asking for no keep-alive, or for more than
// mqtt.keepalive_max, is given the cap in CONNACK (MQTT 5 server keep-alive).
func TestKeepAliveCap(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MQTT.KeepAliveMax = 60 * time.Second })
	alice := s.register(t, "alice")
	tests := []struct {
		asked uint16
		want  uint16 // 0 = no server keep-alive in CONNACK
	}{
		{0, 60},
		{600, 60},
		{30, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.asked), func(t *testing.T) {
			ack := connectWithKeepAlive(t, s, alice, tc.asked)
			var got uint16
			if ack.Properties != nil && ack.Properties.ServerKeepAlive != nil {
				got = *ack.Properties.ServerKeepAlive
			}
			if got != tc.want {
				t.Fatalf("keep-alive %d: server keep-alive %d, want %d", tc.asked, got, tc.want)
			}
		})
	}
}
