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

	// One more counted failure once the first delay is over arms the next,
	// twice as long (2s)...
	eventually(t, "a guess checked after the first delay", func() error {
		if a := loginFrom(t, clients[3], s, "alice", "one more guess"); a.status != http.StatusUnauthorized {
			return fmt.Errorf("guess: %+v", a)
		}
		return nil
	})
	// ...during which even the right password waits, from anywhere...
	if a := loginFrom(t, clients[0], s, "alice", "correct horse"); a.status != http.StatusTooManyRequests || a.retryAfter < 1 {
		t.Fatalf("correct password during the lock: %+v, want 429 with Retry-After", a)
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
	if waited := time.Since(start); waited > 4*time.Second {
		t.Fatalf("locked for %v after the last guess, want about login_backoff_max (2s)", waited)
	}
	// A success resets the count: the free failures are free again.
	for i := range free {
		if a := loginFrom(t, clients[2], s, "alice", "wrong"); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d after a success: %+v, want 401", i, a)
		}
	}
}

type userView struct {
	UserID    string  `json:"user_id"`
	Username  string  `json:"username"`
	Deleted   bool    `json:"deleted"`
	DeletedAt *string `json:"deleted_at"`
}

// TestDeleteAccount: DELETE /v1/me with the password ends the account at
// once (tokens, refresh, login, live MQTT connections of both protocol
// versions), drops its devices and memberships (its group goes to the
// longest-standing admin, the group it was alone in goes), keeps its
// messages under its id, answers "deleted" for that id, refuses new
// messages to it, and keeps its username reserved.
func TestDeleteAccount(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol, dave := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"), s.register(t, "dave")
	ctx := t.Context()

	var shared, solo groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "shared", "members": []string{bob.ID, carol.ID, dave.ID}}, nil, &shared); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	// carol becomes admin after bob joined: she inherits, bob (a plain
	// member since earlier) does not.
	if st := s.call(t, "PATCH", "/v1/groups/"+shared.GroupID+"/members/"+carol.ID, alice.Token, map[string]string{"role": "admin"}, nil, nil); st != http.StatusOK {
		t.Fatalf("make carol admin: %d", st)
	}
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "solo", "members": []string{}}, nil, &solo); st != http.StatusCreated {
		t.Fatalf("create solo group: %d", st)
	}
	if st := s.call(t, "PUT", "/v1/devices/phone", alice.Token, map[string]string{"platform": "android", "push_token": "alice-fcm-token"}, nil, nil); st != http.StatusOK {
		t.Fatalf("register device: %d", st)
	}

	bPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/#")
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	aPhone.subscribe(t, "users/"+alice.ID+"/#")
	aWeb := dialV3(t, "tcp://"+s.addrs.MQTT, alice, "web")
	aPhone.send(t, bob.ID, "before-delete", "last words")
	if m := bPhone.box.next(t, "alice's message", onTopic("users/"+bob.ID+"/inbox")).inbox(t); m.From != alice.ID {
		t.Fatalf("inbox from %q, want alice", m.From)
	}

	// The password is required and checked.
	var e apiError
	if st := s.call(t, "DELETE", "/v1/me", alice.Token, map[string]string{}, nil, &e); st != http.StatusBadRequest || e.Error.Code != "invalid_payload" {
		t.Fatalf("DELETE /v1/me without password: %d %+v", st, e)
	}
	if st := s.call(t, "DELETE", "/v1/me", alice.Token, map[string]string{"password": "not her password"}, nil, &e); st != http.StatusForbidden || e.Error.Code != "not_authorized" {
		t.Fatalf("DELETE /v1/me with a wrong password: %d %+v", st, e)
	}
	if st := s.call(t, "GET", "/v1/me", alice.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("a refused delete changed something: GET /v1/me %d", st)
	}
	if st := s.call(t, "DELETE", "/v1/me", alice.Token, map[string]string{"password": "correct horse"}, nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /v1/me: %d, want 204", st)
	}

	// Live connections are closed, whatever the protocol version.
	select {
	case <-aPhone.c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("alice's MQTT 5 connection still open after the deletion")
	}
	eventually(t, "alice's MQTT 3.1.1 connection closed", func() error {
		if aWeb.c.IsConnectionOpen() {
			return fmt.Errorf("still open")
		}
		return nil
	})
	// Every way back in is shut.
	if st := s.call(t, "GET", "/v1/me", alice.Token, nil, nil, &e); st != http.StatusUnauthorized {
		t.Fatalf("old access token: %d, want 401", st)
	}
	if st := s.call(t, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": alice.Refresh}, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("old refresh token: %d, want 401", st)
	}
	if st := s.call(t, "POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "correct horse"}, nil, &e); st != http.StatusUnauthorized || e.Error.Code != "unauthenticated" {
		t.Fatalf("login: %d %+v, want 401 unauthenticated", st, e)
	}
	if _, ack, err := connectV5(tcpConn(t, s.addrs.MQTT), alice.ID, alice.Token, alice.ID+"/again", nil); err == nil || ack == nil || ack.ReasonCode == 0 {
		t.Fatalf("CONNECT with the old token: %v (connack %+v), want a refusal", err, ack)
	}
	// The username stays reserved.
	if st := s.call(t, "POST", "/v1/auth/register", "", map[string]string{"username": "alice", "password": "new owner pw"}, nil, &e); st != http.StatusConflict {
		t.Fatalf("registering a deleted user's name: %d, want 409", st)
	}

	// History keeps the message, attributed to the deleted id, and the id
	// answers "deleted" without a name.
	page := s.history(t, bob, directChat(alice.ID, bob.ID), "")
	if len(page.Messages) != 1 || page.Messages[0].From != alice.ID || string(page.Messages[0].Body) != `"last words"` {
		t.Fatalf("bob's history with alice: %+v", page.Messages)
	}
	var uv userView
	if st := s.call(t, "GET", "/v1/users/"+alice.ID, bob.Token, nil, nil, &uv); st != http.StatusOK || !uv.Deleted || uv.Username != "" || uv.DeletedAt == nil || uv.UserID != alice.ID {
		t.Fatalf("GET /v1/users/{alice}: %d %+v, want deleted without a name", st, uv)
	}
	if st := s.call(t, "GET", "/v1/users/"+carol.ID, bob.Token, nil, nil, &uv); st != http.StatusOK || uv.Deleted || uv.Username != "carol" {
		t.Fatalf("GET /v1/users/{carol} by a group mate: %d %+v", st, uv)
	}
	// New messages to the deleted account are refused like to nobody.
	status := s.call(t, "POST", "/v1/chats/"+directChat(alice.ID, bob.ID)+"/messages", bob.Token,
		map[string]any{"type": "text", "body": "are you there?"}, map[string]string{"Idempotency-Key": "after-delete"}, &e)
	if status != http.StatusNotFound || e.Error.Code != "unknown_recipient" {
		t.Fatalf("send to the deleted account: %d %+v, want 404 unknown_recipient", status, e)
	}

	// Memberships: the shared group went to carol (the admin) and goes on
	// without alice; the group she was alone in is gone.
	var g groupView
	if st := s.call(t, "GET", "/v1/groups/"+shared.GroupID, bob.Token, nil, nil, &g); st != http.StatusOK {
		t.Fatalf("GET shared group: %d", st)
	}
	roles := map[string]string{}
	for _, m := range g.Members {
		roles[m.UserID] = m.Role
	}
	if want := map[string]string{bob.ID: "member", carol.ID: "owner", dave.ID: "member"}; fmt.Sprint(roles) != fmt.Sprint(want) {
		t.Fatalf("members after the deletion: %v, want %v", roles, want)
	}
	bPhone.box.next(t, "member_left system message", onSystem("member_left"))
	if _, err := s.app.Store().Group(ctx, solo.GroupID); err == nil {
		t.Fatal("the group alice was alone in still exists")
	}
	if ms, err := s.app.Store().GroupsOf(ctx, alice.ID, "", 10); err != nil || len(ms) != 0 {
		t.Fatalf("alice's memberships after deletion: %v, %v", ms, err)
	}
	if ds, err := s.app.Store().Devices(ctx, alice.ID); err != nil || len(ds) != 0 {
		t.Fatalf("alice's devices after deletion: %v, %v", ds, err)
	}
	// The group goes on: its new owner can run it.
	if st := s.call(t, "PATCH", "/v1/groups/"+shared.GroupID, carol.Token, map[string]string{"name": "still here"}, nil, nil); st != http.StatusOK {
		t.Fatalf("rename by the new owner: %d", st)
	}
}

