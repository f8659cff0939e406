package cluster

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Presence across nodes: every node broadcasts its own device count of a
// user whenever it changes, numbered per node; every node adds the counts
// of the others to its presence service, which publishes the same
// aggregate everywhere. A node that joins, restarts or misses a number
// pulls a snapshot from the peer and replays what arrived meanwhile.

type presenceUpdate struct {
	Node    string `json:"n"`
	Inc     string `json:"i"`
	Seq     uint64 `json:"s"`
	User    string `json:"u"`
	Devices int    `json:"d"`
}

type presenceSnapshot struct {
	Inc    string         `json:"i"`
	Seq    uint64         `json:"s"`
	Counts map[string]int `json:"c"`
}

// maxBuffered bounds the updates kept from a peer while its snapshot is on
// the way; past it the snapshot is pulled again.
const maxBuffered = 100_000

type presenceSync struct {
	// sendMu orders this node's broadcasts; it is taken under the
	// presence service's lock (LocalDevices), so nothing under it calls
	// the service.
	sendMu sync.Mutex
	seq    uint64

	// mu guards the peers; the service is called under it (SetRemote,
	// DropNode), which is safe because the service never calls back into
	// the peers' state.
	mu    sync.Mutex
	p     Presence
	peers map[string]*peer
}

type peer struct {
	inc     string
	synced  bool
	syncing bool
	last    uint64
	buf     []presenceUpdate
}

func (s *presenceSync) init() { s.peers = make(map[string]*peer) }

func (s *presenceSync) setPresence(p Presence) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

func (s *presenceSync) presence() Presence {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// LocalDevices broadcasts this node's device count of uid (the presence
// service's LocalObserver). It runs under the service's lock, so counts go
// out in the order they changed; a NATS publish only buffers.
func (n *Node) LocalDevices(uid string, devices int) {
	s := &n.pres
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.seq++
	b, _ := json.Marshal(presenceUpdate{Node: n.id, Inc: n.incarn, Seq: s.seq, User: uid, Devices: devices})
	if err := n.nc.Publish(n.subject("presence"), b); err != nil {
		n.log.Warn("broadcast presence", "user", uid, "error", err)
	}
}

func (n *Node) servePresenceSnapshot(m *nats.Msg) {
	p := n.pres.presence()
	if p == nil || m.Reply == "" {
		return
	}
	// The number is read before the counts: updates after it may be in
	// the snapshot too, and replaying them is harmless (counts are
	// absolute), while an update missing from both would be lost.
	n.pres.sendMu.Lock()
	seq := n.pres.seq
	n.pres.sendMu.Unlock()
	b, _ := json.Marshal(presenceSnapshot{Inc: n.incarn, Seq: seq, Counts: p.LocalSnapshot()})
	if err := m.Respond(b); err != nil {
		n.log.Warn("answer presence snapshot", "error", err)
	}
}

func (n *Node) servePresenceUpdate(m *nats.Msg) {
	var u presenceUpdate
	if json.Unmarshal(m.Data, &u) != nil || u.Node == n.id {
		return
	}
	s := &n.pres
	s.mu.Lock()
	defer s.mu.Unlock()
	pr := s.peers[u.Node]
	if pr == nil || pr.inc != u.Inc {
		if n.view.incarnation(u.Node) != u.Inc {
			return // not in the view yet (its join will sync it) or an old incarnation
		}
		if pr != nil && s.p != nil {
			s.p.DropNode(u.Node) // restarted: its old devices are gone
		}
		pr = &peer{inc: u.Inc}
		s.peers[u.Node] = pr
	}
	switch {
	case !pr.synced:
		if len(pr.buf) >= maxBuffered {
			pr.buf = nil
		}
		pr.buf = append(pr.buf, u)
		n.startSync(u.Node, pr)
	case u.Seq <= pr.last:
	case u.Seq == pr.last+1:
		pr.last = u.Seq
		if s.p != nil {
			s.p.SetRemote(u.Node, u.User, u.Devices)
		}
	default: // a gap: some update was lost
		pr.synced = false
		pr.buf = append(pr.buf[:0], u)
		n.startSync(u.Node, pr)
	}
}

// startSync pulls pr's snapshot unless a pull is running; s.mu is held.
func (n *Node) startSync(node string, pr *peer) {
	if pr.syncing {
		return
	}
	pr.syncing = true
	go n.syncPeer(node, pr)
}

func (n *Node) syncPeer(node string, pr *peer) {
	n.m.PresenceResync()
	var snap presenceSnapshot
	for attempt := 0; ; attempt++ {
		resp, err := n.nc.Request(n.subject("node", node, "presence"), nil, n.opts.RequestTimeout)
		if err == nil && json.Unmarshal(resp.Data, &snap) == nil {
			break
		}
		s := &n.pres
		s.mu.Lock()
		gone := s.peers[node] != pr
		s.mu.Unlock()
		if gone || attempt >= 5 {
			n.log.Warn("presence snapshot failed", "node", node, "error", err)
			s.mu.Lock()
			pr.syncing = false
			s.mu.Unlock()
			return
		}
		time.Sleep(100 * time.Millisecond << attempt)
	}
	s := &n.pres
	s.mu.Lock()
	defer s.mu.Unlock()
	pr.syncing = false
	if s.peers[node] != pr || snap.Inc != pr.inc || s.p == nil {
		return // the peer left or restarted meanwhile; its join syncs again
	}
	s.p.DropNode(node)
	for uid, c := range snap.Counts {
		s.p.SetRemote(node, uid, c)
	}
	pr.last = snap.Seq
	for _, u := range pr.buf {
		if u.Seq > pr.last {
			s.p.SetRemote(node, u.User, u.Devices)
			pr.last = u.Seq
		}
	}
	pr.buf = nil
	pr.synced = true
}

// viewChanged drops the devices of nodes that left (the presence service
// gives their users the grace period) and pulls the snapshots of nodes
// that joined.
func (s *presenceSync) viewChanged(n *Node, c change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range c.left {
		if id == n.id {
			continue
		}
		delete(s.peers, id)
		if s.p != nil {
			s.p.DropNode(id)
		}
	}
	for _, id := range c.joined {
		if id == n.id {
			continue
		}
		pr := &peer{inc: n.view.incarnation(id)}
		s.peers[id] = pr
		n.startSync(id, pr)
	}
}

// syncAll pulls every peer's snapshot (at start).
func (s *presenceSync) syncAll(n *Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range n.view.ids() {
		if id == n.id {
			continue
		}
		pr := s.peers[id]
		if pr == nil {
			pr = &peer{inc: n.view.incarnation(id)}
			s.peers[id] = pr
		}
		if !pr.synced {
			n.startSync(id, pr)
		}
	}
}

// lostAll marks every peer unsynced after NATS dropped broadcasts (a slow
// consumer); the next update of each pulls its snapshot.
func (s *presenceSync) lostAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pr := range s.peers {
		pr.synced = false
	}
}
