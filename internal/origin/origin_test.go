package origin

import (
	"net/http"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		own     []string // bound listener addresses
		host    string   // the request's Host
		origin  string
		want    bool
		because string // part of the reason when refused
	}{
		{name: "no origin", host: "chat.example.com", want: true},
		{name: "same origin", host: "chat.example.com:8080", origin: "http://chat.example.com:8080", want: true},
		{name: "same origin behind a proxy, default port", host: "chat.example.com", origin: "https://chat.example.com", want: true},
		{name: "same origin, explicit default port", host: "chat.example.com:443", origin: "https://chat.example.com", want: true},
		{name: "own page on another own port", own: []string{"[::]:8080", "[::]:8083"}, host: "chat.example.com:8083", origin: "http://chat.example.com:8080", want: true},
		{name: "own page, host letter case", own: []string{":8080"}, host: "Chat.Example.com:8083", origin: "http://chat.example.COM:8080", want: true},
		{name: "same host, port not chatd's", own: []string{":8080", ":8083"}, host: "chat.example.com:8083", origin: "http://chat.example.com:3000", because: "http.allowed_origins"},
		{name: "own port, other host", own: []string{":8080"}, host: "chat.example.com:8083", origin: "http://evil.example.com:8080", because: "http.allowed_origins"},
		{name: "foreign", host: "chat.example.com", origin: "https://evil.example.com", because: "http.allowed_origins"},
		{name: "null", host: "chat.example.com", origin: "null", because: "scheme://host"},
		{name: "listed", allow: []string{"https://App.Example.com"}, host: "chat.example.com", origin: "https://app.example.com", want: true},
		{name: "listed with default port", allow: []string{"https://app.example.com:443"}, host: "chat.example.com", origin: "https://app.example.com", want: true},
		{name: "listed, other scheme", allow: []string{"https://app.example.com"}, host: "chat.example.com", origin: "http://app.example.com", because: "http.allowed_origins"},
		{name: "listed, other port", allow: []string{"https://app.example.com"}, host: "chat.example.com", origin: "https://app.example.com:8443", because: "http.allowed_origins"},
		{name: "a list does not exclude own pages", allow: []string{"https://app.example.com"}, own: []string{":8080"}, host: "chat.example.com:8083", origin: "http://chat.example.com:8080", want: true},
		{name: "star", allow: []string{"*"}, host: "chat.example.com", origin: "https://evil.example.com", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.allow)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range tc.own {
				p.AddOwnPort(a)
			}
			r, err := http.NewRequest(http.MethodGet, "http://"+tc.host+"/mqtt", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			ok, reason := p.Check(r)
			if ok != tc.want {
				t.Fatalf("Check = %v (%q), want %v", ok, reason, tc.want)
			}
			if !ok && !strings.Contains(reason, tc.because) {
				t.Fatalf("reason %q does not say %q", reason, tc.because)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	for _, entries := range [][]string{
		{"*", "https://app.example.com"},
		{"app.example.com"},
		{"https://app.example.com/path"},
		{"https://user@app.example.com"},
		{"https://app.example.com?x=1"},
	} {
		if _, err := New(entries); err == nil {
			t.Errorf("New(%q) = nil error", entries)
		}
	}
}
