package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	paho3packets "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/ids"
)

// apiError is the one error shape every REST endpoint answers with.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// httpResult is a raw REST response.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

// rawHTTP makes a REST request and returns the raw response, for checks the
// harness's call cannot make (headers, exact bodies).
func rawHTTP(t *testing.T, s *server, method, path string, header map[string]string, body string) httpResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: raw}
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// wantAPIError asserts r is a JSON error with the given status and code and
// a non-empty message.
func (r httpResult) wantAPIError(t *testing.T, status int, code string) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("status %d, body %q is not a JSON error: %v", r.status, r.body, err)
	}
	if r.status != status || e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("got status %d body %s, want %d with code %q and a message", r.status, r.body, status, code)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
	return e
}

// wantJSON asserts the status and decodes the body into out.
func (r httpResult) wantJSON(t *testing.T, status int, out any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d body %s, want %d", r.status, r.body, status)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

type tokenPair struct {
	UserID       string `json:"user_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// wantTokens asserts a 2xx token response with every field set.
func (r httpResult) wantTokens(t *testing.T, status int) tokenPair {
	t.Helper()
	var fields map[string]json.RawMessage
	r.wantJSON(t, status, &fields)
	for _, k := range []string{"user_id", "access_token", "refresh_token", "expires_in"} {
		if _, ok := fields[k]; !ok {
			t.Fatalf("token response %s lacks %q", r.body, k)
		}
	}
	var tok tokenPair
	r.wantJSON(t, status, &tok)
	if !ids.ValidUserID(tok.UserID) || tok.AccessToken == "" || tok.RefreshToken == "" || tok.ExpiresIn <= 0 {
		t.Fatalf("token response %s is incomplete", r.body)
	}
	return tok
}

func credentialsJSON(username, password string) string {
	raw, _ := json.Marshal(map[string]string{"username": username, "password": password})
	return string(raw)
}

func TestRESTAccountsAndTokens(t *testing.T) {
	s := startServer(t, nil)
	const password = "correct horse"

	// Register: 201, the username is normalised, the tokens work.
	reg := rawHTTP(t, s, "POST", "/v1/auth/register", nil, credentialsJSON(" Alice ", password))
	alice := reg.wantTokens(t, http.StatusCreated)
	if want := int64(s.cfg.Auth.AccessTTL / time.Second); alice.ExpiresIn != want {
		t.Fatalf("expires_in = %d, want %d", alice.ExpiresIn, want)
	}
	var me struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
	}
	rawHTTP(t, s, "GET", "/v1/me", bearer(alice.AccessToken), "").wantJSON(t, http.StatusOK, &me)
	if me.UserID != alice.UserID || me.Username != "alice" {
		t.Fatalf("GET /v1/me = %+v, want user %s named alice", me, alice.UserID)
	}

	t.Run("duplicate username", func(t *testing.T) {
		for _, name := range []string{"alice", "ALICE", " alice "} {
			rawHTTP(t, s, "POST", "/v1/auth/register", nil, credentialsJSON(name, "another password")).
				wantAPIError(t, http.StatusConflict, "conflict")
		}
	})

	t.Run("bad bodies", func(t *testing.T) {
		tests := []struct {
			name, path, body, code string
		}{
			{"register not JSON", "/v1/auth/register", "hello", "invalid_payload"},
			{"register truncated JSON", "/v1/auth/register", `{"username":"carol"`, "invalid_payload"},
			{"register unknown field", "/v1/auth/register", `{"username":"carol","password":"correct horse","admin":true}`, "invalid_payload"},
			{"register wrong type", "/v1/auth/register", `{"username":1,"password":"correct horse"}`, "invalid_payload"},
			{"register empty body", "/v1/auth/register", "", "invalid_payload"},
			{"register empty object", "/v1/auth/register", `{}`, "invalid_payload"},
			{"register short password", "/v1/auth/register", credentialsJSON("carol", "short"), "invalid_payload"},
			{"register long password", "/v1/auth/register", credentialsJSON("carol", strings.Repeat("p", 73)), "invalid_payload"},
			{"register bad username chars", "/v1/auth/register", credentialsJSON("car ol!", password), "invalid_payload"},
			{"register short username", "/v1/auth/register", credentialsJSON("cc", password), "invalid_payload"},
			{"login not JSON", "/v1/auth/login", "hello", "invalid_payload"},
			{"login unknown field", "/v1/auth/login", `{"username":"alice","password":"correct horse","otp":1}`, "invalid_payload"},
			{"login empty body", "/v1/auth/login", "", "invalid_payload"},
			{"refresh not JSON", "/v1/auth/refresh", "hello", "invalid_payload"},
			{"refresh empty body", "/v1/auth/refresh", "", "invalid_payload"},
			{"refresh unknown field", "/v1/auth/refresh", `{"refresh_token":"x","access_token":"y"}`, "invalid_payload"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				rawHTTP(t, s, "POST", tc.path, nil, tc.body).wantAPIError(t, http.StatusBadRequest, tc.code)
			})
		}
		// None of the refused registrations created carol.
		rawHTTP(t, s, "POST", "/v1/auth/login", nil, credentialsJSON("carol", password)).
			wantAPIError(t, http.StatusUnauthorized, "unauthenticated")
	})

	t.Run("login", func(t *testing.T) {
		for _, name := range []string{"alice", " ALICE "} {
			tok := rawHTTP(t, s, "POST", "/v1/auth/login", nil, credentialsJSON(name, password)).wantTokens(t, http.StatusOK)
			if tok.UserID != alice.UserID {
				t.Fatalf("login %q: user_id %s, want %s", name, tok.UserID, alice.UserID)
			}
			if st := rawHTTP(t, s, "GET", "/v1/me", bearer(tok.AccessToken), ""); st.status != http.StatusOK {
				t.Fatalf("GET /v1/me with the login token: %d %s", st.status, st.body)
			}
		}
		refused := []struct{ name, username, password string }{
			{"wrong password", "alice", "wrong password"},
			{"unknown user", "mallory", password},
			{"invalid username", "no way!", password},
			{"empty credentials", "", ""},
		}
		var messages []string
		for _, tc := range refused {
			t.Run(tc.name, func(t *testing.T) {
				e := rawHTTP(t, s, "POST", "/v1/auth/login", nil, credentialsJSON(tc.username, tc.password)).
					wantAPIError(t, http.StatusUnauthorized, "unauthenticated")
				messages = append(messages, e.Error.Message)
			})
		}
		for _, m := range messages[1:] {
			if m != messages[0] {
				t.Fatalf("login refusals differ (%q vs %q): they must not reveal which part was wrong", messages[0], m)
			}
		}
	})

	t.Run("refresh", func(t *testing.T) {
		body, _ := json.Marshal(map[string]string{"refresh_token": alice.RefreshToken})
		fresh := rawHTTP(t, s, "POST", "/v1/auth/refresh", nil, string(body)).wantTokens(t, http.StatusOK)
		if fresh.UserID != alice.UserID || fresh.AccessToken == alice.AccessToken || fresh.RefreshToken == alice.RefreshToken {
			t.Fatalf("refresh returned %+v for %s", fresh, alice.UserID)
		}
		var me struct {
			UserID   string `json:"user_id"`
			Username string `json:"username"`
		}
		rawHTTP(t, s, "GET", "/v1/me", bearer(fresh.AccessToken), "").wantJSON(t, http.StatusOK, &me)
		if me.UserID != alice.UserID || me.Username != "alice" {
			t.Fatalf("GET /v1/me with the refreshed token = %+v", me)
		}
		// The refreshed refresh token refreshes again.
		body, _ = json.Marshal(map[string]string{"refresh_token": fresh.RefreshToken})
		rawHTTP(t, s, "POST", "/v1/auth/refresh", nil, string(body)).wantTokens(t, http.StatusOK)

		for _, bad := range []struct{ name, token string }{
			{"access token", alice.AccessToken},
			{"garbage", "garbage"},
		} {
			body, _ := json.Marshal(map[string]string{"refresh_token": bad.token})
			rawHTTP(t, s, "POST", "/v1/auth/refresh", nil, string(body)).wantAPIError(t, http.StatusUnauthorized, "unauthenticated")
		}
	})

	t.Run("me without a valid token", func(t *testing.T) {
		tests := []struct {
			name   string
			header map[string]string
			code   string
		}{
			{"no header", nil, "unauthenticated"},
			{"empty bearer", map[string]string{"Authorization": "Bearer "}, "unauthenticated"},
			{"basic auth", map[string]string{"Authorization": "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ=="}, "unauthenticated"},
			{"garbage token", bearer("garbage"), "unauthenticated"},
			{"refresh token", bearer(alice.RefreshToken), "unauthenticated"},
			{"tampered token", bearer(alice.AccessToken[:len(alice.AccessToken)-2] + "xx"), "unauthenticated"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := rawHTTP(t, s, "GET", "/v1/me", tc.header, "")
				r.wantAPIError(t, http.StatusUnauthorized, tc.code)
				if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
					t.Fatalf("WWW-Authenticate = %q, want a Bearer challenge", h)
				}
			})
		}
	})

	t.Run("routing errors", func(t *testing.T) {
		tests := []struct {
			method, path string
			status       int
			code         string
		}{
			{"GET", "/nope", http.StatusNotFound, "not_found"},
			{"GET", "/v1/auth/nope", http.StatusNotFound, "not_found"},
			{"POST", "/v2/auth/login", http.StatusNotFound, "not_found"},
			{"GET", "/v1/auth/register", http.StatusMethodNotAllowed, "not_found"},
			{"PUT", "/v1/auth/login", http.StatusMethodNotAllowed, "not_found"},
			{"PUT", "/v1/me", http.StatusMethodNotAllowed, "not_found"}, // GET reads it, DELETE deletes the account
			{"POST", "/healthz", http.StatusMethodNotAllowed, "not_found"},
		}
		for _, tc := range tests {
			t.Run(tc.method+" "+tc.path, func(t *testing.T) {
				rawHTTP(t, s, tc.method, tc.path, nil, "").wantAPIError(t, tc.status, tc.code)
			})
		}
	})

	t.Run("health", func(t *testing.T) {
		for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
			var body struct {
				Status string `json:"status"`
			}
			rawHTTP(t, s, "GET", path, nil, "").wantJSON(t, http.StatusOK, &body)
			if body.Status != want {
				t.Fatalf("GET %s: status %q, want %q", path, body.Status, want)
			}
		}
	})
}

// serverSecret reads the JWT secret the server generated in its data dir.
func serverSecret(t *testing.T, s *server) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.cfg.DataDir, "jwt.secret"))
	if err != nil {
		t.Fatalf("read generated jwt secret: %v", err)
	}
	secret := strings.TrimSpace(string(raw))
	if len(secret) < 32 {
		t.Fatalf("generated secret is %d characters", len(secret))
	}
	return []byte(secret)
}

// mintToken signs a token shaped like services/auth's, in the session of
// the token `of` (a token without a live session is refused).
func mintToken(t *testing.T, secret []byte, uid, of, typ string, exp time.Time) string {
	t.Helper()
	var c struct {
		Session string `json:"sid"`
		jwt.RegisteredClaims
	}
	if _, _, err := jwt.NewParser().ParseUnverified(of, &c); err != nil || c.Session == "" {
		t.Fatalf("no session in token %q: %v", of, err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"typ": typ, "iss": "mqchat", "sub": uid, "sid": c.Session, "jti": "minted",
		"iat": exp.Add(-time.Hour).Unix(), "exp": exp.Unix(),
	}).SignedString(secret)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return tok
}

func TestExpiredTokenRESTAndMQTT(t *testing.T) {
	s := startServer(t, nil)
	alice := s.register(t, "alice")
	secret := serverSecret(t, s)
	valid := mintToken(t, secret, alice.ID, alice.Token, "access", time.Now().Add(time.Hour))
	expired := mintToken(t, secret, alice.ID, alice.Token, "access", time.Now().Add(-time.Minute))

	// Control: the minted shape is accepted when not expired, so the
	// refusals below are about expiry and nothing else.
	if r := rawHTTP(t, s, "GET", "/v1/me", bearer(valid), ""); r.status != http.StatusOK {
		t.Fatalf("a minted, unexpired token is refused: %d %s", r.status, r.body)
	}
	ok5, ack, err := connectV5(tcpConn(t, s.addrs.MQTT), alice.ID, valid, alice.ID+"/minted", nil)
	if err != nil || ack == nil || ack.ReasonCode != 0 {
		t.Fatalf("v5 connect with a minted, unexpired token: %v (connack %+v)", err, ack)
	}
	_ = ok5.c.Disconnect(&paho.Disconnect{ReasonCode: 0})

	t.Run("REST", func(t *testing.T) {
		r := rawHTTP(t, s, "GET", "/v1/me", bearer(expired), "")
		r.wantAPIError(t, http.StatusUnauthorized, "unauthenticated")
		if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token", error_description="token expired"`) {
			t.Fatalf("WWW-Authenticate = %q, want error=\"invalid_token\" and the expiry", h)
		}
		body, _ := json.Marshal(map[string]string{"refresh_token": mintToken(t, secret, alice.ID, alice.Token, "refresh", time.Now().Add(-time.Minute))})
		rawHTTP(t, s, "POST", "/v1/auth/refresh", nil, string(body)).wantAPIError(t, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("MQTT 5", func(t *testing.T) {
		conn := tcpConn(t, s.addrs.MQTT)
		t.Cleanup(func() { _ = conn.Close() })
		_, ack, err := connectV5(conn, alice.ID, expired, alice.ID+"/expired", nil)
		if ack == nil || ack.ReasonCode != 0x86 || err == nil {
			t.Fatalf("v5 CONNACK %+v (%v), want reason 0x86", ack, err)
		}
	})
	t.Run("MQTT 3.1.1", func(t *testing.T) {
		rc, err := connectV3Code(t, "tcp://"+s.addrs.MQTT, alice.ID, expired, alice.ID+"/expired3", nil)
		if rc != 0x04 || !errors.Is(err, paho3packets.ErrorRefusedBadUsernameOrPassword) {
			t.Fatalf("3.1.1 CONNACK 0x%02x (%v), want 0x04", rc, err)
		}
	})
}

// connectV3Code connects a 3.1.1 client, optionally with a will, and returns
// the CONNACK return code and the connect error. An accepted client is
// disconnected when the test ends.
func connectV3Code(t *testing.T, url, user, pass, clientID string, will *paho.WillMessage) (byte, error) {
	t.Helper()
	opts := paho3.NewClientOptions().AddBroker(url).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(waitTimeout)
	if will != nil {
		opts.SetBinaryWill(will.Topic, will.Payload, will.QoS, will.Retain)
	}
	c := paho3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatalf("3.1.1 connect %s timed out", clientID)
	}
	ct, ok := tok.(*paho3.ConnectToken)
	if !ok {
		t.Fatalf("connect token is %T", tok)
	}
	if ct.ReturnCode() == paho3packets.Accepted {
		t.Cleanup(func() { c.Disconnect(100) })
	}
	return ct.ReturnCode(), tok.Error()
}

// connectV5Code connects an MQTT 5 client and returns its CONNACK reason code;
// it fails the test when no CONNACK arrives. An accepted client is
// disconnected when the test ends.
func connectV5Code(t *testing.T, addr, user, pass, clientID string, will *paho.WillMessage) (byte, error) {
	t.Helper()
	conn := tcpConn(t, addr)
	t.Cleanup(func() { _ = conn.Close() })
	c, ack, err := connectV5(conn, user, pass, clientID, will)
	if ack == nil {
		t.Fatalf("v5 connect %s: no CONNACK: %v", clientID, err)
	}
	if ack.ReasonCode == 0 {
		t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
	}
	return ack.ReasonCode, err
}

// v3ConnErr is the error paho.mqtt.golang reports for a 3.1.1 return code.
func v3ConnErr(rc byte) error { return paho3packets.ConnErrors[rc] }

type connectCase struct {
	name           string
	user, pass     string
	clientID       string
	will           string // will topic, "" = none
	v5, v3         byte   // expected CONNACK codes; 0 = accepted
	skipV3, skipV5 bool
}

func runConnectCases(t *testing.T, s *server, tests []connectCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var will *paho.WillMessage
			if tc.will != "" {
				will = &paho.WillMessage{Topic: tc.will, Payload: []byte(`{"status":"offline"}`), QoS: 1}
			}
			if !tc.skipV5 {
				t.Run("v5", func(t *testing.T) {
					rc, err := connectV5Code(t, s.addrs.MQTT, tc.user, tc.pass, tc.clientID, will)
					if rc != tc.v5 || (tc.v5 == 0) != (err == nil) {
						t.Fatalf("CONNACK reason 0x%02x (%v), want 0x%02x", rc, err, tc.v5)
					}
				})
			}
			if !tc.skipV3 {
				t.Run("v3.1.1", func(t *testing.T) {
					rc, err := connectV3Code(t, "tcp://"+s.addrs.MQTT, tc.user, tc.pass, tc.clientID, will)
					if rc != tc.v3 || !errors.Is(err, v3ConnErr(tc.v3)) {
						t.Fatalf("CONNACK return code 0x%02x (%v), want 0x%02x (%v)", rc, err, tc.v3, v3ConnErr(tc.v3))
					}
				})
			}
		})
	}
}

