package e2e

// A cluster of real chatd processes on one embedded NATS server and one
// PostgreSQL database, for the tests of cluster mode: nodes are killed,
// paused, resumed and restarted on their own data dir and ports.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/mqchat/mqchat/cluster"
	"github.com/mqchat/mqchat/internal/pgtest"
	"github.com/mqchat/mqchat/services/chat"
)

const (
	// The cluster's timing in these tests: a node silent for clusterTTL
	// loses its chats.
	clusterHeartbeat = 250 * time.Millisecond
	clusterTTL       = 2 * time.Second
	// Every node of a test cluster shares it, as production nodes must.
	clusterSecret = "e2e-cluster-secret-0123456789abcdefghijk" // 40 characters
)

// startNATS runs an embedded NATS server with JetStream on a random
// loopback port and returns its client URL.
func startNATS(t *testing.T) string {
	t.Helper()
	opts := &natsserver.Options{
		Host:      "127.0.0.1",
		Port:      natsserver.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready for connections after 10s")
	}
	return ns.ClientURL()
}

// chatdCluster is n chatd nodes, n1..nN, on one NATS and one database.
type chatdCluster struct {
	natsURL string
	dsn     string
	extra   []string     // flags every node gets on top of the cluster ones
	ids     []string     // node ids, ids[i] is nodes[i]'s
	nodes   []*chatdProc // the current process of each node
	dirs    []string     // data dirs, kept across restarts
	db      *pgxpool.Pool
}

// startCluster starts n nodes with the flags in extra and returns once
// every node is ready and sees all n in its membership view.
func startCluster(t *testing.T, n int, extra ...string) *chatdCluster {
	t.Helper()
	c := &chatdCluster{natsURL: startNATS(t), dsn: pgtest.DSN(t), extra: extra}
	pool, err := pgxpool.New(context.Background(), c.dsn)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	t.Cleanup(pool.Close)
	c.db = pool
	for i := range n {
		c.ids = append(c.ids, "n"+strconv.Itoa(i+1))
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.nodes = make([]*chatdProc, n)
	for i := range n {
		c.nodes[i] = c.launch(t, i, procOpts{})
	}
	c.waitMembers(t, c.all()...)
	return c
}

// launch starts node i's process and waits for /readyz.
func (c *chatdCluster) launch(t *testing.T, i int, opts procOpts) *chatdProc {
	t.Helper()
	opts.args = append([]string{
		"--cluster.enabled=true",
		"--cluster.nats.url", c.natsURL,
		"--cluster.node_id", c.ids[i],
		"--cluster.heartbeat", clusterHeartbeat.String(),
		"--cluster.ttl", clusterTTL.String(),
		"--auth.jwt_secret", clusterSecret,
		"--store.relational", "postgres",
		"--store.messages", "postgres",
		"--store.postgres.dsn", c.dsn,
		"--limits.device_connects", "0",
		"--limits.group_op_rate", "0",
		"--limits.group_invites", "auto",
	}, c.extra...)
	return startChatdWith(t, c.ids[i], c.dirs[i], opts)
}

// all is every node's index.
func (c *chatdCluster) all() []int {
	out := make([]int, len(c.nodes))
	for i := range out {
		out[i] = i
	}
	return out
}

func (c *chatdCluster) server(i int) *server { return c.nodes[i].server() }

// owner is the index of the node that owns chat while every node is live.
func (c *chatdCluster) owner(chat string) int {
	return c.ownerAmong(chat, c.all()...)
}

// ownerAmong is the index of the node that owns chat while only the nodes
// listed are live.
func (c *chatdCluster) ownerAmong(chat string, live ...int) int {
	ids := make([]string, len(live))
	for k, i := range live {
		ids[k] = c.ids[i]
	}
	return slices.Index(c.ids, cluster.OwnerOf(chat, ids))
}

// waitMembers waits until each of the live nodes listed is ready and sees
// exactly those nodes as the membership.
func (c *chatdCluster) waitMembers(t *testing.T, live ...int) {
	t.Helper()
	for _, i := range live {
		eventually(t, fmt.Sprintf("%s sees %d live nodes", c.ids[i], len(live)), func() error {
			if err := c.ready(i); err != nil {
				return err
			}
			m, err := scrapeURL(c.nodes[i].base + "/metrics")
			if err != nil {
				return err
			}
			if got, ok := m["mqchat_cluster_nodes"]; !ok || got != float64(len(live)) {
				return fmt.Errorf("mqchat_cluster_nodes = %v (present %v), want %d", got, ok, len(live))
			}
			if m["mqchat_cluster_member"] != 1 {
				return fmt.Errorf("mqchat_cluster_member = %v, want 1", m["mqchat_cluster_member"])
			}
			return nil
		})
	}
}

// ready reports whether node i answers /readyz with 200.
func (c *chatdCluster) ready(i int) error {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(c.nodes[i].base + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: GET /readyz: status %d", c.ids[i], resp.StatusCode)
	}
	return nil
}

// restart stops node i gracefully (SIGTERM, exit 0), starts it again on
// the same data dir and ports, and waits until every node sees all of
// them again.
func (c *chatdCluster) restart(t *testing.T, i int) {
	t.Helper()
	old := c.nodes[i]
	old.stop(t)
	c.nodes[i] = c.launch(t, i, procOpts{mqttAddr: old.mqttAddr, httpAddr: old.httpAddr})
	c.waitMembers(t, c.all()...)
}

// kill SIGKILLs node i and waits for it to be gone.
func (c *chatdCluster) kill(t *testing.T, i int) {
	t.Helper()
	st := c.nodes[i].kill(t)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s ended with %v, want killed by SIGKILL (did it exit before the kill?)", c.ids[i], st)
	}
}

