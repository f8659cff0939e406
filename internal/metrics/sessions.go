package metrics

import "github.com/prometheus/client_golang/prometheus"

// Sessions counts revoked login sessions and the MQTT connections closed
// for their session or token. It satisfies auth.Metrics and
// hooks.SessionMetrics.
type Sessions struct {
	revoked *prometheus.CounterVec
	closed  *prometheus.CounterVec
}

// NewSessions registers the session metrics on reg.
func NewSessions(reg prometheus.Registerer) *Sessions {
	s := &Sessions{
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "auth", Name: "sessions_revoked_total",
			Help: "Login sessions revoked, by reason: logout, logout_all (every session of a user), password_change (the user's other sessions), refresh_reuse (a used-up refresh token presented again: a copied token), evicted (the user's least recently used session past the per-user limit).",
		}, []string{"reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "mqtt", Name: "connections_closed_total",
			Help: "MQTT connections the server closed, by reason: session_revoked (DISCONNECT 0x98) or token_expired (0xA0).",
		}, []string{"reason"}),
	}
	for _, r := range []string{"logout", "logout_all", "password_change", "refresh_reuse", "evicted"} {
		s.revoked.WithLabelValues(r)
	}
	for _, r := range []string{"session_revoked", "token_expired"} {
		s.closed.WithLabelValues(r)
	}
	reg.MustRegister(s.revoked, s.closed)
	return s
}

func (s *Sessions) SessionsRevoked(reason string, n int) {
	s.revoked.WithLabelValues(reason).Add(float64(n))
}

func (s *Sessions) ConnectionClosed(reason string) { s.closed.WithLabelValues(reason).Inc() }
