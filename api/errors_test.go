package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.yaml.in/yaml/v3"

	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/services/chat"
)

func TestFail(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		status      int
		code, field string
		header      map[string]string
	}{
		{"chat refusal", &chat.Error{Code: chat.CodeNotAuthorized, Message: "not a member"}, 403, "not_authorized", "", nil},
		{"field", chat.Invalid("read_seq", "read_seq must be at least 1"), 400, "invalid_payload", "read_seq", nil},
		{"wrapped", fmt.Errorf("send: %w", &chat.Error{Code: chat.CodeCMIDReused, Message: "reused"}), 409, "cmid_reused", "", nil},
		{"retry after", &chat.Error{Code: chat.CodeRateLimited, Message: "slow down", RetryAfter: 1500 * time.Millisecond}, 429, "rate_limited", "", map[string]string{"Retry-After": "2"}},
		{"input", &auth.InputError{Field: "password", Reason: "too short"}, 400, "invalid_payload", "password", nil},
		{"username taken", auth.ErrUsernameTaken, 409, "conflict", "username", nil},
		{"throttled", &auth.ThrottledError{RetryAfter: 3 * time.Second}, 429, "rate_limited", "", map[string]string{"Retry-After": "3"}},
		{"bad credentials", auth.ErrInvalidCredentials, 401, "unauthenticated", "", map[string]string{"WWW-Authenticate": `Bearer realm="mqchat"`}},
		{"expired", auth.ErrTokenExpired, 401, "unauthenticated", "", map[string]string{"WWW-Authenticate": `Bearer realm="mqchat", error="invalid_token", error_description="token expired"`}},
		{"bad token", auth.ErrInvalidToken, 401, "unauthenticated", "", map[string]string{"WWW-Authenticate": `Bearer realm="mqchat", error="invalid_token"`}},
		{"unknown user", auth.ErrUnknownUser, 401, "unauthenticated", "", nil},
		{"session", auth.ErrSessionNotFound, 404, "not_found", "session_id", nil},
		{"old password", auth.ErrWrongPassword, 403, "not_authorized", "old_password", nil},
		{"too big", &http.MaxBytesError{Limit: 10}, 413, "payload_too_large", "", nil},
		{"unmapped code", &chat.Error{Code: "brand_new", Message: "secret detail"}, 500, "internal", "", nil},
		{"plain error", errors.New("disk on fire"), 500, "internal", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(rec)
			fail(c, tc.err)
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if rec.Code != tc.status || body.Error.Code != tc.code || body.Error.Field != tc.field || body.Error.Message == "" {
				t.Fatalf("%d %s, want %d %s field %q", rec.Code, rec.Body, tc.status, tc.code, tc.field)
			}
			for k, v := range tc.header {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tc.status == 500 {
				if body.Error.Message != "internal error" {
					t.Errorf("internal message %q shows the cause", body.Error.Message)
				}
				if len(c.Errors) != 1 || !errors.Is(c.Errors.Last().Err, tc.err) {
					t.Errorf("cause %v not kept for the log: %v", tc.err, c.Errors)
				}
			}
		})
	}
}

// TestCodesDocumented holds the code set, the statuses, openapi.yaml's
// Error enum and the table of docs/protocol.md to one another.
func TestCodesDocumented(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Error struct {
							Properties struct {
								Code struct {
									Enum []string `yaml:"enum"`
								} `yaml:"code"`
							} `yaml:"properties"`
						} `yaml:"error"`
					} `yaml:"properties"`
				} `yaml:"Error"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, c := range chat.Codes {
		codes = append(codes, string(c))
		if statusOf[c] == 0 {
			t.Errorf("code %s has no HTTP status", c)
		}
	}
	if enum := doc.Components.Schemas.Error.Properties.Error.Properties.Code.Enum; !slices.Equal(enum, codes) {
		t.Errorf("openapi.yaml Error codes %v, want %v", enum, codes)
	}
	if len(statusOf) != len(chat.Codes) {
		t.Errorf("statusOf maps %d codes, chat.Codes lists %d", len(statusOf), len(chat.Codes))
	}

	md, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(md), "\n## Errors\n")
	if !ok {
		t.Fatal("docs/protocol.md has no Errors section")
	}
	section, _, _ = strings.Cut(section, "\n### ")
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([0-9]{3})")
	var listed []string
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		listed = append(listed, m[1])
		if want := strconv.Itoa(statusOf[chat.Code(m[1])]); m[2] != want {
			t.Errorf("docs/protocol.md: %s is %s, the API answers %s", m[1], m[2], want)
		}
	}
	if !slices.Equal(listed, codes) {
		t.Errorf("docs/protocol.md lists %v, want %v", listed, codes)
	}
}
