// Package fcmtest is a local stand-in for the two Google endpoints the
// Firebase Admin SDK calls to send a push: the OAuth2 token endpoint (named
// as token_uri in a service-account file it generates, signed with a fresh
// RSA key) and FCM v1's projects/{p}/messages:send. It records every send
// and answers with FCM's real success and error bodies, so tests run the
// real SDK end to end without reaching Google.
package fcmtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Answer is how the server answers one send.
type Answer string

const (
	OK              Answer = "OK"
	Unregistered    Answer = "UNREGISTERED"     // 404 NOT_FOUND
	InvalidArgument Answer = "INVALID_ARGUMENT" // 400
	Unavailable     Answer = "UNAVAILABLE"      // 503
	QuotaExceeded   Answer = "QUOTA_EXCEEDED"   // 429 RESOURCE_EXHAUSTED
	Internal        Answer = "INTERNAL"         // 500
)

// ProjectID is the project of the generated credentials.
const ProjectID = "mqchat-test"

// Message is the part of an FCM v1 message the tests look at.
type Message struct {
	Token        string            `json:"token"`
	Data         map[string]string `json:"data"`
	Notification *struct {
		Title string `json:"title"`
		Body  string `json:"body"`
	} `json:"notification"`
	Android *struct {
		CollapseKey  string `json:"collapse_key"`
		Priority     string `json:"priority"`
		Notification *struct {
			Tag string `json:"tag"`
		} `json:"notification"`
	} `json:"android"`
	APNS *struct {
		Headers map[string]string `json:"headers"`
		Payload map[string]any    `json:"payload"`
	} `json:"apns"`
	Webpush *struct {
		Notification *struct {
			Tag string `json:"tag"`
		} `json:"notification"`
	} `json:"webpush"`
}

// Request is one messages:send call as received.
type Request struct {
	At      time.Time
	Message Message
	Answer  Answer
}

// Server is a running stand-in.
type Server struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	// CredentialsFile is a service-account JSON whose token_uri points here.
	CredentialsFile string
	// Endpoint replaces https://fcm.googleapis.com/v1 (push.fcm.endpoint).
	Endpoint string

	mu       sync.Mutex
	token    string
	scripts  map[string][]Answer // per device token, consumed in order
	fallback Answer
	requests []Request
	tokens   int // access tokens issued
	changed  chan struct{}
	held     chan struct{} // while set, sends wait for it to close
}

// Start runs a server and writes its credentials file into dir.
func Start(dir string) (*Server, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("fcmtest: generate key: %w", err)
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("fcmtest: token: %w", err)
	}
	s := &Server{key: key, token: "ya29." + hex.EncodeToString(raw), scripts: map[string][]Answer{}, fallback: OK, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.issueToken)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", s.send)
	s.srv = httptest.NewServer(mux)
	s.Endpoint = s.srv.URL + "/v1"

	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		s.srv.Close()
		return nil, fmt.Errorf("fcmtest: encode key: %w", err)
	}
	creds, err := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     ProjectID,
		"private_key_id": hex.EncodeToString(raw[:8]),
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "chatd@" + ProjectID + ".iam.gserviceaccount.com",
		"client_id":      "1234567890",
		"auth_uri":       s.srv.URL + "/auth",
		"token_uri":      s.srv.URL + "/token",
	}, "", "  ")
	if err != nil {
		s.srv.Close()
		return nil, fmt.Errorf("fcmtest: encode credentials: %w", err)
	}
	s.CredentialsFile = filepath.Join(dir, "fcm-service-account.json")
	if err := os.WriteFile(s.CredentialsFile, creds, 0o600); err != nil {
		s.srv.Close()
		return nil, fmt.Errorf("fcmtest: write credentials: %w", err)
	}
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Script makes the next sends to token answer as listed, one each; later
// sends get the fallback answer.
func (s *Server) Script(token string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[token] = append(s.scripts[token], answers...)
}

// SetFallback sets the answer for sends without a scripted one.
func (s *Server) SetFallback(a Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fallback = a
}

// Hold makes sends wait (recorded, unanswered) until release is called:
// a provider that is slow to answer.
func (s *Server) Hold() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.held = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.held == ch {
				s.held = nil
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Requests returns every send received so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// To returns the sends received for one device token.
func (s *Server) To(token string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Message.Token == token {
			out = append(out, r)
		}
	}
	return out
}

// TokensIssued counts OAuth access tokens handed out.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens
}

// Wait blocks until cond holds for the requests received, or timeout.
func (s *Server) Wait(timeout time.Duration, cond func([]Request) bool) ([]Request, bool) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		reqs := append([]Request(nil), s.requests...)
		changed := s.changed
		s.mu.Unlock()
		if cond(reqs) {
			return reqs, true
		}
		select {
		case <-changed:
		case <-deadline:
			return reqs, false
		}
	}
}

// issueToken is the OAuth2 JWT-bearer grant (RFC 7523): it checks that the
// assertion is signed by the credentials' key for this audience.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", err.Error())
		return
	}
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, "unsupported_grant_type", r.PostForm.Get("grant_type"))
		return
	}
	_, err := jwt.Parse(r.PostForm.Get("assertion"), func(*jwt.Token) (any, error) { return &s.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(s.srv.URL+"/token"), jwt.WithIssuedAt())
	if err != nil {
		oauthError(w, "invalid_grant", err.Error())
		return
	}
	s.mu.Lock()
	s.tokens++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": s.token, "token_type": "Bearer", "expires_in": 3600})
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "", "Request had invalid authentication credentials.")
		return
	}
	if p := r.PathValue("project"); p != ProjectID {
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "Permission denied for project "+p)
		return
	}
	var body struct {
		ValidateOnly bool    `json:"validate_only"`
		Message      Message `json:"message"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
		return
	}
	tok := body.Message.Token
	s.mu.Lock()
	answer := s.fallback
	if q := s.scripts[tok]; len(q) > 0 {
		answer, s.scripts[tok] = q[0], q[1:]
	}
	s.requests = append(s.requests, Request{At: time.Now(), Message: body.Message, Answer: answer})
	close(s.changed)
	s.changed = make(chan struct{})
	n := len(s.requests)
	held := s.held
	s.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-r.Context().Done():
			return
		}
	}

	switch answer {
	case OK:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"name": fmt.Sprintf("projects/%s/messages/%d", ProjectID, n)})
	case Unregistered:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
	case InvalidArgument:
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token")
	case Unavailable:
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.")
	case QuotaExceeded:
		writeError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for quota metric 'Send requests'.")
	case Internal:
		writeError(w, http.StatusInternalServerError, "INTERNAL", "INTERNAL", "Internal error encountered.")
	default:
		writeError(w, http.StatusInternalServerError, "INTERNAL", "", "fcmtest: unknown scripted answer "+string(answer))
	}
}

// writeError writes a google.rpc.Status error body as FCM v1 does, with the
// FcmError detail the SDK maps to its error codes.
func writeError(w http.ResponseWriter, status int, rpcStatus, fcmCode, msg string) {
	details := []map[string]any{}
	if fcmCode != "" {
		details = append(details, map[string]any{
			"@type":     "type.googleapis.com/google.firebase.fcm.v1.FcmError",
			"errorCode": fcmCode,
		})
	}
	if rpcStatus == "INVALID_ARGUMENT" && strings.Contains(msg, "registration token") {
		details = append(details, map[string]any{
			"@type":           "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []map[string]string{{"field": "message.token", "description": msg}},
		})
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": status, "message": msg, "status": rpcStatus, "details": details,
	}})
}
