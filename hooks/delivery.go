package hooks

import (
	"hash/maphash"
	"math"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/broker"
)

// DeliveryReceiver takes the inbox messages a device acknowledged. It is
// called on broker goroutines and must not block (services/receipts).
type DeliveryReceiver interface {
	Delivered(uid, chat string, seq uint64)
}

// DeviceAckReceiver takes a device's acknowledgement of its device
// messages up to seq (services/devicemsg). Called on broker goroutines; it
// must not block.
type DeviceAckReceiver interface {
	Acked(uid, device string, seq uint64)
}

// DeliveryOptions configures the Delivery hook.
type DeliveryOptions struct {
	Receiver DeliveryReceiver
	// Devices, when set, takes PUBACKs of device inbox messages.
	Devices DeviceAckReceiver
	// MaxInflight bounds the entries remembered per client: the broker's
	// own inflight cap (mqtt.max_inflight). Default 1024.
	MaxInflight int
}

// Delivery turns a device's PUBACK of an inbox message into a delivered
// cursor move. mochi hands OnQosPublish the outgoing packet (packet id and
// payload) but OnQosComplete only the client's PUBACK (packet id), so the
// hook remembers (client id, packet id) → (chat, seq) in between.
//
// Entries are keyed by client id, not by connection: a kept session's
// inflight messages outlive the connection and are resent (and passed to
// OnQosPublish again) on reconnect. They are dropped when mochi drops the
// inflight message, when a clean session disconnects and when a kept
// session expires, and never exceed MaxInflight per client.
//
// Every callback runs on a broker goroutine: each is O(1) under a striped
// mutex and does no I/O.
type Delivery struct {
	mqtt.HookBase
	recv   DeliveryReceiver
	dev    DeviceAckReceiver
	limit  int
	seed   maphash.Seed
	shards [deliveryShards]deliveryShard
}

const deliveryShards = 64

type deliveryShard struct {
	mu      sync.Mutex
	clients map[string]*clientInflight
}

type clientInflight struct {
	uid  string
	refs map[uint16]inboxRef
}

// inboxRef is a chat message (chat, seq) or, with chat "", a device
// message (seq) of the client's own device inbox.
type inboxRef struct {
	chat string
	seq  uint64
}

// NewDelivery returns the hook.
func NewDelivery(opts DeliveryOptions) *Delivery {
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 1024
	}
	h := &Delivery{recv: opts.Receiver, dev: opts.Devices, limit: opts.MaxInflight, seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].clients = make(map[string]*clientInflight)
	}
	return h
}

func (h *Delivery) ID() string { return "mqchat-delivery" }

func (h *Delivery) Provides(b byte) bool {
	switch b {
	case mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

func (h *Delivery) shard(clientID string) *deliveryShard {
	return &h.shards[maphash.String(h.seed, clientID)%deliveryShards]
}

// OnQosPublish remembers which chat message a QoS 1 inbox publish carries.
// It never changes or fails the publish.
func (h *Delivery) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if cl.Net.Inline || pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos != 1 || pk.PacketID == 0 {
		return
	}
	uid := cl.Properties.Username
	if len(uid) == 0 {
		return
	}
	chatID, seq, ok := h.inboxRefOf(uid, cl.ID, pk)
	if !ok {
		return
	}
	sh := h.shard(cl.ID)
	sh.mu.Lock()
	c := sh.clients[cl.ID]
	if c == nil {
		c = &clientInflight{uid: string(uid), refs: make(map[uint16]inboxRef)}
		sh.clients[cl.ID] = c
	}
	if _, ok := c.refs[pk.PacketID]; !ok && len(c.refs) >= h.limit {
		// More than mochi keeps in flight: some entry is stale (its drop
		// went unseen). Forget any one.
		for id := range c.refs {
			delete(c.refs, id)
			break
		}
	}
	c.refs[pk.PacketID] = inboxRef{chat: chatID, seq: seq}
	sh.mu.Unlock()
}

// OnQosComplete reports the acknowledged inbox message as delivered.
func (h *Delivery) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Puback {
		return // QoS 2 flows: not inbox deliveries
	}
	if broker.InboundAck(pk) {
		return // the broker acknowledging the client's own publish with this id
	}
	sh := h.shard(cl.ID)
	sh.mu.Lock()
	c := sh.clients[cl.ID]
	if c == nil {
		sh.mu.Unlock()
		return
	}
	ref, ok := c.refs[pk.PacketID]
	uid := c.uid
	delete(c.refs, pk.PacketID)
	sh.mu.Unlock()
	switch {
	case !ok:
	case ref.chat == "":
		if device, valid := clientDevice(uid, cl.ID); valid && h.dev != nil {
			h.dev.Acked(uid, device, ref.seq)
		}
	case h.recv != nil:
		h.recv.Delivered(uid, ref.chat, ref.seq)
	}
}