// signal sends sig (SIGSTOP, SIGCONT) to node i.
func (c *chatdCluster) signal(t *testing.T, i int, sig syscall.Signal) {
	t.Helper()
	if err := c.nodes[i].cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to %s: %v", sig, c.ids[i], err)
	}
}

// metric is the value of the sample name on node i (labelled samples
// summed), or an error when the node does not answer.
func (c *chatdCluster) metric(i int, name string) (float64, error) {
	m, err := scrapeURL(c.nodes[i].base + "/metrics")
	if err != nil {
		return 0, err
	}
	return sumSamples(m, name)
}

func sumSamples(m map[string]float64, name string) (float64, error) {
	sum, found := 0.0, false
	for k, v := range m {
		if k == name || (len(k) > len(name) && k[:len(name)] == name && k[len(name)] == '{') {
			sum += v
			found = true
		}
	}
	if !found {
		return 0, errors.New("no sample " + name)
	}
	return sum, nil
}

// register makes n accounts through node i, named prefix-0...
func (c *chatdCluster) register(t *testing.T, i int, prefix string, n int) []account {
	t.Helper()
	out := make([]account, n)
	for k := range out {
		out[k] = c.server(i).register(t, fmt.Sprintf("%s-%d", prefix, k))
	}
	return out
}

// peerOwnedBy registers accounts named prefix-0... through node via until
// one's 1:1 chat with each of the partners is owned by node owner, and
// returns it; the others are left unused.
func (c *chatdCluster) peerOwnedBy(t *testing.T, via, owner int, prefix string, partners ...account) account {
	t.Helper()
	for k := range 200 {
		a := c.server(via).register(t, fmt.Sprintf("%s-%d", prefix, k))
		ok := true
		for _, p := range partners {
			ok = ok && c.owner(chat.DirectChatID(a.ID, p.ID)) == owner
		}
		if ok {
			return a
		}
	}
	t.Fatalf("no account among 200 has its chats with %d partners owned by %s", len(partners), c.ids[owner])
	return account{}
}
