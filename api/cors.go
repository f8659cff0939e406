package api

import (
	"net/http"
	"strconv"
	"time"
)

// OriginChecker decides whether a browser page may use the API: ok, or the
// reason it may not, for the log. The WebSocket listener asks the same one.
type OriginChecker interface {
	Check(r *http.Request) (ok bool, reason string)
}

// What a preflight allows. The headers are the ones the API reads; a
// browser may send the CORS-safelisted ones (Accept, Content-Language...)
// without asking.
const (
	corsMethods = "GET, POST, PUT, PATCH, DELETE"
	corsHeaders = "Authorization, Content-Type, Idempotency-Key"
	// corsExpose lets scripts read the headers that say when to retry
	// and why a token was refused.
	corsExpose = "Retry-After, WWW-Authenticate"
	// corsMaxAge lets a browser reuse a preflight answer for an hour
	// (Chromium caps it at two).
	corsMaxAge = time.Hour
)

// cors answers preflight requests and marks answers to allowed origins
// readable by their page. It wraps the router rather than running as gin
// middleware so that an OPTIONS preflight is answered before routing,
// which would refuse it as an unknown method. Requests without an Origin
// (native apps, devices, curl) pass untouched.
func (a *api) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || a.opts.Origins == nil {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if ok, reason := a.opts.Origins.Check(r); !ok {
			a.opts.Logger.Info("cross-origin request refused",
				"origin", origin, "host", r.Host, "method", r.Method, "path", r.URL.Path,
				"remote", r.RemoteAddr, "reason", reason)
			// Refused outright, not only left unreadable: a form post from
			// any site would otherwise still reach the handlers.
			h.Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":{"code":"not_authorized","message":"origin not allowed"}}`))
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if preflight {
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", strconv.Itoa(int(corsMaxAge/time.Second)))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExpose)
		next.ServeHTTP(w, r)
	})
}
