package metrics

import "github.com/prometheus/client_golang/prometheus"

// Retention counts what the retention purger removes and times its passes.
type Retention struct {
	purged prometheus.Counter
	pass   prometheus.Histogram
}

// NewRetention registers the retention metrics on reg.
func NewRetention(reg prometheus.Registerer) *Retention {
	r := &Retention{
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "retention", Name: "purged_total",
			Help: "Messages purged because their chat's retention period passed.",
		}),
		pass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mqchat", Subsystem: "retention", Name: "pass_seconds",
			Help:    "Duration of one retention pass over every chat with a retention period.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	reg.MustRegister(r.purged, r.pass)
	return r
}

func (r *Retention) ObservePurged(n int) { r.purged.Add(float64(n)) }

func (r *Retention) ObservePass(seconds float64) { r.pass.Observe(seconds) }
