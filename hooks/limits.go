package hooks

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/services/chat"
)

// LimitObserver counts refusals by the limit that caused them.
type LimitObserver interface{ ObserveLimitRefusals(limit string, n int) }

// EventPublisher publishes v on uid's events topic (Outbox).
type EventPublisher interface{ Event(uid string, v any) }

// The limits the Limits hook enforces, as LimitObserver names them.
const (
	LimitTopicAlias        = "topic_alias"         // alias above the Topic Alias Maximum
	LimitTopicBytes        = "topic_bytes"         // aliased topic or filter longer than MaxTopicBytes
	LimitSubscriptions     = "subscriptions"       // filters held by one session
	LimitSubscribeFilters  = "subscribe_filters"   // filters in one SUBSCRIBE
	LimitUserConnections   = "user_connections"    // connections of one user
	LimitDeviceConnectRate = "device_connect_rate" // CONNECTs of one client id
)

// codeTopicAliasInvalid is the error event code of a topic alias above the
// maximum: a malformed request, whose reason code (0x94) says which part;
// the other refusals use chat's quota_exceeded.
const codeTopicAliasInvalid = string(chat.CodeInvalid)

// LimitOptions configures the Limits hook. A zero limit is no limit.
type LimitOptions struct {
	// Server is the broker: its TopicAliasMaximum capability is the alias
	// limit, and clients over a limit are disconnected through it.
	Server  *mqtt.Server
	Events  EventPublisher // error events to users; nil = none
	Logger  *slog.Logger
	Metrics LimitObserver // nil = not counted

	MaxTopicBytes          int // longest topic a client may alias or subscribe to
	MaxSubscriptions       int // filters one session may hold
	MaxFiltersPerSubscribe int // filters granted from one SUBSCRIBE
	MaxConnectionsPerUser  int // connections one user may hold
	// DeviceConnects takes one token per CONNECT, keyed by client id
	// ({user}/{device}); nil = unlimited.
	DeviceConnects Limiter
}

// Limits holds each client to per-connection and per-user limits, so that
// no client can take memory or work from the others:
//
//   - topic aliases (aliases.go): mochi enforces the count (the server's
//     Topic Alias Maximum, which this hook announces in CONNACK since mochi
//     v2.7.9 does not); the hook bounds the length of aliased topics, so a
//     connection's alias table is at most maximum × MaxTopicBytes;
//   - subscriptions (subscriptions.go): per session and per SUBSCRIBE, and
//     the length of a filter, refused per filter with SUBACK 0x97;
//   - connections (connections.go): per user and CONNECTs per device,
//     decided by the Auth hook's OnConnect through AdmitConnect.
//
// Each refusal is counted and, for users, explained on users/{uid}/events.
type Limits struct {
	mqtt.HookBase
	opts     LimitOptions
	aliasMax uint16
	// refused carries, per client, the SUBSCRIBE filter indices refused for
	// a limit from OnSubscribe to OnSubscribed (subscriptions.go).
	refused sync.Map
	conns   [connShards]connShard // connections.go
}

// NewLimits returns the hook.
func NewLimits(opts LimitOptions) *Limits {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Limits{opts: opts, aliasMax: opts.Server.Options.Capabilities.TopicAliasMaximum}
	for i := range h.conns {
		h.conns[i].users = make(map[string]map[string]*mqtt.Client)
	}
	return h
}

func (h *Limits) ID() string { return "mqchat-limits" }

func (h *Limits) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnSubscribe, mqtt.OnSubscribed,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnDisconnect forgets what the hook keeps per connection.
func (h *Limits) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.refused.Delete(cl)
	h.connectionGone(cl)
}

// LimitNames lists the limits the hook counts, for metrics to show at 0.
func LimitNames() []string {
	return []string{LimitTopicAlias, LimitTopicBytes, LimitSubscriptions, LimitSubscribeFilters,
		LimitUserConnections, LimitDeviceConnectRate}
}

// count records n refusals for limit.
func (h *Limits) count(limit string, n int) {
	if h.opts.Metrics != nil {
		h.opts.Metrics.ObserveLimitRefusals(limit, n)
	}
}

// tell sends a user the error event of a refusal; topic is echoed only when
// it is within MaxTopicBytes, never a client's oversized string.
func (h *Limits) tell(cl *mqtt.Client, code string, rc packets.Code, topic, msg string) {
	uid := string(cl.Properties.Username)
	h.opts.Logger.Debug("limit refusal", "client", cl.ID, "code", code, "reason_code", rc.Code, "message", msg)
	if uid == "" || h.opts.Events == nil {
		return
	}
	if h.opts.MaxTopicBytes > 0 && len(topic) > h.opts.MaxTopicBytes {
		topic = ""
	}
	h.opts.Events.Event(uid, ErrorEvent{Type: "error", Code: code, ReasonCode: rc.Code, Message: msg, Topic: topic})
}

// quota is the MQTT 5 code of a quota refusal, with msg as the reason
// string a DISCONNECT or CONNACK carries.
func quota(msg string) packets.Code {
	return packets.Code{Code: packets.ErrQuotaExceeded.Code, Reason: msg}
}

// OwnFilter reports whether filter lies in the users/{uid}/ subtree of the
// user whose client id ({uid}/{device}) is clientID: the filters a restored
// session over the subscription limit keeps first.
func OwnFilter(clientID, filter string) bool {
	uid, _, ok := strings.Cut(clientID, "/")
	return ok && uid != "" && strings.HasPrefix(filter, "users/"+uid+"/")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
