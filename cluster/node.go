// Package cluster joins chatd nodes over NATS. Every node is identical: it
// holds a membership key with a TTL in a JetStream KV bucket, owns the chats
// that rendezvous hashing over the live members gives it, forwards sends for
// other chats to their owners, delivers to users connected elsewhere over
// per-user subjects, shares its presence counts by broadcast and closes a
// client that reconnected to another node.
//
// Ownership is only a hint: the store refuses a second (chat, seq) and a
// second live (sender, cmid), so two nodes that briefly both believe they own
// a chat can never store a duplicate. A node that cannot renew its key in
// time fences itself (Check fails: no commits, /readyz down) and drops its
// clients before the others take its chats.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configures a node.
type Options struct {
	Name           string // subject and bucket prefix
	NodeID         string // "" = derived from the host name
	Heartbeat      time.Duration
	TTL            time.Duration
	RequestTimeout time.Duration
	NATS           NATSOptions
	// Info returns what the node advertises (endpoints, load); read at
	// every heartbeat.
	Info func() NodeInfo
	// OnSlot is told the node's new message-id number when the one it
	// had was taken while it was away.
	OnSlot  func(slot int)
	Logger  *slog.Logger
	Metrics Metrics
}

// NATSOptions locates and authenticates to NATS.
type NATSOptions struct {
	URL                    string
	CredsFile, Token       string
	User, Password         string
	TLSCA, TLSCert, TLSKey string
	ReconnectWait          time.Duration // 0 = 250ms
	ConnectTimeout         time.Duration // 0 = 5s
	// Replicas of the membership bucket (0 = 1); 3 on a NATS cluster, so
	// losing one NATS server loses no membership.
	Replicas int
}

// NodeInfo is what a node advertises in its membership key.
type NodeInfo struct {
	ID          string    `json:"id"`
	Incarnation string    `json:"incarnation"` // changes at every start, so peers notice a restart
	Slot        int       `json:"slot"`        // the number in this node's message ids
	MQTT        string    `json:"mqtt,omitempty"`
	WS          string    `json:"ws,omitempty"`
	HTTP        string    `json:"http,omitempty"`
	Connections int       `json:"connections"`
	Started     time.Time `json:"started"`
}

// Metrics receives the node's observations; every method must be cheap.
type Metrics interface {
	SetNodes(n int)
	SetMember(ok bool)
	SetNATSConnected(ok bool)
	Fenced()
	Forwarded(result string, d time.Duration)
	OwnedSend()
	Relayed(direction, kind string)
	SetUserSubscriptions(n int)
	Takeover(result string)
	PresenceResync()
}

// Node is this process's membership in the cluster.
type Node struct {
	opts   Options
	id     string
	incarn string
	log    *slog.Logger
	m      Metrics
	nc     *nats.Conn
	kv     jetstream.KeyValue
	subs   []*nats.Subscription

	// base anchors the monotonic clock the lease is measured on.
	base       time.Time
	leaseUntil atomic.Int64 // ns since base; 0 = never held
	fenced     atomic.Bool  // lost the lease; cleared when renewed after the fence ran
	joined     atomic.Bool
	slot       atomic.Int64

	view  view
	calls calls
	users users
	pres  presenceSync

	hooksMu  sync.Mutex
	onFence  []func()
	onChange []func(joined, left []string)
	// onInvalidate hears cache invalidations from other nodes.
	onInvalidate []func(kind string, keys []string)
	owned        OwnedSender
	local        Local
	takeover     Takeovers
	acks         Acks

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// DeriveNodeID makes a node id from the host name and a random suffix:
// unique even when two processes share a host or a restarted pod keeps its
// name while the old one is still in the view.
func DeriveNodeID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, host)
	if len(host) > 48 {
		host = host[:48]
	}
	if host == "" {
		host = "node"
	}
	return host + "-" + randomHex(4)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// New connects to NATS and opens the membership bucket; Start joins.
