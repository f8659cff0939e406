package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/config"
)

// fromAddr returns an HTTP client whose connections leave from the
// loopback address ip (any of 127.0.0.0/8 works on Linux): one client per
// "attacker address".
func fromAddr(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type loginAnswer struct {
	status     int
	code       string
	retryAfter int
}

func loginFrom(t *testing.T, c *http.Client, s *server, username, password string) loginAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": password})
	resp, err := c.Post(s.base+"/v1/auth/login", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Errorf("login: %v", err)
		return loginAnswer{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e apiError
	_ = json.Unmarshal(raw, &e)
	a := loginAnswer{status: resp.StatusCode, code: e.Error.Code}
	if v := resp.Header.Get("Retry-After"); v != "" {
		a.retryAfter, _ = strconv.Atoi(v)
	}
	return a
}

// TestLoginThrottledPerAccount: guesses at one username spread over eight
// source addresses, each well inside its per-IP allowance, still meet one
// per-account budget: 429 with Retry-After past limits.login_failures.
// Known and unknown usernames answer alike, the owner's refresh token keeps
// working meanwhile, and the lock ends by itself.
func TestLoginThrottledPerAccount(t *testing.T) {
	const free, addrs, perAddr = 5, 8, 4
	s := startServer(t, func(c *config.Config) {
		c.Limits.AuthRate, c.Limits.AuthBurst = 5, 20 // per IP: never reached below
		c.Limits.LoginFailures = free
		c.Limits.LoginBackoffMax = 2 * time.Second
	})
	alice := s.register(t, "alice")
	clients := make([]*http.Client, addrs)
	for i := range clients {
		clients[i] = fromAddr(t, fmt.Sprintf("127.0.0.%d", i+2))
	}
	flood := func(username string) (counts map[int]int) {
		var (
			mu sync.Mutex
			wg sync.WaitGroup
		)
		counts = map[int]int{}
		for _, c := range clients {
			for n := range perAddr {
				wg.Go(func() {
					a := loginFrom(t, c, s, username, fmt.Sprintf("guess %d", n))
					if a.status == http.StatusTooManyRequests && (a.code != "rate_limited" || a.retryAfter < 1) {
						t.Errorf("429 without rate_limited and Retry-After: %+v", a)
					}
					mu.Lock()
					counts[a.status]++
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		return counts
	}
	before := scrape(t, s)["mqchat_auth_login_throttled_total"]
	want := map[int]int{http.StatusUnauthorized: free, http.StatusTooManyRequests: addrs*perAddr - free}
	for _, name := range []string{"alice", "nobody-here"} {
		if got := flood(name); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%d guesses at %q from %d addresses: statuses %v, want %v", addrs*perAddr, name, addrs, got, want)
		}
	}
	if got := scrape(t, s)["mqchat_auth_login_throttled_total"] - before; got != float64(2*(addrs*perAddr-free)) {
		t.Fatalf("mqchat_auth_login_throttled_total rose by %v, want %d", got, 2*(addrs*perAddr-free))
	}

	// During the lock even the right password waits, from anywhere...
	if a := loginFrom(t, clients[0], s, "alice", "correct horse"); a.status != http.StatusTooManyRequests {
		t.Fatalf("correct password during the lock: %+v, want 429", a)
	}
	// ...but a signed-in device is not signed out.
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if st := s.call(t, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": alice.Refresh}, nil, &tok); st != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("refresh during the lock: %d", st)
	}
	// The lock ends within login_backoff_max of the last counted failure.
	start := time.Now()
	eventually(t, "login after the lock", func() error {
		if a := loginFrom(t, clients[1], s, "alice", "correct horse"); a.status != http.StatusOK {
			return fmt.Errorf("login: %+v", a)
		}
		return nil
	})
	if waited := time.Since(start); waited > 3*time.Second {
		t.Fatalf("locked for %v after the attack, want at most login_backoff_max (2s)", waited)
	}
	// A success resets the count: the free failures are free again.
	for i := range free {
		if a := loginFrom(t, clients[2], s, "alice", "wrong"); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d after a success: %+v, want 401", i, a)
		}
	}
}
