package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	tests := []struct {
		name, method, path string
		status             int
		kind               string // Content-Type prefix
		contains           string // in the body
	}{
		{"index", "GET", "/", 200, "text/html", `<script src="app.js"`},
		{"script", "GET", "/app.js", 200, "text/javascript", `"use strict"`},
		{"style", "GET", "/style.css", 200, "text/css", "#chat-list"},
		{"vendored MQTT.js with its license", "GET", "/vendor/mqtt.min.js", 200, "text/javascript", "MIT License"},
		{"a client location falls back to the index", "GET", "/chats/x", 200, "text/html", `id="chat-view"`},
		{"a missing file is not the index", "GET", "/missing.js", 404, "text/plain", "not found"},
		{"no escape from the directory", "GET", "/../web.go", 404, "text/plain", "not found"},
		{"head", "HEAD", "/app.js", 200, "text/javascript", ""},
		{"no writes", "POST", "/", 405, "text/plain", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, tc.kind) {
				t.Errorf("Content-Type %q, want %s…", got, tc.kind)
			}
			if !strings.Contains(rec.Body.String(), tc.contains) {
				t.Errorf("body does not contain %q", tc.contains)
			}
			if tc.status == 200 {
				if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
					t.Errorf("Cache-Control %q, want no-cache", cc)
				}
				if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
					t.Errorf("Content-Security-Policy %q", csp)
				}
			}
		})
	}
}

// A browser revalidating a file it holds gets 304 without the body.
func TestHandlerRevalidates(t *testing.T) {
	h := Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/app.js", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest("GET", "/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Fatalf("revalidation: status %d with %d bytes, want 304 and none", rec.Code, rec.Body.Len())
	}
}
