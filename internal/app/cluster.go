package app

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqchat/mqchat/api"
	"github.com/mqchat/mqchat/cluster"
	"github.com/mqchat/mqchat/hooks"
	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/metrics"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/consent"
	"github.com/mqchat/mqchat/services/groups"
	"github.com/mqchat/mqchat/services/visibility"
)

// openCluster connects to NATS and claims a message-id slot; nil in
// single-node mode.
func (a *App) openCluster(reg prometheus.Registerer) (*cluster.Node, error) {
	cc := a.cfg.Cluster
	if !cc.Enabled {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := cluster.New(ctx, cluster.Options{
		Name: cc.Name, NodeID: cc.NodeID,
		Heartbeat: cc.Heartbeat, TTL: cc.TTL, RequestTimeout: cc.RequestTimeout,
		NATS: cluster.NATSOptions{
			URL: cc.NATS.URL, CredsFile: cc.NATS.CredsFile, Token: cc.NATS.Token,
			User: cc.NATS.User, Password: cc.NATS.Password,
			TLSCA: cc.NATS.TLSCA, TLSCert: cc.NATS.TLSCert, TLSKey: cc.NATS.TLSKey,
			Replicas: cc.NATS.Replicas,
		},
		Info:    a.advertised,
		OnSlot:  a.slotChanged,
		Logger:  a.log.With("component", "cluster"),
		Metrics: metrics.NewCluster(reg),
	})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	return node, nil
}

// slotChanged moves the message-id generator to the number the node
// claimed after losing its old one while away.
func (a *App) slotChanged(slot int) {
	if err := a.ids.SetNode(slot); err != nil {
		a.log.Error("cluster: new message-id slot", "slot", slot, "error", err)
	}
}

// generator makes message ids: the configured node number, or in a
// cluster the slot the node claimed.
func (a *App) generator() (*ids.Generator, error) {
	n := a.cfg.NodeID
	if a.cluster != nil {
		n = a.cluster.Slot()
	}
	return ids.NewGenerator(n)
}

// fenced runs when the node lost its membership: cached chat state goes
// and every client is sent to another node; clients reconnecting here are
// refused until the node is back.
func (a *App) fenced() {
	a.chat.OwnershipChanged()
	n := a.broker.DisconnectAll(packets.ErrUseAnotherServer)
	a.log.Warn("cluster: clients disconnected after losing membership", "clients", n)
}

// advertised is what this node announces for discovery: the configured
// public endpoints, or its bound ports on this host's name.
func (a *App) advertised() cluster.NodeInfo {
	cc := a.cfg.Cluster
	// Only what is bound before the node joins (Start): the heartbeat
	// reads it concurrently with the rest of Start.
	b := a.broker.Addrs()
	addrs := Addrs{MQTT: b.TCP, WS: b.WS, HTTP: a.httpLn.Addr().String()}
	host, _ := os.Hostname()
	info := cluster.NodeInfo{MQTT: cc.AdvertiseMQTT, WS: cc.AdvertiseWS, HTTP: cc.AdvertiseHTTP}
	if info.MQTT == "" && addrs.MQTT != "" {
		info.MQTT = publicAddr(addrs.MQTT, host)
	}
	if info.WS == "" && addrs.WS != "" {
		scheme := "ws"
		if a.browsers.wsTLS != nil {
			scheme = "wss"
		}
		info.WS = (&url.URL{Scheme: scheme, Host: publicAddr(addrs.WS, host), Path: a.cfg.MQTT.WSPath}).String()
	}
	if info.HTTP == "" && addrs.HTTP != "" {
		scheme := "http"
		if a.browsers.httpTLS != nil {
			scheme = "https"
		}
		info.HTTP = (&url.URL{Scheme: scheme, Host: publicAddr(addrs.HTTP, host)}).String()
	}
	info.Connections = int(atomic.LoadInt64(&a.broker.Server().Info.ClientsConnected))
	return info
}

// publicAddr keeps a bound address's specific host and replaces a
// wildcard one with host.
func publicAddr(bound, host string) string {
	h, p, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		h = host
	}
	if _, err := strconv.Atoi(p); err != nil {
		return bound
	}
	return net.JoinHostPort(h, p)
}

// chatRouter is the node as the chat service's router; a nil interface,
// not a nil *cluster.Node, in single-node mode.
func chatRouter(n *cluster.Node) chat.Router {
	if n == nil {
		return nil
	}
	return n
}

// chatFence is the node as the writers' fence: a node without its
// membership lease commits nothing.
func chatFence(n *cluster.Node) chat.Fence {
	if n == nil {
		return nil
	}
	return n
}