func New(ctx context.Context, opts Options) (*Node, error) {
	if opts.NodeID == "" {
		opts.NodeID = DeriveNodeID()
	}
	if !nodeName.MatchString(opts.NodeID) || !nodeName.MatchString(opts.Name) {
		return nil, fmt.Errorf("cluster: invalid node id %q or cluster name %q", opts.NodeID, opts.Name)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	if opts.Info == nil {
		opts.Info = func() NodeInfo { return NodeInfo{} }
	}
	n := &Node{
		opts: opts, id: opts.NodeID, incarn: randomHex(8), log: opts.Logger, m: opts.Metrics,
		base: time.Now(), stop: make(chan struct{}), done: make(chan struct{}),
	}
	n.slot.Store(-1)
	n.view.init()
	n.users.init()
	n.pres.init()
	nc, err := n.connect()
	if err != nil {
		return nil, err
	}
	n.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	replicas := max(opts.NATS.Replicas, 1)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         opts.Name + "_nodes",
		Description:    "chatd cluster membership: one key per live node, renewed every heartbeat",
		History:        1,
		TTL:            opts.TTL,
		LimitMarkerTTL: max(opts.TTL, time.Second), // the server's minimum
		Storage:        jetstream.FileStorage,      // survives a restart of every NATS server
		Replicas:       replicas,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: open membership bucket (NATS 2.11 or later with JetStream enabled is required): %w", err)
	}
	n.kv = kv
	if err := n.claimSlot(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) connect() (*nats.Conn, error) {
	o := n.opts.NATS
	wait := o.ReconnectWait
	if wait <= 0 {
		wait = 250 * time.Millisecond
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Name("chatd " + n.id),
		// A node never needs its own publishes back: it delivers to its
		// local sessions itself before relaying to the others.
		nats.NoEcho(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(wait),
		nats.Timeout(timeout),
		nats.PingInterval(max(n.opts.Heartbeat, time.Second)),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			n.m.SetNATSConnected(false)
			n.log.Warn("NATS connection lost", "error", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.m.SetNATSConnected(true)
			n.log.Info("NATS connection back", "server", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			n.log.Warn("NATS asynchronous error", "subject", subject, "error", err)
			if errors.Is(err, nats.ErrSlowConsumer) && subject == n.subject("presence") {
				n.pres.lostAll()
			}
		}),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to NATS at %s: %w", o.URL, err)
	}
	n.m.SetNATSConnected(true)
	return nc, nil
}

// ID is this node's id.
func (n *Node) ID() string { return n.id }

// Slot is the number in this node's message ids (0-1023), claimed at Start.
func (n *Node) Slot() int { return int(n.slot.Load()) }

func (n *Node) subject(parts ...string) string {
	return n.opts.Name + "." + strings.Join(parts, ".")
}

func (n *Node) now() int64 { return int64(time.Since(n.base)) }

// Check returns nil while this node holds its membership lease: it may
// commit sends and serve clients. It is the chat writer's fence and part of
// readiness.
func (n *Node) Check() error {
	if !n.joined.Load() {
		return errors.New("cluster: not joined yet")
	}
	if n.fenced.Load() {
		return errors.New("cluster: this node lost its membership and is rejoining")
	}
	if n.now() >= n.leaseUntil.Load() {
		return errors.New("cluster: membership lease expired")
	}
	return nil
}

// OnFence registers f to run when the node loses its lease (drop clients,
// forget cached chat state). f runs on the membership goroutine.
func (n *Node) OnFence(f func()) {
	n.hooksMu.Lock()
	n.onFence = append(n.onFence, f)
	n.hooksMu.Unlock()
}

// OnChange registers f to run when nodes join or leave the view.
func (n *Node) OnChange(f func(joined, left []string)) {
	n.hooksMu.Lock()
	n.onChange = append(n.onChange, f)
	n.hooksMu.Unlock()
}

// Start subscribes to this node's subjects, checks its message-id slot, puts
// the membership key and waits until the view holds this node: from then
// on sends are routed. ctx bounds the join.
func (n *Node) Start(ctx context.Context) error {
	if err := n.subscribe(); err != nil {
		return err
	}
	if err := n.reclaimSlot(ctx); err != nil {
		return err
	}
	if err := n.watch(ctx); err != nil {
		return err
	}
	if err := n.beat(ctx); err != nil {
		return fmt.Errorf("cluster: join: %w", err)
	}
	n.joined.Store(true)
	n.m.SetMember(true)
	for !n.view.has(n.id) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: join: this node never appeared in the membership view: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	go n.heartbeats()
	n.pres.syncAll(n)
	n.log.Info("joined the cluster", "node", n.id, "slot", n.Slot(), "nodes", n.view.size())
	return nil
}

// Leave gives the membership key up at once, so the others take this
// node's chats without waiting for the TTL (a graceful shutdown), then
// stops the heartbeats. Sends still in this node's writers have been
// drained by the caller first.
func (n *Node) Leave(ctx context.Context) {
	n.stopOnce.Do(func() { close(n.stop) })
	if n.joined.Load() {
		<-n.done
	}
	n.joined.Store(false)
	n.m.SetMember(false)
	if err := n.kv.Delete(ctx, "node."+n.id); err != nil {
		n.log.Warn("give up membership key", "error", err)
	}
	if s := n.Slot(); s >= 0 {
		if err := n.kv.Delete(ctx, slotKey(s)); err != nil {
			n.log.Warn("give up message-id slot", "error", err)
		}
	}
}

// Close unsubscribes and closes the NATS connection.
func (n *Node) Close() {
	n.stopOnce.Do(func() { close(n.stop) })
	n.view.stopWatch()
	if n.nc != nil {
		// Drain delivers what is already buffered to the handlers, so
		// replies to forwarded sends already committed still go out.
		_ = n.nc.Drain()
		deadline := time.Now().Add(2 * time.Second)
		for !n.nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		n.nc.Close()
	}
}

// Nodes returns the live nodes as this node sees them, sorted by id.
func (n *Node) Nodes() []NodeInfo { return n.view.infos() }

type nopMetrics struct{}

func (nopMetrics) SetNodes(int)                    {}
func (nopMetrics) SetMember(bool)                  {}
func (nopMetrics) SetNATSConnected(bool)           {}
func (nopMetrics) Fenced()                         {}
func (nopMetrics) Forwarded(string, time.Duration) {}
func (nopMetrics) OwnedSend()                      {}
func (nopMetrics) Relayed(string, string)          {}
func (nopMetrics) SetUserSubscriptions(int)        {}
func (nopMetrics) Takeover(string)                 {}
func (nopMetrics) PresenceResync()                 {}
