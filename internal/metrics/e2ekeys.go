package metrics

import "github.com/prometheus/client_golang/prometheus"

// E2EKeys counts the key directory's one-time prekey claims. It satisfies
// e2ekeys.Metrics.
type E2EKeys struct{ claimed *prometheus.CounterVec }

// NewE2EKeys registers the key directory metrics on reg, both results
// present at 0.
func NewE2EKeys(reg prometheus.Registerer) *E2EKeys {
	k := &E2EKeys{claimed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mqchat", Subsystem: "e2e", Name: "prekeys_claimed_total",
		Help: "Device bundles handed out by key claims, by result: key (with a one-time prekey) or none (the device had none left; the requester falls back to the signed prekey).",
	}, []string{"result"})}
	k.claimed.WithLabelValues("key")
	k.claimed.WithLabelValues("none")
	reg.MustRegister(k.claimed)
	return k
}

func (k *E2EKeys) ObservePrekeyClaim(result string) { k.claimed.WithLabelValues(result).Inc() }