// admission is nil while the node may serve clients: always on one node;
// in a cluster, while it holds its membership lease.
func (a *App) admission() error {
	if a.cluster == nil {
		return nil
	}
	return a.cluster.Check()
}

// wireCluster connects the node to the local services it answers other
// nodes with, and the hook that keeps sessions consistent across nodes.
func (a *App) wireCluster(outbox *hooks.Outbox, presenceHook *hooks.Presence, delivered *hooks.Receivers) error {
	n := a.cluster
	clusterHook := hooks.NewCluster(hooks.ClusterOptions{
		Node: n, Server: a.broker.Server(), Dropper: a.broker, Presence: presenceHook,
		Logger: a.log.With("component", "mqtt-cluster"), Timeout: a.cfg.Cluster.RequestTimeout,
	})
	if err := a.broker.Server().AddHook(clusterHook, nil); err != nil {
		return fmt.Errorf("app: add cluster hook: %w", err)
	}
	h := cluster.Handlers{Owned: a.chat, Local: outbox, Takeovers: clusterHook, Presence: a.presence}
	if a.pushTracker != nil {
		h.Acks = a.pushTracker
		// Acknowledgements of chats owned elsewhere reach the owner's
		// tracker, which decides that message's push.
		*delivered = append(*delivered, n)
	}
	n.Serve(h)
	n.OnChange(func(_, _ []string) { a.chat.OwnershipChanged() })
	n.OnFence(a.fenced)
	return nil
}

// Kinds of cache invalidations nodes broadcast.
const (
	invalidConsent      = "consent"       // keys: the user whose consent changed
	invalidMembers      = "members"       // keys: group id, then the users who joined or left
	invalidGroupDeleted = "group_deleted" // keys: group id
	invalidDirect       = "direct"        // keys: the two users of a 1:1 chat's first message
)

// consentChanged tells the other nodes to drop what they cached about
// uid's consent (blocks, privacy, requests).
func (a *App) consentChanged(uid string) {
	if a.cluster != nil {
		a.cluster.Invalidate(invalidConsent, uid)
	}
}

// membershipRelay is what the groups service and the chat writers report
// membership changes to: the local visibility index, and in a cluster every
// other node's.
type membershipRelay struct {
	vis  *visibility.Index
	node *cluster.Node
}

func (m membershipRelay) MembersChanged(gid string, uids []string) {
	m.vis.MembersChanged(gid, uids)
	m.node.Invalidate(invalidMembers, append([]string{gid}, uids...)...)
}

func (m membershipRelay) GroupDeleted(gid string) {
	m.vis.GroupDeleted(gid)
	m.node.Invalidate(invalidGroupDeleted, gid)
}

func (m membershipRelay) DirectChatStarted(a, b string) {
	m.vis.DirectChatStarted(a, b)
	m.node.Invalidate(invalidDirect, a, b)
}

// clusterMembership returns vis itself on one node; in a cluster a relay
// to the other nodes, whose invalidations it applies here.
func (a *App) clusterMembership(vis *visibility.Index, consentSvc *consent.Service) interface {
	groups.Membership
	chat.DirectStarts
} {
	if a.cluster == nil {
		return vis
	}
	a.cluster.OnInvalidate(func(kind string, keys []string) {
		switch {
		case kind == invalidConsent:
			for _, uid := range keys {
				consentSvc.Forget(uid)
			}
		case kind == invalidMembers && len(keys) >= 1:
			vis.MembersChanged(keys[0], keys[1:])
		case kind == invalidGroupDeleted && len(keys) == 1:
			vis.GroupDeleted(keys[0])
		case kind == invalidDirect && len(keys) == 2:
			vis.DirectChatStarted(keys[0], keys[1])
		default:
			a.log.Warn("cluster: unknown cache invalidation ignored", "kind", kind, "keys", len(keys))
		}
	})
	return membershipRelay{vis: vis, node: a.cluster}
}

// discover lists the nodes clients may use: every live node of the
// cluster that holds its membership, or this node alone.
func (a *App) discover() []api.DiscoveryNode {
	var infos []cluster.NodeInfo
	if a.cluster != nil {
		if a.cluster.Check() != nil {
			return nil // a node out of the cluster should not send clients anywhere
		}
		infos = a.cluster.Nodes()
	} else {
		info := a.advertised()
		info.ID = "single"
		infos = []cluster.NodeInfo{info}
	}
	out := make([]api.DiscoveryNode, len(infos))
	for i, n := range infos {
		out[i] = api.DiscoveryNode{ID: n.ID, MQTT: n.MQTT, WS: n.WS, HTTP: n.HTTP, Connections: n.Connections}
	}
	return out
}
