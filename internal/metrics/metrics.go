// Package metrics exposes chatd's Prometheus metrics: the broker's own
// counters read from mochi's Info, and the chat pipeline's observations.
package metrics

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/presence"
	"github.com/mqchat/mqchat/services/push"
	"github.com/mqchat/mqchat/services/visibility"
	"github.com/mqchat/mqchat/store"
)

// Pipeline records what the chat pipeline does. It satisfies chat.Metrics.
type Pipeline struct {
	sends        *prometheus.CounterVec
	rejects      *prometheus.CounterVec
	commit       prometheus.Histogram
	commitErrors prometheus.Counter
	conflicts    prometheus.Counter
	batchSize    prometheus.Histogram
	deliveries   prometheus.Counter
	connects     *prometheus.CounterVec
	presence     *prometheus.CounterVec
}

var (
	_ chat.Metrics = (*Pipeline)(nil)
	_ push.Metrics = (*Push)(nil)

	_ visibility.Metrics = (*Presence)(nil)
	_ presence.Metrics   = (*Presence)(nil)
)

// NewPipeline registers the pipeline metrics on reg.
func NewPipeline(reg prometheus.Registerer) *Pipeline {
	p := &Pipeline{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Name: "messages_sent_total",
			Help: "Accepted sends by result: stored (new message) or duplicate (retry of a stored cmid).",
		}, []string{"result"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Name: "sends_rejected_total",
			Help: "Refused sends and publishes by reason.",
		}, []string{"reason"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mqchat", Name: "store_commit_seconds",
			Help:    "Latency of durable message commits (one per group-committed batch).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mqchat", Name: "store_commit_errors_total", Help: "Failed durable message commits.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mqchat", Name: "store_commit_conflicts_total",
			Help: "Message commits the store refused because another writer had stored one of their seqs or cmids (a chat changing owner between cluster nodes); not counted as errors. A refusal that a retried send explains (its cmid already stored) is not counted.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mqchat", Name: "store_commit_batch_messages",
			Help:    "Messages per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mqchat", Name: "deliveries_total",
			Help: "Messages published to recipients' inboxes after storage.",
		}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Name: "mqtt_connects_total",
			Help: "MQTT connection attempts by outcome.",
		}, []string{"outcome"}),
		presence: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Name: "presence_transitions_total",
			Help: "Device connections ended, by cause: will (lost without DISCONNECT), keep-alive, disconnect (clean DISCONNECT), takeover (same client id reconnected on this node), moved (same client id connected on another node).",
		}, []string{"cause"}),
	}
	reg.MustRegister(p.sends, p.rejects, p.commit, p.commitErrors, p.conflicts, p.batchSize, p.deliveries, p.connects, p.presence)
	return p
}

func (p *Pipeline) ObserveCommit(d time.Duration, messages int, err error) {
	if errors.Is(err, store.ErrConflict) {
		p.conflicts.Inc()
		return
	}
	if err != nil {
		p.commitErrors.Inc()
		return
	}
	p.commit.Observe(d.Seconds())
	p.batchSize.Observe(float64(messages))
}

func (p *Pipeline) ObserveSend(result string)     { p.sends.WithLabelValues(result).Inc() }
func (p *Pipeline) ObserveReject(code chat.Code)  { p.rejects.WithLabelValues(string(code)).Inc() }
func (p *Pipeline) ObserveDeliveries(n int)       { p.deliveries.Add(float64(n)) }
func (p *Pipeline) ObserveConnect(outcome string) { p.connects.WithLabelValues(outcome).Inc() }

func (p *Pipeline) ObservePresenceTransition(cause string) {
	p.presence.WithLabelValues(cause).Inc()
}

// RegisterPresence registers the online user and device gauges, read from
// stats at scrape time.
func RegisterPresence(reg prometheus.Registerer, stats func() (users, devices int)) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mqchat", Name: "presence_online_users",
			Help: "Users whose presence is online (grace periods included).",
		}, func() float64 { u, _ := stats(); return float64(u) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mqchat", Name: "presence_online_devices",
			Help: "Authenticated MQTT connections counted by presence.",
		}, func() float64 { _, d := stats(); return float64(d) }),
	)
}

// brokerCollector reads mochi's live counters at scrape time, so the broker
// pays nothing per message for metrics.
type brokerCollector struct {
	info  *system.Info
	descs []brokerMetric
}

type brokerMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*system.Info) int64
}

// NewBrokerCollector returns a collector over mochi's Info.
func NewBrokerCollector(info *system.Info) prometheus.Collector {
	m := func(name, help string, kind prometheus.ValueType, v func(*system.Info) int64) brokerMetric {
		return brokerMetric{prometheus.NewDesc("mqchat_broker_"+name, help, nil, nil), kind, v}
	}
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return &brokerCollector{info: info, descs: []brokerMetric{
		m("clients_connected", "Connected MQTT clients.", g, func(i *system.Info) int64 { return atomic.LoadInt64(&i.ClientsConnected) }),
		m("clients_disconnected", "Known sessions without a connection.", g, func(i *system.Info) int64 { return atomic.LoadInt64(&i.ClientsDisconnected) }),
		m("clients_maximum", "Most clients connected at once.", g, func(i *system.Info) int64 { return atomic.LoadInt64(&i.ClientsMaximum) }),
		m("subscriptions", "Active subscriptions.", g, func(i *system.Info) int64 { return atomic.LoadInt64(&i.Subscriptions) }),
		m("retained_messages", "Retained messages held.", g, func(i *system.Info) int64 { return atomic.LoadInt64(&i.Retained) }),
		m("inflight_messages", "QoS 1/2 messages awaiting acknowledgement.", g, func(i *system.Info) int64 { return atomic.LoadInt64(&i.Inflight) }),
		m("inflight_dropped_total", "QoS messages dropped because a session's inflight queue was full.", c, func(i *system.Info) int64 { return atomic.LoadInt64(&i.InflightDropped) }),
		m("messages_received_total", "PUBLISH packets received.", c, func(i *system.Info) int64 { return atomic.LoadInt64(&i.MessagesReceived) }),
		m("messages_sent_total", "PUBLISH packets sent.", c, func(i *system.Info) int64 { return atomic.LoadInt64(&i.MessagesSent) }),
		m("messages_dropped_total", "Publishes dropped because a client's write queue was full.", c, func(i *system.Info) int64 { return atomic.LoadInt64(&i.MessagesDropped) }),
		m("packets_received_total", "MQTT packets received.", c, func(i *system.Info) int64 { return atomic.LoadInt64(&i.PacketsReceived) }),
		m("packets_sent_total", "MQTT packets sent.", c, func(i *system.Info) int64 { return atomic.LoadInt64(&i.PacketsSent) }),
		m("bytes_received_total", "Bytes received from clients.", c, func(i *system.Info) int64 { return atomic.LoadInt64(&i.BytesReceived) }),
		m("bytes_sent_total", "Bytes sent to clients.", c, func(i *system.Info) int64 { return atomic.LoadInt64(&i.BytesSent) }),
	}}
}

func (b *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range b.descs {
		ch <- d.desc
	}
}

func (b *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range b.descs {
		ch <- prometheus.MustNewConstMetric(d.desc, d.kind, float64(d.value(b.info)))
	}
}

// counter is an unlabelled mqchat_{subsystem}_{name} counter.
func counter(subsystem, name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "mqchat", Subsystem: subsystem, Name: name, Help: help})
}

// Push records the push pipeline. It satisfies push.Metrics.
type Push struct {
	queued, collapsed, dropped, sent, tokensRemoved, skipped prometheus.Counter
	failed                                                   *prometheus.CounterVec
	latency                                                  prometheus.Histogram
}

// NewPush registers the push metrics on reg; depth is read at scrape time.
func NewPush(reg prometheus.Registerer, depth func() int) *Push {
	c := func(name, help string) prometheus.Counter { return counter("push", name, help) }
	p := &Push{
		queued:        c("queued_total", "Pushes queued (one per user and chat until a worker takes it)."),
		collapsed:     c("collapsed_total", "Messages folded into a push already queued for the same user and chat."),
		dropped:       c("dropped_total", "Pushes dropped because the queue was full."),
		sent:          c("sent_total", "Pushes accepted by the provider, counted per device."),
		tokensRemoved: c("tokens_removed_total", "Device push tokens deleted because the provider reported them unregistered or invalid."),
		skipped:       c("skipped_total", "Queued pushes not sent because a device of the user received or read the message while the push waited."),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "push", Name: "failed_total",
			Help: "Pushes not delivered, per device, by reason (unregistered, invalid_argument, unavailable, quota_exceeded, internal, network, no_devices, …); transient reasons count once retries are exhausted.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mqchat", Subsystem: "push", Name: "send_seconds",
			Help:    "Latency of one provider call (all of a user's devices).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	reg.MustRegister(p.queued, p.collapsed, p.dropped, p.sent, p.tokensRemoved, p.skipped, p.failed, p.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mqchat", Subsystem: "push", Name: "queue_depth", Help: "Pushes waiting for a worker.",
		}, func() float64 { return float64(depth()) }))
	return p
}