// inboxRefOf reads which message an outgoing QoS 1 publish to the client
// carries: a chat inbox message (chat, seq), a device message of its own
// device inbox (chat "", seq), or neither.
func (h *Delivery) inboxRefOf(uid []byte, clientID string, pk packets.Packet) (chatID string, seq uint64, ok bool) {
	if isInboxPublish(uid, pk) {
		if chatID, seq, ok = parseDelivered(pk.Payload); ok || pk.TopicName != "" {
			return chatID, seq, ok
		}
		// An aliased publish that is no chat message may be a device one.
	} else if h.dev == nil || !isDeviceInboxPublish(uid, clientID, pk.TopicName) {
		return "", 0, false
	}
	if h.dev == nil {
		return "", 0, false
	}
	seq, ok = parseDeviceDelivered(pk.Payload)
	return "", seq, ok
}

// OnQosDropped forgets an inflight message mochi gave up on.
func (h *Delivery) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	sh := h.shard(cl.ID)
	sh.mu.Lock()
	if c := sh.clients[cl.ID]; c != nil {
		delete(c.refs, pk.PacketID)
	}
	sh.mu.Unlock()
}

// OnDisconnect forgets a clean session's entries; a kept session keeps them
// for its resends after reconnecting. A client taken over by a new
// connection with the same id leaves the entries to the new one (mochi
// reports its dropped inflights through OnQosDropped).
func (h *Delivery) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	sh := h.shard(cl.ID)
	sh.mu.Lock()
	if c := sh.clients[cl.ID]; c != nil && (expire && !cl.IsTakenOver() || len(c.refs) == 0) {
		delete(sh.clients, cl.ID)
	}
	sh.mu.Unlock()
}

// OnClientExpired forgets an expired kept session's entries.
func (h *Delivery) OnClientExpired(cl *mqtt.Client) {
	sh := h.shard(cl.ID)
	sh.mu.Lock()
	delete(sh.clients, cl.ID)
	sh.mu.Unlock()
}

