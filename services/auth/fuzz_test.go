package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mqchat/mqchat/services/auth"
)

// FuzzCredentials covers the username and password of register and login:
// a refusal names its field, an accepted username is its own normal form
// (3 to 32 of a-z 0-9 _ - .), an accepted password 8 characters to 72 bytes.
func FuzzCredentials(f *testing.F) {
	for _, s := range [][2]string{
		{"alice", "correct horse"}, {"  Alice.B-2_ ", "12345678"}, {"al", "short"}, {strings.Repeat("a", 33), strings.Repeat("p", 73)},
		{"ali ce", "ééééééé"}, {"\u212aelvin", "éééééééé"}, {"İstanbul", "\x00\x00\x00\x00\x00\x00\x00\x00"}, {"\xff\xfe\xfd", "\xff\xff\xff\xff\xff\xff\xff\xff"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, username, password string) {
		name, err := auth.NormalizeUsername(username)
		if err != nil {
			var in *auth.InputError
			if !errors.As(err, &in) || in.Field != "username" || in.Reason == "" {
				t.Fatalf("NormalizeUsername(%q): %v", username, err)
			}
		} else {
			if len(name) < 3 || len(name) > 32 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_-.") != "" {
				t.Fatalf("NormalizeUsername(%q) = %q", username, name)
			}
			if again, err := auth.NormalizeUsername(name); err != nil || again != name {
				t.Fatalf("NormalizeUsername(%q) = %q, %v; not its own normal form", name, again, err)
			}
		}
		err = auth.CheckPassword(password)
		n := utf8.RuneCountInString(password)
		if err != nil {
			var in *auth.InputError
			if !errors.As(err, &in) || in.Field != "password" || in.Reason == "" || n >= 8 && len(password) <= 72 {
				t.Fatalf("CheckPassword(%q): %v", password, err)
			}
		} else if n < 8 || len(password) > 72 {
			t.Fatalf("CheckPassword(%q) accepted", password)
		}
	})
}

// signedHS256 reports whether token is header.payload.signature with an
// HS256 header and the HMAC-SHA256 of header.payload under secret.
func signedHS256(token string, secret []byte) (payload []byte, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, false
	}
	head, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	payload, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	var h struct {
		Alg string `json:"alg"`
	}
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(head, &h) != nil || h.Alg != "HS256" {
		return nil, false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	return payload, hmac.Equal(sig, mac.Sum(nil))
}

// FuzzTokens covers the bearer tokens clients present (REST Authorization,
// MQTT CONNECT password, POST /v1/auth/refresh): any string is refused
// with a token error, never an internal one, and a string is accepted only
// when it is a token this service signed, of the right type, for a user
// that exists.
func FuzzTokens(f *testing.F) {
	fx := newFixture(f)
	ctx := context.Background()
	tok, err := fx.svc.Register(ctx, "alice", goodPassword)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.AccessToken)
	f.Add(tok.RefreshToken)
	parts := strings.Split(tok.AccessToken, ".")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add("eyJhbGciOiJub25lIn0." + parts[1] + ".")
	f.Add(strings.ToUpper(tok.AccessToken))
	f.Add("")
	f.Add("Bearer " + tok.AccessToken)
	f.Fuzz(func(t *testing.T, token string) {
		uid, aerr := fx.svc.Authenticate(ctx, token)
		_, rerr := fx.svc.Refresh(ctx, token)
		for _, err := range []error{aerr, rerr} {
			if err != nil && !errors.Is(err, auth.ErrInvalidToken) && !errors.Is(err, auth.ErrTokenExpired) && !errors.Is(err, auth.ErrUnknownUser) {
				t.Fatalf("%q: error %v is not a token error", token, err)
			}
		}
		if aerr == nil && rerr == nil {
			t.Fatalf("%q is both an access and a refresh token", token)
		}
		if aerr != nil && rerr != nil {
			return
		}
		payload, ok := signedHS256(token, testSecret)
		var c struct {
			Typ string `json:"typ"`
			Iss string `json:"iss"`
			Sub string `json:"sub"`
		}
		if !ok || json.Unmarshal(payload, &c) != nil || c.Iss != "mqchat" || c.Sub != tok.UserID {
			t.Fatalf("%q accepted (access %v, refresh %v) but not signed by the service for alice", token, aerr, rerr)
		}
		if aerr == nil && (uid != tok.UserID || c.Typ != "access") || rerr == nil && c.Typ != "refresh" {
			t.Fatalf("%q: accepted as the wrong type (%q), uid %q", token, c.Typ, uid)
		}
	})
}
