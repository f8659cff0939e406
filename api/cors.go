package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
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
// readable by their page. As global middleware it also runs for requests
// no route matches, which is how an OPTIONS preflight reaches it: routing
// alone would answer 405. Requests without an Origin (native apps,
// devices, curl) pass untouched.
func (a *api) cors(c *gin.Context) {
	r := c.Request
	origin := r.Header.Get("Origin")
	if origin == "" || a.opts.Origins == nil {
		c.Next()
		return
	}
	c.Writer.Header().Add("Vary", "Origin")
	if ok, reason := a.opts.Origins.Check(r); !ok {
		a.opts.Logger.Info("cross-origin request refused",
			"origin", origin, "host", r.Host, "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "reason", reason)
		// Refused outright, not only left unreadable: a form posted from
		// any site would otherwise still reach the handlers.
		abort(c, http.StatusForbidden, "not_authorized", "origin not allowed")
		return
	}
	c.Header("Access-Control-Allow-Origin", origin)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		c.Header("Access-Control-Allow-Methods", corsMethods)
		c.Header("Access-Control-Allow-Headers", corsHeaders)
		c.Header("Access-Control-Max-Age", strconv.Itoa(int(corsMaxAge/time.Second)))
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Header("Access-Control-Expose-Headers", corsExpose)
	c.Next()
}
