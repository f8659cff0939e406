package metrics

import "github.com/prometheus/client_golang/prometheus"

// Accounts counts the account safeguards: logins refused by the
// per-account throttle, and account lifecycle changes.
type Accounts struct {
	throttled prometheus.Counter
	changes   *prometheus.CounterVec
}

// NewAccounts registers the account metrics on reg.
func NewAccounts(reg prometheus.Registerer) *Accounts {
	a := &Accounts{
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "auth", Name: "login_throttled_total",
			Help: "Login attempts refused with 429 because their username had too many consecutive failures (per-account backoff).",
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "accounts", Name: "changes_total",
			Help: "Account lifecycle changes, by op: disabled, enabled, deleted.",
		}, []string{"op"}),
	}
	reg.MustRegister(a.throttled, a.changes)
	return a
}

func (a *Accounts) LoginThrottled() { a.throttled.Inc() }

func (a *Accounts) AccountChanged(op string) { a.changes.WithLabelValues(op).Inc() }