// TestDisableAndDeleteThroughCLI: `chatd user list|disable|enable|delete`
// reach the running node through its admin socket. Disabling closes the
// user's live connection at once and refuses login, refresh, tokens and
// CONNECT; enabling lets the same credentials in again; deleting shows in
// the list. A mistyped subcommand fails instead of printing help.
func TestDisableAndDeleteThroughCLI(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	dd := "--data_dir=" + s.cfg.DataDir
	cli := func(args ...string) cliResult {
		t.Helper()
		return runChatd(t, nil, append(args, dd)...)
	}
	type status struct {
		UserID, Username, State string
		DeletedAt               *string `json:"deleted_at"`
	}
	list := func() map[string]status {
		t.Helper()
		r := cli("user", "list", "--format", "json")
		var all []struct {
			UserID    string  `json:"user_id"`
			Username  string  `json:"username"`
			State     string  `json:"state"`
			DeletedAt *string `json:"deleted_at"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &all) != nil {
			t.Fatalf("user list: %v", r)
		}
		out := map[string]status{}
		for _, u := range all {
			out[u.Username] = status{u.UserID, u.Username, u.State, u.DeletedAt}
		}
		return out
	}
	if got := list(); len(got) != 2 || got["alice"].UserID != alice.ID || got["alice"].State != "active" || got["bob"].State != "active" {
		t.Fatalf("user list: %+v", got)
	}
	if r := cli("user", "list"); r.code != 0 || !strings.Contains(r.stdout, "USER_ID") || !strings.Contains(r.stdout, alice.ID) {
		t.Fatalf("user list (table): %v", r)
	}

	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	if r := cli("user", "disable", "alice"); r.code != 0 || !strings.Contains(r.stdout, `"disabled"`) {
		t.Fatalf("user disable alice: %v", r)
	}
	select {
	case <-aPhone.c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("a disabled user's connection stayed open")
	}
	var e apiError
	if st := s.call(t, "GET", "/v1/me", alice.Token, nil, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("disabled: GET /v1/me %d, want 401", st)
	}
	if st := s.call(t, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": alice.Refresh}, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("disabled: refresh %d, want 401", st)
	}
	if st := s.call(t, "POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "correct horse"}, nil, &e); st != http.StatusUnauthorized || e.Error.Code != "unauthenticated" {
		t.Fatalf("disabled: login %d %+v, want 401 unauthenticated", st, e)
	}
	if _, ack, err := connectV5(tcpConn(t, s.addrs.MQTT), alice.ID, alice.Token, alice.ID+"/tablet", nil); err == nil || ack == nil || ack.ReasonCode == 0 {
		t.Fatalf("disabled: CONNECT %v (connack %+v), want a refusal", err, ack)
	}
	if r := cli("user", "token", "alice"); r.code == 0 {
		t.Fatalf("disabled: user token succeeded: %v", r)
	}
	// bob is untouched.
	if st := s.call(t, "GET", "/v1/me", bob.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("bob after alice was disabled: %d", st)
	}
	if got := list(); got["alice"].State != "disabled" || got["bob"].State != "active" {
		t.Fatalf("user list after disable: %+v", got)
	}

	// Enabled again (by id this time): the password works again, but the
	// sessions the disabling ended stay ended.
	if r := cli("user", "enable", alice.ID); r.code != 0 || !strings.Contains(r.stdout, `"active"`) {
		t.Fatalf("user enable: %v", r)
	}
	if st := s.call(t, "GET", "/v1/me", alice.Token, nil, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("enabled: GET /v1/me with a token of an ended session %d, want 401", st)
	}
	var fresh struct {
		AccessToken string `json:"access_token"`
	}
	if st := s.call(t, "POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "correct horse"}, nil, &fresh); st != http.StatusOK {
		t.Fatalf("enabled: login %d", st)
	}
	alice.Token = fresh.AccessToken
	if st := s.call(t, "GET", "/v1/me", alice.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("enabled: GET /v1/me with a fresh token %d, want 200", st)
	}
	dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "tablet")

	// Deletion needs --yes, then shows in the list; unknown users fail.
	if r := cli("user", "delete", "bob"); r.code == 0 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("user delete without --yes: %v", r)
	}
	if r := cli("user", "delete", "bob", "--yes"); r.code != 0 || !strings.Contains(r.stdout, `"deleted"`) {
		t.Fatalf("user delete bob: %v", r)
	}
	if st := s.call(t, "GET", "/v1/me", bob.Token, nil, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("deleted: GET /v1/me %d, want 401", st)
	}
	if got := list(); got["bob"].State != "deleted" || got["bob"].DeletedAt == nil || got["alice"].State != "active" {
		t.Fatalf("user list after delete: %+v", got)
	}
	m := scrape(t, s)
	for op, want := range map[string]float64{"disabled": 1, "enabled": 1, "deleted": 1} {
		if got := m[`mqchat_accounts_changes_total{op="`+op+`"}`]; got != want {
			t.Errorf("mqchat_accounts_changes_total{op=%q} = %v, want %v", op, got, want)
		}
	}
	for _, args := range [][]string{
		{"user", "disable", "nobody"},
		{"user", "enable", "bob"}, // deleted: there is nothing to enable
		{"user", "bogus"},
		{"user"},
	} {
		if r := cli(args...); r.code == 0 || r.stdout != "" {
			t.Fatalf("%v: want a failure with nothing on stdout: %v", args, r)
		}
	}
}
