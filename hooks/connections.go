package hooks

import (
	"fmt"
	"hash/maphash"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// connShards stripes the connection registry, so that users connecting at
// once rarely wait on each other. Nothing under a shard's lock does I/O.
const connShards = 64

// connShard maps a user to its client ids, each to the newest connection
// admitted or established under it. A device reconnecting with its client
// id replaces its entry, so a takeover never counts twice; entries of
// connections that closed without OnDisconnect (mochi skips it when the
// CONNACK write fails) are pruned whenever the user's count matters.
type connShard struct {
	mu    sync.Mutex
	users map[string]map[string]*mqtt.Client
}

var connSeed = maphash.MakeSeed()

func (h *Limits) shard(uid string) *connShard {
	return &h.conns[maphash.String(connSeed, uid)%connShards]
}

// ConnectRefusal is a CONNECT refused for a limit, with the CONNACK code
// for each protocol version.
type ConnectRefusal struct {
	Limit  string
	V5, V3 packets.Code
}

// AdmitConnect decides, for an authenticated user's CONNECT, the per-device
// connect rate and the per-user connection count, and reserves the
// connection's place. It runs in the Auth hook's OnConnect, before mochi
// takes over an older connection with the same client id, so the place is
// taken before the CONNACK goes out: connections racing each other cannot
// all slip under the limit.
func (h *Limits) AdmitConnect(cl *mqtt.Client, uid string) (ConnectRefusal, bool) {
	if uid == "" {
		return ConnectRefusal{}, true // anonymous clients are no user's
	}
	if l := h.opts.DeviceConnects; l != nil && !l.Allow(cl.ID) {
		h.count(LimitDeviceConnectRate, 1)
		return ConnectRefusal{
			Limit: LimitDeviceConnectRate,
			V5:    packets.Code{Code: packets.ErrConnectionRateExceeded.Code, Reason: "this device connects too often; wait and retry"},
			V3:    packets.Err3ServerUnavailable,
		}, false
	}
	max := h.opts.MaxConnectionsPerUser
	if max <= 0 {
		return ConnectRefusal{}, true
	}
	sh := h.shard(uid)
	sh.mu.Lock()
	devs := sh.users[uid]
	_, replaces := devs[cl.ID]
	if !replaces && len(devs) >= max {
		pruneClosed(devs)
	}
	if !replaces && len(devs) >= max {
		sh.mu.Unlock()
		h.count(LimitUserConnections, 1)
		return ConnectRefusal{
			Limit: LimitUserConnections,
			V5:    quota(fmt.Sprintf("this user already has %d connections, the most allowed", max)),
			V3:    packets.Err3ServerUnavailable,
		}, false
	}
	if devs == nil {
		devs = make(map[string]*mqtt.Client)
		sh.users[uid] = devs
	}
	devs[cl.ID] = cl
	sh.mu.Unlock()
	return ConnectRefusal{}, true
}

// OnSessionEstablished confirms the connection's place once mochi has
// taken over any older connection with the same client id. Two CONNECTs
// with one client id racing each other both pass AdmitConnect, but the one
// mochi lets win may be the one admitted first, whose entry the other
// replaced: it takes its entry back here. If the loser's OnDisconnect had
// already removed the entry and the user's other connections took the
// place meanwhile, this connection is over the limit and is disconnected.
func (h *Limits) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	uid := string(cl.Properties.Username)
	max := h.opts.MaxConnectionsPerUser
	if uid == "" || max <= 0 {
		return
	}
	sh := h.shard(uid)
	sh.mu.Lock()
	if cl.Closed() {
		sh.mu.Unlock()
		return
	}
	devs := sh.users[uid]
	cur, ok := devs[cl.ID]
	switch {
	case ok && (cur == cl || !cur.Closed()):
		// Its own entry, or a newer connection's that is about to take
		// this one over: either way the place is counted.
		sh.mu.Unlock()
		return
	case ok:
		devs[cl.ID] = cl // the older connection it took over
		sh.mu.Unlock()
		return
	}
	pruneClosed(devs)
	if len(devs) >= max {
		sh.mu.Unlock()
		msg := fmt.Sprintf("this user already has %d connections, the most allowed", max)
		h.count(LimitUserConnections, 1)
		h.opts.Logger.Debug("connection over the limit after a takeover race", "client", cl.ID)
		_ = h.opts.Server.DisconnectClient(cl, quota(msg))
		return
	}
	if devs == nil {
		devs = make(map[string]*mqtt.Client)
		sh.users[uid] = devs
	}
	devs[cl.ID] = cl
	sh.mu.Unlock()
}

// connectionGone releases the connection's place, unless a newer
// connection with the same client id holds it by now.
func (h *Limits) connectionGone(cl *mqtt.Client) {
	uid := string(cl.Properties.Username)
	if uid == "" || h.opts.MaxConnectionsPerUser <= 0 {
		return
	}
	sh := h.shard(uid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	devs := sh.users[uid]
	if devs[cl.ID] == cl {
		delete(devs, cl.ID)
	}
	pruneClosed(devs)
	if len(devs) == 0 {
		delete(sh.users, uid)
	}
}

// pruneClosed drops the entries of connections that have ended.
func pruneClosed(devs map[string]*mqtt.Client) {
	for id, cl := range devs {
		if cl.Closed() {
			delete(devs, id)
		}
	}
}
