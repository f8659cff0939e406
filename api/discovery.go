package api

import (
	"github.com/mqchat/mqchat/services/chat"
	"math/rand/v2"
	"net/http"

	"github.com/gin-gonic/gin"
)

// DiscoveryNode is a node's public endpoints and load, as discovery hands
// them to clients.
type DiscoveryNode struct {
	ID          string `json:"id"`
	MQTT        string `json:"mqtt,omitempty"`
	WS          string `json:"ws,omitempty"`
	HTTP        string `json:"http,omitempty"`
	Connections int    `json:"connections"`
}

// Discovery lists the live nodes a client may connect to.
type Discovery func() []DiscoveryNode

func (a *api) routeDiscovery(r gin.IRoutes) {
	if a.opts.Discovery == nil {
		return
	}
	r.GET("/discovery", a.discovery)
}

// discovery answers GET /v1/discovery without authentication: a client asks
// before it has a connection, and the answer holds only what the load
// balancer would show anyway. The node is the less loaded of two picked at
// random (the "power of two choices"): loads are refreshed once a
// heartbeat, so always naming the least loaded would send every client
// asking in that interval to the same node.
func (a *api) discovery(c *gin.Context) {
	nodes := a.opts.Discovery()
	if len(nodes) == 0 {
		fail(c, &chat.Error{Code: chat.CodeUnavailable, Message: "no node is serving clients"})
		return
	}
	best := nodes[rand.IntN(len(nodes))]
	if other := nodes[rand.IntN(len(nodes))]; other.Connections < best.Connections {
		best = other
	}
	c.JSON(http.StatusOK, gin.H{"node": best, "nodes": nodes})
}
