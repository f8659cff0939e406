package cluster

import (
	"encoding/json"
	"slices"

	"github.com/nats-io/nats.go"
)

// Caches that answer from memory (who blocks whom, who may see whose
// presence) are kept exact on one node by the services that change what
// they cache. Across nodes every such change is broadcast, and every other
// node drops the same entries.

type invalidation struct {
	Node string   `json:"n"`
	Kind string   `json:"k"`
	Keys []string `json:"a"`
}

// Invalidate tells the other nodes that cached answers about keys of kind
// changed here.
func (n *Node) Invalidate(kind string, keys ...string) {
	b, _ := json.Marshal(invalidation{Node: n.id, Kind: kind, Keys: keys})
	if err := n.nc.Publish(n.subject("invalidate"), b); err != nil {
		n.log.Warn("broadcast cache invalidation", "kind", kind, "error", err)
	}
}

// OnInvalidate registers f for invalidations other nodes broadcast; set it
// before Start.
func (n *Node) OnInvalidate(f func(kind string, keys []string)) {
	n.hooksMu.Lock()
	n.onInvalidate = append(n.onInvalidate, f)
	n.hooksMu.Unlock()
}

func (n *Node) serveInvalidate(m *nats.Msg) {
	var inv invalidation
	if json.Unmarshal(m.Data, &inv) != nil || inv.Node == n.id {
		return
	}
	n.hooksMu.Lock()
	fs := slices.Clone(n.onInvalidate)
	n.hooksMu.Unlock()
	for _, f := range fs {
		f(inv.Kind, inv.Keys)
	}
}
