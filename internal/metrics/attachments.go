package metrics

import "github.com/prometheus/client_golang/prometheus"

// Attachments counts uploads. It satisfies attachments.Metrics.
type Attachments struct {
	bytes   prometheus.Counter
	uploads *prometheus.CounterVec
}

// NewAttachments registers the upload metrics on reg, every result present
// at 0.
func NewAttachments(reg prometheus.Registerer) *Attachments {
	m := &Attachments{
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "attachments", Name: "uploaded_bytes_total",
			Help: "Bytes of attachments stored (uploads and confirmed direct uploads).",
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Name: "attachments_total",
			Help: "Attachment uploads by result: stored, too_large (past attachments.max_bytes), quota (past attachments.daily_bytes) or error.",
		}, []string{"result"}),
	}
	for _, r := range []string{"stored", "too_large", "quota", "error"} {
		m.uploads.WithLabelValues(r)
	}
	reg.MustRegister(m.bytes, m.uploads)
	return m
}

func (m *Attachments) ObserveUpload(result string, bytes int64) {
	m.uploads.WithLabelValues(result).Inc()
	if bytes > 0 {
		m.bytes.Add(float64(bytes))
	}
}
