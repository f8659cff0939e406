package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cluster observes a node's membership and its traffic with the other
// nodes (cluster.Metrics). Registered only in cluster mode.
type Cluster struct {
	nodes, member, natsUp, userSubs prometheus.Gauge
	fenced, ownedSends, resyncs     prometheus.Counter
	forwards                        *prometheus.CounterVec
	forwardSeconds                  prometheus.Histogram
	relays                          *prometheus.CounterVec
	takeovers                       *prometheus.CounterVec
}

// NewCluster registers the cluster metrics on reg, every label value
// present at 0.
func NewCluster(reg prometheus.Registerer) *Cluster {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "mqchat", Subsystem: "cluster", Name: name, Help: help})
	}
	c := &Cluster{
		nodes:      g("nodes", "Live nodes in this node's membership view, itself included."),
		member:     g("member", "1 while this node holds its membership lease (it may commit sends and serve clients), else 0."),
		natsUp:     g("nats_connected", "1 while the NATS connection is up, else 0."),
		userSubs:   g("user_subscriptions", "Users whose per-user subject this node subscribes to: users with a session on this node."),
		fenced:     counter("cluster", "fenced_total", "Times this node lost its membership lease, refused sends and dropped its clients."),
		ownedSends: counter("cluster", "owned_sends_total", "Sends received from other nodes for chats this node owns."),
		resyncs:    counter("cluster", "presence_resyncs_total", "Presence snapshots pulled from other nodes (a node joined or restarted, or broadcasts were missed)."),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "cluster", Name: "forwards_total",
			Help: "Sends this node forwarded to the node owning their chat, by result: ok (answered, whatever the answer), error (unreachable), timeout.",
		}, []string{"result"}),
		forwardSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mqchat", Subsystem: "cluster", Name: "forward_seconds",
			Help:    "Round trip of a forwarded send: from this node to the owner's durable commit and back.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		relays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "cluster", Name: "relays_total",
			Help: "Deliveries relayed on per-user subjects: out (sent for users' sessions on other nodes) and in (received for sessions here), by kind (inbox, events).",
		}, []string{"direction", "kind"}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "cluster", Name: "takeovers_total",
			Help: "Cross-node takeovers this node asked for when a device connected: closed (the old connection on another node was closed), none (no other node had it), error.",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "error", "timeout"} {
		c.forwards.WithLabelValues(r)
	}
	for _, d := range []string{"in", "out"} {
		for _, k := range []string{"inbox", "events"} {
			c.relays.WithLabelValues(d, k)
		}
	}
	for _, r := range []string{"closed", "none", "error"} {
		c.takeovers.WithLabelValues(r)
	}
	reg.MustRegister(c.nodes, c.member, c.natsUp, c.userSubs, c.fenced, c.ownedSends, c.resyncs,
		c.forwards, c.forwardSeconds, c.relays, c.takeovers)
	return c
}

func (c *Cluster) SetNodes(n int)           { c.nodes.Set(float64(n)) }
func (c *Cluster) SetMember(ok bool)        { c.member.Set(boolValue(ok)) }
func (c *Cluster) SetNATSConnected(ok bool) { c.natsUp.Set(boolValue(ok)) }
func (c *Cluster) Fenced()                  { c.fenced.Inc() }
func (c *Cluster) OwnedSend()               { c.ownedSends.Inc() }
func (c *Cluster) PresenceResync()          { c.resyncs.Inc() }
func (c *Cluster) SetUserSubscriptions(n int) {
	c.userSubs.Set(float64(n))
}
func (c *Cluster) Forwarded(result string, d time.Duration) {
	c.forwards.WithLabelValues(result).Inc()
	c.forwardSeconds.Observe(d.Seconds())
}
func (c *Cluster) Relayed(direction, kind string) { c.relays.WithLabelValues(direction, kind).Inc() }
func (c *Cluster) Takeover(result string)         { c.takeovers.WithLabelValues(result).Inc() }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