func (p *Push) ObservePushQueued()                 { p.queued.Inc() }
func (p *Push) ObservePushCollapsed()              { p.collapsed.Inc() }
func (p *Push) ObservePushDropped()                { p.dropped.Inc() }
func (p *Push) ObservePushSent(devices int)        { p.sent.Add(float64(devices)) }
func (p *Push) ObservePushFailed(reason string)    { p.failed.WithLabelValues(reason).Inc() }
func (p *Push) ObservePushTokenRemoved()           { p.tokensRemoved.Inc() }
func (p *Push) ObservePushLatency(d time.Duration) { p.latency.Observe(d.Seconds()) }
func (p *Push) ObservePushSkipped()                { p.skipped.Inc() }

// Receipts records the receipts coalescer. It satisfies receipts.Metrics.
type Receipts struct {
	flush         prometheus.Histogram
	moves, events prometheus.Counter
	dropped       *prometheus.CounterVec
	storeFailures prometheus.Counter
}

// NewReceipts registers the receipt metrics on reg.
func NewReceipts(reg prometheus.Registerer) *Receipts {
	c := func(name, help string) prometheus.Counter { return counter("receipts", name, help) }
	r := &Receipts{
		flush: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mqchat", Subsystem: "receipts", Name: "flush_seconds",
			Help:    "Duration of one receipts flush: storing the interval's cursor moves and publishing their events.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		moves:         c("moves_total", "Delivered and read cursor moves stored and announced."),
		events:        c("events_total", "Receipt events published to members' devices."),
		storeFailures: c("store_errors_total", "Cursor moves the store refused (logged; the next receipt repeats them)."),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "receipts", Name: "dropped_total",
			Help: "Cursor moves (kind=move) or events (kind=event) dropped because one interval had too many; clients recover cursors from the chat list.",
		}, []string{"kind"}),
	}
	reg.MustRegister(r.flush, r.moves, r.events, r.storeFailures, r.dropped)
	return r
}

func (r *Receipts) ObserveReceiptsFlush(d time.Duration, moves, events int) {
	r.flush.Observe(d.Seconds())
	r.moves.Add(float64(moves))
	r.events.Add(float64(events))
}

func (r *Receipts) ObserveReceiptsDropped(kind string, n int) {
	r.dropped.WithLabelValues(kind).Add(float64(n))
}

func (r *Receipts) ObserveReceiptsError() { r.storeFailures.Inc() }

// Outbound records the per-connection outbound queues. It satisfies
// broker.OutboundMetrics (checked in internal/app: broker's tests import
// this package).
type Outbound struct {
	cutOff  *prometheus.CounterVec
	dropped prometheus.Counter
}

// NewOutbound registers the outbound queue metrics on reg.
func NewOutbound(reg prometheus.Registerer) *Outbound {
	o := &Outbound{
		cutOff: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "outbound", Name: "disconnects_total",
			Help: "Clients disconnected for not reading what they are sent, by reason: stalled (queue full or socket taking no bytes for mqtt.stall_timeout) or overflow (a packet had to be dropped).",
		}, []string{"reason"}),
		dropped: counter("outbound", "dropped_total", "Packets not queued for a client because its outbound queue was full (the client is then disconnected; the messages stay stored for sync)."),
	}
	reg.MustRegister(o.cutOff, o.dropped)
	return o
}

func (o *Outbound) ClientCutOff(reason string) { o.cutOff.WithLabelValues(reason).Inc() }
func (o *Outbound) PublishDropped()            { o.dropped.Inc() }

// RegisterOutboundQueued registers the gauge of bytes waiting in every
// connection's outbound queue, read from queued at scrape time.
func RegisterOutboundQueued(reg prometheus.Registerer, queued func() int64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "mqchat", Subsystem: "outbound", Name: "queued_bytes",
		Help: "Encoded bytes waiting for clients' sockets, over every connection.",
	}, func() float64 { return float64(queued()) }))
}

