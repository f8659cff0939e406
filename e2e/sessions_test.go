package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// sessionTokens is what login, refresh and a password change answer.
type sessionTokens struct {
	UserID       string `json:"user_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
}

func (s *server) login(t *testing.T, name, password string) sessionTokens {
	t.Helper()
	var tok sessionTokens
	if st := s.call(t, "POST", "/v1/auth/login", "", map[string]string{"username": name, "password": password}, nil, &tok); st != http.StatusOK {
		t.Fatalf("login %s: status %d", name, st)
	}
	if tok.SessionID == "" {
		t.Fatalf("login %s: no session_id in %+v", name, tok)
	}
	return tok
}

func (s *server) refresh(t *testing.T, refreshToken string) (sessionTokens, int) {
	t.Helper()
	var tok sessionTokens
	st := s.call(t, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": refreshToken}, nil, &tok)
	return tok, st
}

// wantToken checks whether an access token is accepted on REST.
func (s *server) wantToken(t *testing.T, what, token string, want int) {
	t.Helper()
	var body errorBody
	if st := s.call(t, "GET", "/v1/me", token, nil, nil, &body); st != want {
		t.Fatalf("%s: GET /v1/me = %d %+v, want %d", what, st, body, want)
	}
	if want == http.StatusUnauthorized && body.Error.Code != "unauthenticated" {
		t.Fatalf("%s: error code %q", what, body.Error.Code)
	}
}

type errorBody struct {
	Error struct{ Code, Message string } `json:"error"`
}

// watched is an MQTT 5 connection that records the server's DISCONNECT.
type watched struct {
	uid  string
	c    *paho.Client
	disc chan *paho.Disconnect
}

func dialWatched(t *testing.T, s *server, uid, token, device string) *watched {
	t.Helper()
	w := &watched{uid: uid, disc: make(chan *paho.Disconnect, 1)}
	w.c = paho.NewClient(paho.ClientConfig{
		Conn:               tcpConn(t, s.addrs.MQTT),
		OnServerDisconnect: func(d *paho.Disconnect) { w.disc <- d },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ack, err := w.c.Connect(ctx, &paho.Connect{
		ClientID: uid + "/" + device, Username: uid, UsernameFlag: true, Password: []byte(token), PasswordFlag: true,
		KeepAlive: 30, CleanStart: true,
	})
	if err != nil {
		t.Fatalf("v5 connect %s: %v (connack %+v)", device, err, ack)
	}
	t.Cleanup(func() { _ = w.c.Disconnect(&paho.Disconnect{}) })
	return w
}

// closedWith waits for the server to end the connection with reason code.
func (w *watched) closedWith(t *testing.T, what string, code byte) {
	t.Helper()
	select {
	case d := <-w.disc:
		if d.ReasonCode != code {
			t.Fatalf("%s: DISCONNECT reason 0x%02x (%v), want 0x%02x", what, d.ReasonCode, d.Properties, code)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("%s: no DISCONNECT from the server", what)
	}
	select {
	case <-w.c.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("%s: connection still open after DISCONNECT", what)
	}
}

// open reports whether the connection is still up: a subscription answered.
func (w *watched) open() bool {
	select {
	case <-w.c.Done():
		return false
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := w.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "users/" + w.uid + "/inbox", QoS: 1}}})
	return err == nil
}

func v3Closed(t *testing.T, what string, c *v3) {
	t.Helper()
	eventually(t, what+": 3.1.1 connection closed", func() error {
		if c.c.IsConnectionOpen() {
			return fmt.Errorf("still open")
		}
		return nil
	})
}

// connectRefused checks that a CONNECT with token is refused as bad
// credentials (0x86).
func connectRefused(t *testing.T, s *server, uid, token, device string) {
	t.Helper()
	_, ack, err := connectV5(tcpConn(t, s.addrs.MQTT), uid, token, uid+"/"+device, nil)
	if err == nil || ack == nil || ack.ReasonCode != 0x86 {
		t.Fatalf("CONNECT with a revoked token: err %v, connack %+v; want 0x86", err, ack)
	}
}

const (
	reasonAdministrative = 0x98
	reasonMaxConnectTime = 0xA0
)

// A refresh token is good for one exchange: replaying a rotated one
// revokes its whole session, the thief's and the owner's newest tokens
// alike, and closes the session's MQTT connections.
func TestRefreshTokenReuseRevokesSession(t *testing.T) {
	s := startServer(t, nil)
	alice := s.register(t, "alice")
	other := s.login(t, "alice", "correct horse")
	m5 := dialWatched(t, s, alice.ID, alice.Token, "phone")
	m3 := dialV3(t, "tcp://"+s.addrs.MQTT, alice, "old-phone")
	otherConn := dialWatched(t, s, alice.ID, other.AccessToken, "laptop")

	fresh, st := s.refresh(t, alice.Refresh)
	if st != http.StatusOK || fresh.AccessToken == "" {
		t.Fatalf("first refresh: %d %+v", st, fresh)
	}
	s.wantToken(t, "fresh access token", fresh.AccessToken, http.StatusOK)
	if _, st := s.refresh(t, alice.Refresh); st != http.StatusUnauthorized {
		t.Fatalf("replayed refresh token: status %d, want 401", st)
	}
	s.wantToken(t, "access token of the revoked session", fresh.AccessToken, http.StatusUnauthorized)
	s.wantToken(t, "first access token of the revoked session", alice.Token, http.StatusUnauthorized)
	if _, st := s.refresh(t, fresh.RefreshToken); st != http.StatusUnauthorized {
		t.Fatalf("newest refresh token of the revoked session: status %d, want 401", st)
	}
	m5.closedWith(t, "MQTT 5 connection of the revoked session", reasonAdministrative)
	v3Closed(t, "revoked session", m3)
	connectRefused(t, s, alice.ID, fresh.AccessToken, "phone")
	wantMetrics(t, s, map[string]float64{
		`mqchat_auth_sessions_revoked_total{reason="refresh_reuse"}`:     1,
		`mqchat_mqtt_connections_closed_total{reason="session_revoked"}`: 2,
	})

	// Another login is another session and lives on.
	s.wantToken(t, "other session", other.AccessToken, http.StatusOK)
	if !otherConn.open() {
		t.Fatal("the other session's connection was closed")
	}
}

func TestLogoutEndsOnlyThisSession(t *testing.T) {
	s := startServer(t, nil)
	alice := s.register(t, "alice")
	var laptop sessionTokens
	if st := s.call(t, "POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "correct horse"},
		map[string]string{"User-Agent": "Chat/1.0 (laptop)"}, &laptop); st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}
	phoneConn := dialWatched(t, s, alice.ID, alice.Token, "phone")
	phone3 := dialV3(t, "tcp://"+s.addrs.MQTT, alice, "phone-v3")
	laptopConn := dialWatched(t, s, alice.ID, laptop.AccessToken, "laptop")
	laptop3 := dialV3(t, "tcp://"+s.addrs.MQTT, account{ID: alice.ID, Token: laptop.AccessToken}, "laptop-v3")

	var list struct {
		Sessions []struct {
			ID      string `json:"id"`
			Label   string `json:"label"`
			Current bool   `json:"current"`
		} `json:"sessions"`
	}
	if st := s.call(t, "GET", "/v1/sessions", laptop.AccessToken, nil, nil, &list); st != http.StatusOK || len(list.Sessions) != 2 {
		t.Fatalf("GET /v1/sessions = %d %+v, want 2 sessions", st, list)
	}
	phoneSession := ""
	for _, ss := range list.Sessions {
		if ss.Current != (ss.ID == laptop.SessionID) {
			t.Fatalf("session %+v: current flag wrong (laptop is %s)", ss, laptop.SessionID)
		}
		if !ss.Current {
			phoneSession = ss.ID
		} else if ss.Label != "Chat/1.0 (laptop)" {
			t.Fatalf("laptop session label = %q, want its User-Agent", ss.Label)
		}
	}

	if st := s.call(t, "POST", "/v1/auth/logout", alice.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("logout: %d", st)
	}
	s.wantToken(t, "logged-out access token", alice.Token, http.StatusUnauthorized)
	if _, st := s.refresh(t, alice.Refresh); st != http.StatusUnauthorized {
		t.Fatalf("refresh after logout: %d, want 401", st)
	}
	phoneConn.closedWith(t, "logged-out session's connection", reasonAdministrative)
	v3Closed(t, "logout", phone3)
	connectRefused(t, s, alice.ID, alice.Token, "phone")

	s.wantToken(t, "other session", laptop.AccessToken, http.StatusOK)
	if !laptopConn.open() || !laptop3.c.IsConnectionOpen() {
		t.Fatal("logout closed another session's connection")
	}
	var e errorBody
	if st := s.call(t, "DELETE", "/v1/sessions/"+phoneSession, laptop.AccessToken, nil, nil, &e); st != http.StatusNotFound || e.Error.Code != "not_found" {
		t.Fatalf("DELETE of a logged-out session: %d %+v, want 404 not_found", st, e)
	}
	for _, bad := range []string{"%00", "x", "%ff%fe", strings.Repeat("a", 300)} {
		if st := s.call(t, "DELETE", "/v1/sessions/"+bad, laptop.AccessToken, nil, nil, &e); st != http.StatusNotFound || e.Error.Code != "not_found" {
			t.Fatalf("DELETE /v1/sessions/%s: %d %+v, want 404 not_found", bad, st, e)
		}
	}
	// Another user's session is as unknown as a missing one.
	bob := s.register(t, "bob")
	bobTok := s.login(t, "bob", "correct horse")
	if st := s.call(t, "DELETE", "/v1/sessions/"+bobTok.SessionID, laptop.AccessToken, nil, nil, &e); st != http.StatusNotFound {
		t.Fatalf("DELETE of another user's session: %d, want 404", st)
	}
	s.wantToken(t, "bob after alice tried to revoke his session", bobTok.AccessToken, http.StatusOK)

	// Revoking one's other device from the list.
	tablet := s.login(t, "alice", "correct horse")
	tabletConn := dialWatched(t, s, alice.ID, tablet.AccessToken, "tablet")
	if st := s.call(t, "DELETE", "/v1/sessions/"+tablet.SessionID, laptop.AccessToken, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /v1/sessions/{tablet}: %d", st)
	}
	tabletConn.closedWith(t, "revoked tablet session", reasonAdministrative)
	s.wantToken(t, "revoked tablet", tablet.AccessToken, http.StatusUnauthorized)
	s.wantToken(t, "bob", bob.Token, http.StatusOK)
}

func TestLogoutAllClosesEveryConnection(t *testing.T) {
	s := startServer(t, nil)
	alice := s.register(t, "alice")
	bob := s.register(t, "bob")
	laptop := s.login(t, "alice", "correct horse")
	c5 := dialWatched(t, s, alice.ID, alice.Token, "phone")
	c3 := dialV3(t, "tcp://"+s.addrs.MQTT, account{ID: alice.ID, Token: laptop.AccessToken}, "laptop")
	bobConn := dialWatched(t, s, bob.ID, bob.Token, "phone")

	if st := s.call(t, "POST", "/v1/auth/logout-all", laptop.AccessToken, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("logout-all: %d", st)
	}
	c5.closedWith(t, "MQTT 5 connection", reasonAdministrative)
	v3Closed(t, "logout-all", c3)
	for _, tok := range []sessionTokens{{AccessToken: alice.Token, RefreshToken: alice.Refresh}, laptop} {
		s.wantToken(t, "after logout-all", tok.AccessToken, http.StatusUnauthorized)
		if _, st := s.refresh(t, tok.RefreshToken); st != http.StatusUnauthorized {
			t.Fatalf("refresh after logout-all: %d", st)
		}
	}
	connectRefused(t, s, alice.ID, laptop.AccessToken, "laptop")
	if !bobConn.open() {
		t.Fatal("alice's logout-all closed bob's connection")
	}
	// Logging in again works.
	again := s.login(t, "alice", "correct horse")
	s.wantToken(t, "new login", again.AccessToken, http.StatusOK)
}

func TestPasswordChangeRevokesOtherSessions(t *testing.T) {
	s := startServer(t, nil)
	alice := s.register(t, "alice")
	other := s.login(t, "alice", "correct horse")
	here := dialWatched(t, s, alice.ID, alice.Token, "phone")
	there := dialWatched(t, s, alice.ID, other.AccessToken, "laptop")
	there3 := dialV3(t, "tcp://"+s.addrs.MQTT, account{ID: alice.ID, Token: other.AccessToken}, "laptop-v3")
	here3 := dialV3(t, "tcp://"+s.addrs.MQTT, alice, "phone-v3")

	cases := []struct {
		name       string
		body       string
		status     int
		code       string
		revokesAll bool
	}{
		{"wrong old password", `{"old_password":"not it at all","new_password":"a much better one"}`, http.StatusForbidden, "not_authorized", false},
		{"new password too short", `{"old_password":"correct horse","new_password":"short"}`, http.StatusBadRequest, "invalid_payload", false},
		{"unknown field", `{"old_password":"correct horse","new_password":"a much better one","x":1}`, http.StatusBadRequest, "invalid_payload", false},
	}
	for _, tc := range cases {
		var e errorBody
		if st := s.call(t, "POST", "/v1/me/password", alice.Token, tc.body, nil, &e); st != tc.status || e.Error.Code != tc.code {
			t.Fatalf("%s: %d %+v, want %d %s", tc.name, st, e, tc.status, tc.code)
		}
		s.wantToken(t, tc.name+": other session kept", other.AccessToken, http.StatusOK)
	}

	var fresh sessionTokens
	if st := s.call(t, "POST", "/v1/me/password", alice.Token, map[string]string{"old_password": "correct horse", "new_password": "a much better one"}, nil, &fresh); st != http.StatusOK {
		t.Fatalf("password change: %d", st)
	}
	there.closedWith(t, "other session's connection", reasonAdministrative)
	v3Closed(t, "password change", there3)
	s.wantToken(t, "other session", other.AccessToken, http.StatusUnauthorized)
	s.wantToken(t, "fresh token", fresh.AccessToken, http.StatusOK)
	if !here.open() || !here3.c.IsConnectionOpen() {
		t.Fatal("the password change closed its own session's connection")
	}
	if _, st := s.refresh(t, fresh.RefreshToken); st != http.StatusOK {
		t.Fatalf("refresh with the fresh refresh token: %d", st)
	}
	var e errorBody
	if st := s.call(t, "POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "correct horse"}, nil, &e); st != http.StatusUnauthorized {
		t.Fatalf("login with the old password: %d", st)
	}
	s.login(t, "alice", "a much better one")
}

// issueToken asks the admin socket for tokens with a short access TTL.
func issueToken(t *testing.T, s *server, username string, ttl time.Duration) sessionTokens {
	t.Helper()
	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", s.addrs.AdminSocket)
	}}}
	body, _ := json.Marshal(map[string]any{"username": username, "ttl": ttl})
	res, err := hc.Post("http://admin/tokens", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("admin socket: %v", err)
	}
	defer res.Body.Close()
	var tok sessionTokens
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("admin /tokens: %d %v", res.StatusCode, err)
	}
	return tok
}

// A connection lives no longer than the access token it connected with.
func TestConnectionClosedWhenTokenExpires(t *testing.T) {
	s := startServer(t, nil)
	alice := s.register(t, "alice")
	short := issueToken(t, s, "alice", 2*time.Second)
	c5 := dialWatched(t, s, alice.ID, short.AccessToken, "phone")
	c3 := dialV3(t, "tcp://"+s.addrs.MQTT, account{ID: alice.ID, Token: short.AccessToken}, "old-phone")
	long := dialWatched(t, s, alice.ID, alice.Token, "laptop")

	c5.closedWith(t, "MQTT 5 connection at token expiry", reasonMaxConnectTime)
	v3Closed(t, "token expiry", c3)
	s.wantToken(t, "expired token", short.AccessToken, http.StatusUnauthorized)
	wantMetrics(t, s, map[string]float64{`mqchat_mqtt_connections_closed_total{reason="token_expired"}`: 2})
	if !long.open() {
		t.Fatal("a connection with a valid token was closed")
	}
	// The documented way on: refresh and reconnect.
	fresh, st := s.refresh(t, short.RefreshToken)
	if st != http.StatusOK {
		t.Fatalf("refresh: %d", st)
	}
	dialWatched(t, s, alice.ID, fresh.AccessToken, "phone")
}

func wantMetrics(t *testing.T, s *server, want map[string]float64) {
	t.Helper()
	eventually(t, "metrics", func() error {
		got := scrape(t, s)
		for name, v := range want {
			if got[name] != v {
				return fmt.Errorf("%s = %v, want %v", name, got[name], v)
			}
		}
		return nil
	})
}

// Concurrent refreshes with one refresh token: at most one gets tokens,
// and since the others presented a used-up token, the session ends.
func TestConcurrentRefreshesWithOneToken(t *testing.T) {
	s := startServer(t, nil)
	alice := s.register(t, "alice")
	const n = 8
	type result struct {
		tok    sessionTokens
		status int
	}
	results := make(chan result, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			var tok sessionTokens
			// Not rawHTTP: t.Fatal must not be called off the test goroutine.
			res, err := http.Post(s.base+"/v1/auth/refresh", "application/json", strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, alice.Refresh)))
			if err != nil {
				results <- result{status: -1}
				return
			}
			defer res.Body.Close()
			if res.StatusCode == http.StatusOK {
				_ = json.NewDecoder(res.Body).Decode(&tok)
			}
			results <- result{tok, res.StatusCode}
		}()
	}
	close(start)
	var won []sessionTokens
	for range n {
		r := <-results
		switch r.status {
		case http.StatusOK:
			won = append(won, r.tok)
		case http.StatusUnauthorized:
		default:
			t.Fatalf("refresh: status %d", r.status)
		}
	}
	if len(won) > 1 {
		t.Fatalf("%d concurrent refreshes with one token succeeded", len(won))
	}
	for _, tok := range won {
		s.wantToken(t, "winner of a refresh race", tok.AccessToken, http.StatusUnauthorized)
	}
	s.wantToken(t, "session after a refresh race", alice.Token, http.StatusUnauthorized)
}