func TestConnectRefusals(t *testing.T) {
	s := startServer(t, nil)
	if s.cfg.Auth.AllowAnonymous {
		t.Fatal("the default configuration allows anonymous clients")
	}
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	unknown := ids.NewUserID()

	runConnectCases(t, s, []connectCase{
		{name: "valid", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/phone"},
		{name: "device of 64 characters", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/" + strings.Repeat("d", 64)},

		{name: "wrong password", user: alice.ID, pass: "not-a-token", clientID: alice.ID + "/phone", v5: 0x86, v3: 0x04},
		{name: "empty password", user: alice.ID, pass: "", clientID: alice.ID + "/phone", v5: 0x86, v3: 0x04},
		{name: "another user's valid token", user: alice.ID, pass: bob.Token, clientID: alice.ID + "/phone", v5: 0x86, v3: 0x04},
		{name: "refresh token as password", user: alice.ID, pass: alice.Refresh, clientID: alice.ID + "/phone", v5: 0x86, v3: 0x04},
		{name: "unknown user id with a valid token", user: unknown, pass: alice.Token, clientID: unknown + "/phone", v5: 0x86, v3: 0x04},
		{name: "username instead of user id", user: "alice", pass: alice.Token, clientID: "alice/phone", v5: 0x86, v3: 0x04},

		{name: "client id without user prefix", user: alice.ID, pass: alice.Token, clientID: "phone", v5: 0x85, v3: 0x02},
		{name: "client id of another user", user: alice.ID, pass: alice.Token, clientID: bob.ID + "/phone", v5: 0x85, v3: 0x02},
		{name: "client id with empty device", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/", v5: 0x85, v3: 0x02},
		{name: "client id is the user id", user: alice.ID, pass: alice.Token, clientID: alice.ID, v5: 0x85, v3: 0x02},
		{name: "client id with wildcard device", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/ph+ne", v5: 0x85, v3: 0x02},
		{name: "device of 65 characters", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/" + strings.Repeat("d", 65), v5: 0x85, v3: 0x02},
		{name: "bad client id and bad password", user: alice.ID, pass: "nope", clientID: "phone", v5: 0x85, v3: 0x02},

		{name: "no username", user: "", pass: "", clientID: "anon", v5: 0x87, v3: 0x05},
		{name: "no username, with a token", user: "", pass: alice.Token, clientID: alice.ID + "/phone", v5: 0x87, skipV3: true}, // 3.1.1 cannot send a password without a username

		{name: "will on another user's inbox", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/phone", will: "users/" + bob.ID + "/inbox", v5: 0x87, v3: 0x05},
		{name: "will on own send topic", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/phone", will: "users/" + alice.ID + "/send", v5: 0x87, v3: 0x05},
		{name: "will on own inbox", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/phone", will: "users/" + alice.ID + "/inbox", v5: 0x87, v3: 0x05},
		{name: "will on another user's presence", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/phone", will: "presence/" + bob.ID, v5: 0x87, v3: 0x05},
		{name: "will on a plain topic", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/phone", will: "plain/topic", v5: 0x87, v3: 0x05},
		{name: "will on own presence", user: alice.ID, pass: alice.Token, clientID: alice.ID + "/phone", will: "presence/" + alice.ID},
	})

	// The refusals did not disturb the accounts: alice still connects.
	a := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "after")
	if rc := a.subscribe(t, "users/"+alice.ID+"/inbox"); rc[0] != 1 {
		t.Fatalf("subscribe after refusals: 0x%02x", rc[0])
	}
}

// dialAnonV5 connects an anonymous MQTT 5 client.
func dialAnonV5(t *testing.T, s *server, clientID string) *v5 {
	t.Helper()
	c, ack, err := connectV5(tcpConn(t, s.addrs.MQTT), "", "", clientID, nil)
	if err != nil || ack == nil || ack.ReasonCode != 0 {
		t.Fatalf("anonymous v5 connect %s: %v (connack %+v)", clientID, err, ack)
	}
	t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
	return c
}

// collectUntil returns everything box receives up to and including the
// first message on topic.
func collectUntil(t *testing.T, box mailbox, topic string) []received {
	t.Helper()
	var got []received
	deadline := time.After(waitTimeout)
	for {
		select {
		case r := <-box:
			got = append(got, r)
			if r.Topic == topic {
				return got
			}
		case <-deadline:
			t.Fatalf("timed out waiting for a message on %s; received %d others", topic, len(got))
		}
	}
}

func TestAnonymousMode(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Auth.AllowAnonymous = true })
	alice, bob := s.register(t, "alice"), s.register(t, "bob")

	t.Run("connect", func(t *testing.T) {
		runConnectCases(t, s, []connectCase{
			{name: "anonymous", clientID: "anon-plain"},
			{name: "anonymous with a plain will", clientID: "anon-will", will: "plain/will"},
			{name: "anonymous with a will on presence", clientID: "anon-will-p", will: "presence/" + alice.ID, v5: 0x87, v3: 0x05},
			{name: "anonymous with a will on an inbox", clientID: "anon-will-i", will: "users/" + alice.ID + "/inbox", v5: 0x87, v3: 0x05},
			{name: "anonymous with a will on users", clientID: "anon-will-u", will: "users", v5: 0x87, v3: 0x05},
			{name: "anonymous with a password", pass: "secret", clientID: "anon-pw", v5: 0x87, skipV3: true},
			// A user's client id would take over that user's session.
			{name: "anonymous with a user's client id", clientID: alice.ID + "/phone", v5: 0x85, v3: 0x02},
			// Users who do identify themselves are still authenticated.
			{name: "user with a wrong password", user: alice.ID, pass: "nope", clientID: alice.ID + "/phone", v5: 0x86, v3: 0x04},
			{name: "user with a bad client id", user: alice.ID, pass: alice.Token, clientID: "phone", v5: 0x85, v3: 0x02},
		})
	})

	sub := dialAnonV5(t, s, "anon-sub")
	pub := dialAnonV5(t, s, "anon-pub")

	t.Run("plain broker", func(t *testing.T) {
		if rc := sub.subscribe(t, "plain/topic"); rc[0] != 1 {
			t.Fatalf("anonymous SUBACK for plain/topic = 0x%02x, want 1", rc[0])
		}
		if rc, err := pub.publish(t, "plain/topic", []byte("hello")); rc != 0 || err != nil {
			t.Fatalf("anonymous PUBACK for plain/topic = 0x%02x (%v), want 0", rc, err)
		}
		if got := sub.box.next(t, "plain/topic message", onTopic("plain/topic")); string(got.Payload) != "hello" {
			t.Fatalf("received %q, want hello", got.Payload)
		}
		// A 3.1.1 anonymous client shares the same plain broker.
		c3, err := connectV3("tcp://"+s.addrs.MQTT, "", "", "anon-v3")
		if err != nil {
			t.Fatalf("anonymous 3.1.1 connect: %v", err)
		}
		t.Cleanup(func() { c3.c.Disconnect(100) })
		c3.publish(t, "plain/topic", []byte("hello from 3.1.1"))
		if got := sub.box.next(t, "3.1.1 message", onTopic("plain/topic")); string(got.Payload) != "hello from 3.1.1" {
			t.Fatalf("received %q, want the 3.1.1 message", got.Payload)
		}
	})

	t.Run("reserved subscriptions", func(t *testing.T) {
		for _, f := range []string{
			"users/#", "users/+/inbox", "users/" + alice.ID + "/inbox", "users/" + alice.ID + "/#",
			"users", "presence/x", "presence/" + alice.ID, "presence/+", "presence/#", "presence",
		} {
			if rc := sub.subscribe(t, f); rc[0] != 0x87 {
				t.Errorf("anonymous SUBACK for %s = 0x%02x, want 0x87", f, rc[0])
			}
		}
	})

	// Listeners: bob's device, and anonymous subscribers whose filters match
	// the reserved trees; deliveries there must still be refused.
	bobDev := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	if rc := bobDev.subscribe(t, "users/"+bob.ID+"/inbox"); rc[0] != 1 {
		t.Fatalf("bob SUBACK 0x%02x", rc[0])
	}
	// Filters starting with a wildcard match users/ and presence/ too:
	// allowed, as on any broker, with every delivery checked by topic.
	all := dialAnonV5(t, s, "anon-all")
	if rc := all.subscribe(t, "#", "+/+/inbox", "+/#"); len(rc) != 3 || rc[0] != 1 || rc[1] != 1 || rc[2] != 1 {
		t.Fatalf("anonymous SUBACK for #, +/+/inbox, +/# = %v, want all 1", rc)
	}
	if rc := all.subscribe(t, "plain/#"); rc[0] != 1 {
		t.Fatalf("anonymous SUBACK for plain/# = 0x%02x, want 1", rc[0])
	}

	t.Run("reserved publishes", func(t *testing.T) {
		tests := []struct{ topic, payload string }{
			{"users/" + alice.ID + "/send", string(envelope(bob.ID, "anon-forged", "forged"))},
			{"users/" + bob.ID + "/inbox", `{"chat":"forged","seq":1,"from":"` + alice.ID + `","body":"forged"}`},
			{"users/" + bob.ID + "/events", `{"type":"error"}`},
			{"presence/" + alice.ID, `{"status":"online"}`},
		}
		for _, tc := range tests {
			if rc, err := pub.publish(t, tc.topic, []byte(tc.payload)); rc != 0x87 || err == nil {
				t.Errorf("anonymous PUBACK for %s = 0x%02x (%v), want 0x87", tc.topic, rc, err)
			}
		}
	})

	// A real 1:1 message: bob's first delivery is it, with seq 1, so the
	// forged send was not stored and the forged inbox copy never arrived.
	a5 := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	a5.send(t, bob.ID, "real", "hi bob")
	first := bobDev.box.next(t, "bob's first message", nil)
	if m := first.inbox(t); first.Topic != "users/"+bob.ID+"/inbox" || m.CMID != "real" || m.Seq != 1 || m.From != alice.ID {
		t.Fatalf("bob first received %s %s, want the real message with seq 1", first.Topic, first.Payload)
	}

	// alice's presence aggregate, retained on her presence topic, changes
	// when a device carrying a will connects and drops; bob (a chat partner
	// now) sees it, anonymous clients never do, neither live nor retained.
	accept(t, s, bob, directChat(alice.ID, bob.ID))
	if rc := bobDev.subscribe(t, "presence/"+alice.ID); rc[0] != 1 {
		t.Fatalf("bob SUBACK for alice's presence = 0x%02x, want 1", rc[0])
	}
	willConn := tcpConn(t, s.addrs.MQTT)
	_, ack, err := connectV5(willConn, alice.ID, alice.Token, alice.ID+"/will", &paho.WillMessage{
		Topic: "presence/" + alice.ID, Payload: []byte("offline"), QoS: 1, Retain: true,
	})
	if err != nil || ack == nil || ack.ReasonCode != 0 {
		t.Fatalf("connect with a will on own presence: %v (connack %+v)", err, ack)
	}
	for got := nextPresence(t, bobDev.box, alice.ID); got.Devices != 2; got = nextPresence(t, bobDev.box, alice.ID) {
		if got.Status != "online" || got.Devices != 1 { // the retained aggregate first
			t.Fatalf("bob received presence %+v, want online with 1 then 2 devices", got)
		}
	}
	_ = willConn.Close() // no DISCONNECT: the server updates the aggregate
	// (online with 2 devices may come twice: live and as the retained
	// message of the racing SUBSCRIBE.)
	for got := nextPresence(t, bobDev.box, alice.ID); got.Status != "online" || got.Devices != 1; got = nextPresence(t, bobDev.box, alice.ID) {
		if got.Status != "online" || got.Devices != 2 {
			t.Fatalf("bob received presence %+v, want online with 1 device", got)
		}
	}
	late := dialAnonV5(t, s, "anon-late")
	if rc := late.subscribe(t, "#", "plain/+"); rc[0] != 1 || rc[1] != 1 {
		t.Fatalf("late anonymous SUBACK for #, plain/+ = %v, want 1 and 1", rc)
	}

	// The marker goes out after everything above; whatever the anonymous
	// subscribers received before it is all they will ever get of it.
	if rc, err := pub.publish(t, "plain/marker", []byte("marker")); rc != 0 || err != nil {
		t.Fatalf("marker PUBACK 0x%02x (%v)", rc, err)
	}
	for name, c := range map[string]*v5{"anon-all": all, "anon-late": late} {
		got := collectUntil(t, c.box, "plain/marker")
		for _, r := range got {
			if strings.HasPrefix(r.Topic, "users/") || strings.HasPrefix(r.Topic, "presence/") {
				t.Errorf("%s received %s %s", name, r.Topic, r.Payload)
			}
		}
	}

	page := s.history(t, alice, directChat(alice.ID, bob.ID), "?limit=50")
	if len(page.Messages) != 1 || page.Messages[0].CMID != "real" {
		t.Fatalf("history holds %+v, want only the real message", page.Messages)
	}
}