// Limits counts refusals by the per-client or per-user limit that caused
// them (mqchat_limit_refusals_total{limit}). It satisfies
// hooks.LimitObserver, broker.LimitObserver and groups.LimitObserver.
type Limits struct {
	refusals *prometheus.CounterVec
}

// NewLimits registers the limit refusal counter on reg, with every limit
// in limits present at 0 so dashboards and alerts see it before the first
// refusal.
func NewLimits(reg prometheus.Registerer, limits ...string) *Limits {
	l := &Limits{refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mqchat", Name: "limit_refusals_total",
		Help: "Requests refused (or, for restored_subscriptions, session subscriptions dropped at start-up) because a per-client or per-user limit was reached, by limit.",
	}, []string{"limit"})}
	for _, name := range limits {
		l.refusals.WithLabelValues(name)
	}
	reg.MustRegister(l.refusals)
	return l
}

func (l *Limits) ObserveLimitRefusals(limit string, n int) {
	l.refusals.WithLabelValues(limit).Add(float64(n))
}

// ACL counts what the MQTT ACL refuses to read. It satisfies
// hooks.ACLObserver.
type ACL struct{ denied *prometheus.CounterVec }

// NewACL registers the ACL metrics on reg.
func NewACL(reg prometheus.Registerer) *ACL {
	a := &ACL{denied: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mqchat", Subsystem: "mqtt", Name: "acl_denied_total",
		Help: "SUBSCRIBE filters and deliveries the ACL refused (mochi asks the same question for both), by client: user, or anonymous (e.g. a # subscriber kept out of users/ and presence/).",
	}, []string{"client"})}
	reg.MustRegister(a.denied)
	return a
}

func (a *ACL) ObserveACLDenied(anonymous bool) {
	client := "user"
	if anonymous {
		client = "anonymous"
	}
	a.denied.WithLabelValues(client).Inc()
}

// Presence records the presence fan-out: the publishing queue and the
// visibility index (who may see whose presence). It satisfies
// presence.Metrics (transitions go to the Pipeline's counter, as before)
// and visibility.Metrics.
type Presence struct {
	*Pipeline
	coalesced     prometheus.Counter
	checks        *prometheus.CounterVec
	invalidations *prometheus.CounterVec
}

// NewPresence registers the presence fan-out metrics on reg; cached
// (visibility answers held) and pending (users whose change waits to be
// published) are read at scrape time.
func NewPresence(reg prometheus.Registerer, p *Pipeline, cached, pending func() int) *Presence {
	v := &Presence{
		Pipeline: p,
		coalesced: counter("presence", "coalesced_total",
			"Presence changes replaced by a newer change of the same user before they were published (a user changing faster than presence.publish_interval)."),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "presence", Name: "visibility_checks_total",
			Help: "Questions 'may this user see that one's presence' (subscriptions, every presence delivery, REST), by cache=hit|miss and answer=allowed|denied. A miss reads the store.",
		}, []string{"cache", "answer"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "presence", Name: "visibility_invalidations_total",
			Help: "Cached visibility answers made stale by membership changes: kind=user (a user joined or left a group, or a 1:1 chat began) or kind=group (a group was deleted).",
		}, []string{"kind"}),
	}
	reg.MustRegister(v.coalesced, v.checks, v.invalidations,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mqchat", Subsystem: "presence", Name: "visibility_cached_answers",
			Help: "Visibility answers held in memory (bounded by presence.visibility_cache_size plus a quarter of it for denials).",
		}, func() float64 { return float64(cached()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mqchat", Subsystem: "presence", Name: "publish_pending",
			Help: "Users whose newest presence change waits for a publishing worker (at most one per user).",
		}, func() float64 { return float64(pending()) }),
	)
	return v
}

func (v *Presence) ObservePresenceCoalesced() { v.coalesced.Inc() }

func (v *Presence) ObserveVisibility(cached, allowed bool) {
	cache, answer := "miss", "denied"
	if cached {
		cache = "hit"
	}
	if allowed {
		answer = "allowed"
	}
	v.checks.WithLabelValues(cache, answer).Inc()
}

func (v *Presence) ObserveVisibilityInvalidation(kind string, n int) {
	v.invalidations.WithLabelValues(kind).Add(float64(n))
}
