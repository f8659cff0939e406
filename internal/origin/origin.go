// Package origin decides which browser pages may use chatd: the WebSocket
// listener asks it before upgrading, the REST API before answering a
// cross-origin request. One policy serves both, so a page that may chat over
// MQTT may also log in over REST, and the reverse.
package origin

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Policy is the configured allowlist plus the ports chatd itself listens
// on. Browsers let any page open a WebSocket or send a request to any host
// (with the user's network position), so without it any site a user visits
// could talk to chatd as that user's browser.
type Policy struct {
	any     bool                // "*": every origin is allowed
	allowed map[string]struct{} // normalised scheme://host[:port]

	mu  sync.RWMutex
	own map[string]struct{} // ports chatd listens on, e.g. "8080"
}

// New parses the allowlist up front so that a typo fails at startup instead
// of silently refusing every browser. Empty allows only chatd's own pages.
func New(entries []string) (*Policy, error) {
	p := &Policy{allowed: make(map[string]struct{}, len(entries)), own: make(map[string]struct{})}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "*" {
			if len(entries) != 1 {
				return nil, fmt.Errorf("origin %q must be the only entry", e)
			}
			p.any = true
			continue
		}
		norm, err := Normalise(e)
		if err != nil {
			return nil, err
		}
		p.allowed[norm] = struct{}{}
	}
	return p, nil
}

// AddOwnPort records the port of a listener chatd serves on (addr is its
// bound host:port), so that a page chatd serves on one port may use another:
// /app/ is on the REST port and talks MQTT to the WebSocket port.
func (p *Policy) AddOwnPort(addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return
	}
	p.mu.Lock()
	p.own[port] = struct{}{}
	p.mu.Unlock()
}

// Check reports whether the request's Origin is acceptable and, when not,
// why, in words for the operator's log.
func (p *Policy) Check(r *http.Request) (ok bool, reason string) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		// Only browsers send Origin, and only browsers need protecting
		// from cross-site use; native apps and devices must not be locked
		// out.
		return true, ""
	}
	if p.any {
		return true, ""
	}
	norm, err := Normalise(origin)
	if err != nil {
		// Includes the opaque "null" of file:// pages and sandboxed frames.
		return false, "not a scheme://host[:port] origin"
	}
	if _, ok := p.allowed[norm]; ok {
		return true, ""
	}
	if p.ownPage(norm, r.Host) {
		return true, ""
	}
	return false, "not in http.allowed_origins and not a page of this server"
}

// ownPage: a page served by this chatd, that is one on the host the request
// was sent to, either on the very port it was sent to (same origin, also
// what a reverse proxy presents) or on any port chatd listens on.
func (p *Policy) ownPage(norm, requestHost string) bool {
	scheme, host, _ := strings.Cut(norm, "://")
	if host == normaliseHost(scheme, strings.ToLower(requestHost)) {
		return true
	}
	oHost, oPort := splitPort(scheme, host)
	rHost, _ := splitPort(scheme, strings.ToLower(requestHost))
	if oHost != rHost {
		return false
	}
	p.mu.RLock()
	_, ok := p.own[oPort]
	p.mu.RUnlock()
	return ok
}

// splitPort splits host[:port], filling in the scheme's default port.
func splitPort(scheme, hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	switch scheme {
	case "https", "wss":
		return strings.Trim(hostport, "[]"), "443"
	default:
		return strings.Trim(hostport, "[]"), "80"
	}
}

// Normalise reduces an origin to lower-case scheme://host[:port] with the
// scheme's default port dropped, the form browsers send, so that
// "https://App.example.com:443" in the config matches what arrives.
func Normalise(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("origin %q: %w", s, err)
	}
	if u.Scheme == "" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("origin %q: want scheme://host[:port]", s)
	}
	scheme := strings.ToLower(u.Scheme)
	return scheme + "://" + normaliseHost(scheme, strings.ToLower(u.Host)), nil
}

// normaliseHost drops the scheme's default port from host.
func normaliseHost(scheme, host string) string {
	switch {
	case (scheme == "http" || scheme == "ws") && strings.HasSuffix(host, ":80"):
		return strings.TrimSuffix(host, ":80")
	case (scheme == "https" || scheme == "wss") && strings.HasSuffix(host, ":443"):
		return strings.TrimSuffix(host, ":443")
	}
	return host
}
