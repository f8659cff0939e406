// Package web is chatd's reference web client: static files embedded in the
// binary and served under /app/ by the REST listener. The client itself is
// plain JavaScript (app.js) on MQTT.js (vendor/mqtt.min.js, refreshed by
// scripts/vendor-web.sh); nothing here needs Node to build.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed index.html app.js style.css vendor/mqtt.min.js
var files embed.FS

// Prefix is where the client is served.
const Prefix = "/app/"

// contentSecurityPolicy allows only the client's own files and its
// connections: REST on this origin, MQTT over WebSocket on any host, since
// the WebSocket listener is on another port (or another host behind a
// proxy) and CSP's 'self' does not cover other ports.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

type asset struct {
	body []byte
	etag string
	kind string
}

// Handler serves the client. Paths are relative to Prefix (the caller
// strips it). Every file is revalidated on each load (no-cache with a
// content-hash ETag): file names carry no version, so a longer cache would
// keep an old client after an upgrade, and a 304 costs one round trip.
// A path without an extension that names no file is the index, so the
// client's own locations survive a reload; a missing file with an
// extension is a 404.
func Handler() http.Handler {
	assets := map[string]asset{}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		kind := mime.TypeByExtension(path.Ext(p))
		if kind == "" {
			kind = "application/octet-stream"
		}
		assets[p] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, kind: kind}
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a build defect.
		panic("web: embedded files unreadable: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		a, ok := assets[name]
		if !ok {
			if path.Ext(name) != "" {
				http.NotFound(w, r)
				return
			}
			a = assets["index.html"]
		}
		h := w.Header()
		h.Set("Content-Type", a.kind)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	})
}
