package broker

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// originPolicy decides which browser origins may open a WebSocket. Browsers
// let any page open a WebSocket to any host and send cookies along, so
// without this check any site a user visits could talk MQTT as them.
type originPolicy struct {
	any     bool                // "*": every origin is allowed
	allowed map[string]struct{} // normalised origins; empty means same host only
}

// newOriginPolicy parses the allowlist up front so that a typo fails at
// startup instead of silently refusing every browser.
func newOriginPolicy(entries []string) (originPolicy, error) {
	if len(entries) == 1 && strings.TrimSpace(entries[0]) == "*" {
		return originPolicy{any: true}, nil
	}
	p := originPolicy{allowed: make(map[string]struct{}, len(entries))}
	for _, e := range entries {
		if strings.TrimSpace(e) == "*" {
			return originPolicy{}, fmt.Errorf("WSAllowedOrigins: %q must be the only entry", e)
		}
		norm, err := normaliseOrigin(strings.TrimSpace(e))
		if err != nil {
			return originPolicy{}, fmt.Errorf("WSAllowedOrigins: %w", err)
		}
		p.allowed[norm] = struct{}{}
	}
	return p, nil
}

// allow reports whether the request's Origin is acceptable.
func (p originPolicy) allow(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		// Only browsers send Origin, and only browsers need protecting from
		// cross-site use; native apps and devices must not be locked out.
		return true
	}
	if p.any {
		return true
	}
	norm, err := normaliseOrigin(origin)
	if err != nil {
		return false // includes the opaque "null" origin
	}
	if len(p.allowed) == 0 {
		scheme, host, _ := strings.Cut(norm, "://")
		return host == normaliseHost(scheme, strings.ToLower(r.Host))
	}
	_, ok := p.allowed[norm]
	return ok
}

// normaliseOrigin reduces an origin to lower-case scheme://host[:port] with
// the scheme's default port dropped, the form browsers send, so that
// "https://App.example.com:443" in the config matches what arrives.
func normaliseOrigin(s string) (string, error) {
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