// tracked reports the entries held for a client (tests).
func (h *Delivery) tracked(clientID string) (n int, known bool) {
	sh := h.shard(clientID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.clients[clientID]
	if c == nil {
		return 0, false
	}
	return len(c.refs), true
}

// isInboxPublish reports whether pk goes to users/{uid}/inbox. A v5 client
// with topic aliases may get the packet with an empty topic and an alias;
// then a server-originated publish is accepted and the payload's shape
// decides (only inbox messages start with a chat and a seq).
func isInboxPublish(uid []byte, pk packets.Packet) bool {
	t := pk.TopicName
	if t == "" {
		return pk.Properties.TopicAlias > 0 && pk.Origin == mqtt.InlineClientId
	}
	const prefix, suffix = "users/", "/" + LeafInbox
	return len(t) == len(prefix)+len(uid)+len(suffix) &&
		t[:len(prefix)] == prefix &&
		t[len(prefix):len(prefix)+len(uid)] == string(uid) &&
		t[len(prefix)+len(uid):] == suffix
}

// isDeviceInboxPublish reports whether topic is the device inbox of the
// client's own device, users/{uid}/devices/{device}/inbox with clientID
// {uid}/{device}, without allocating.
func isDeviceInboxPublish(uid []byte, clientID, topic string) bool {
	const prefix, mid, suffix = "users/", "/" + LeafDevices + "/", "/" + LeafInbox
	n := len(uid)
	if len(clientID) <= n+1 || clientID[:n] != string(uid) || clientID[n] != '/' {
		return false
	}
	device := clientID[n+1:]
	return len(topic) == len(prefix)+len(uid)+len(mid)+len(device)+len(suffix) &&
		topic[:len(prefix)] == prefix &&
		topic[len(prefix):len(prefix)+len(uid)] == string(uid) &&
		topic[len(prefix)+len(uid):len(prefix)+len(uid)+len(mid)] == mid &&
		topic[len(prefix)+len(uid)+len(mid):len(topic)-len(suffix)] == device &&
		topic[len(topic)-len(suffix):] == suffix
}

// parseDeviceDelivered reads the seq from the start of a device message,
// {"seq":N,…} (devicemsg.View always encodes it first), as parseDelivered
// reads an inbox message.
func parseDeviceDelivered(p []byte) (seq uint64, ok bool) {
	s := jsonScan{p: p}
	if !s.lit("{") || !s.lit(`"seq"`) || !s.lit(":") {
		return 0, false
	}
	seq, ok = s.uint()
	if !ok || seq == 0 {
		return 0, false
	}
	s.ws()
	if s.i >= len(p) || p[s.i] != ',' && p[s.i] != '}' {
		return 0, false
	}
	return seq, true
}

// maxChatID bounds the chat ids parseDelivered accepts.
const maxChatID = 256

// parseDelivered reads the chat and seq from the start of an inbox message,
// {"chat":"…","seq":N,…} (chat.Delivered always encodes them first). It
// accepts JSON whitespace, refuses anything else, never panics and does not
// allocate beyond the chat id.
func parseDelivered(p []byte) (chatID string, seq uint64, ok bool) {
	s := jsonScan{p: p}
	if !s.lit("{") || !s.lit(`"chat"`) || !s.lit(":") {
		return "", 0, false
	}
	raw, ok := s.plainString()
	if !ok || !s.lit(",") || !s.lit(`"seq"`) || !s.lit(":") {
		return "", 0, false
	}
	seq, ok = s.uint()
	if !ok || seq == 0 {
		return "", 0, false
	}
	s.ws()
	if s.i >= len(p) || p[s.i] != ',' && p[s.i] != '}' {
		return "", 0, false
	}
	return string(raw), seq, true
}

type jsonScan struct {
	p []byte
	i int
}

func (s *jsonScan) ws() {
	for s.i < len(s.p) {
		switch s.p[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// lit skips whitespace and then the literal l.
func (s *jsonScan) lit(l string) bool {
	s.ws()
	if len(s.p)-s.i < len(l) || string(s.p[s.i:s.i+len(l)]) != l {
		return false
	}
	s.i += len(l)
	return true
}

// plainString reads a non-empty JSON string of printable ASCII without
// escapes: every chat id is one.
func (s *jsonScan) plainString() ([]byte, bool) {
	s.ws()
	if s.i >= len(s.p) || s.p[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.p) && j-start <= maxChatID; j++ {
		switch c := s.p[j]; {
		case c == '"':
			if j == start {
				return nil, false
			}
			s.i = j + 1
			return s.p[start:j], true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, false
		}
	}
	return nil, false
}

// uint reads a JSON non-negative integer that fits a uint64.
func (s *jsonScan) uint() (uint64, bool) {
	s.ws()
	start := s.i
	var v uint64
	for s.i < len(s.p) && s.p[s.i] >= '0' && s.p[s.i] <= '9' {
		d := uint64(s.p[s.i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
		s.i++
	}
	n := s.i - start
	if n == 0 || n > 1 && s.p[start] == '0' {
		return 0, false
	}
	if s.i < len(s.p) && (s.p[s.i] == '.' || s.p[s.i] == 'e' || s.p[s.i] == 'E') {
		return 0, false
	}
	return v, true
}

// Receivers hands each acknowledgement to every receiver, in order (the
// receipts coalescer and the push tracker).
type Receivers []DeliveryReceiver

func (rs Receivers) Delivered(uid, chat string, seq uint64) {
	for _, r := range rs {
		r.Delivered(uid, chat, seq)
	}
}
