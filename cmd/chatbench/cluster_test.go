package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/cluster"
	"github.com/mqchat/mqchat/services/chat"
)

func TestPlacePairs(t *testing.T) {
	pairsOf := func(n int) [][2]string {
		out := make([][2]string, n)
		for i := range out {
			out[i] = [2]string{fmt.Sprintf("u%03ds", i), fmt.Sprintf("u%03dr", i)}
		}
		return out
	}
	three := []string{"n1", "n2", "n3"}
	tests := []struct {
		name      string
		pairs     int
		nodes     []string
		placement string
		wantErr   string
	}{
		{"same on three nodes", 60, three, placeSame, ""},
		{"cross on three nodes", 60, three, placeCross, ""},
		{"cross on five nodes", 60, []string{"a", "b", "c", "d", "e"}, placeCross, ""},
		{"same on one node", 5, []string{"solo"}, placeSame, ""},
		{"cross needs three nodes", 5, []string{"n1", "n2"}, placeCross, "at least 3 nodes"},
		{"no nodes", 5, nil, placeSame, "no nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairs := pairsOf(tt.pairs)
			got, err := placePairs(pairs, tt.nodes, tt.placement)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(pairs) {
				t.Fatalf("%d places for %d pairs", len(got), len(pairs))
			}
			roles := map[string][]int{} // how often each node has each role
			for i, pl := range got {
				owner := cluster.OwnerOf(chat.DirectChatID(pairs[i][0], pairs[i][1]), tt.nodes)
				if tt.nodes[pl.Owner] != owner {
					t.Fatalf("pair %d: owner %s, the cluster computes %s", i, tt.nodes[pl.Owner], owner)
				}
				switch tt.placement {
				case placeSame:
					if pl.Sender != pl.Owner || pl.Recipient != pl.Owner {
						t.Fatalf("pair %d: %+v not all on the owner", i, pl)
					}
				case placeCross:
					if pl.Sender == pl.Owner || pl.Recipient == pl.Owner || pl.Sender == pl.Recipient {
						t.Fatalf("pair %d: %+v: sender, recipient and owner must be three nodes", i, pl)
					}
				}
				for role, n := range []int{pl.Owner, pl.Sender, pl.Recipient} {
					r := roles[tt.nodes[n]]
					if r == nil {
						r = make([]int, 3)
						roles[tt.nodes[n]] = r
					}
					r[role]++
				}
			}
			// 60 pairs over a handful of nodes: every node owns some
			// chats, so every node is measured in every role.
			if tt.pairs >= 60 {
				for _, n := range tt.nodes {
					if r := roles[n]; r == nil || slices.Contains(r, 0) {
						t.Errorf("node %s has roles (owner, sender, recipient) %v", n, r)
					}
				}
			}
		})
	}
}

func TestSpread(t *testing.T) {
	ids := func(n int) []identity { return make([]identity, n) }
	tests := []struct {
		name       string
		targets    []string
		version    string
		recipients []identity
		senders    []identity
		wantRecv   []string
		wantSend   []string
	}{
		{"one target", []string{"a"}, "5", ids(2), ids(2), []string{"a", "a"}, []string{"a", "a"}},
		// Recipients first, then senders, in turn: pair i's two clients
		// land on different targets when the pair count is not a multiple.
		{"three targets", []string{"a", "b", "c"}, "5", ids(2), ids(2), []string{"a", "b"}, []string{"c", "a"}},
		{"placed clients stay", []string{"a", "b"}, "3.1.1", []identity{{Addr: "z"}, {}}, ids(1), []string{"z", "b"}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spread(tt.targets, tt.version, tt.recipients, tt.senders)
			for _, c := range []struct {
				got  []identity
				want []string
			}{{tt.recipients, tt.wantRecv}, {tt.senders, tt.wantSend}} {
				for i, id := range c.got {
					if id.Addr != c.want[i] {
						t.Errorf("client %d on %q, want %q", i, id.Addr, c.want[i])
					}
					if id.V3 != (tt.version == mqtt3Version) {
						t.Errorf("client %d: V3 = %v for version %s", i, id.V3, tt.version)
					}
				}
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.34
mqchat_cluster_forwards_total{result="error"} 2
mqchat_cluster_forwards_total{result="ok"} 1500
mqchat_cluster_forwards_total{result="timeout"} 1
mqchat_cluster_relays_total{direction="in",kind="inbox"} 7
mqchat_cluster_relays_total{direction="out",kind="events"} 3
mqchat_cluster_relays_total{direction="out",kind="inbox"} 40
mqchat_cluster_forward_seconds_bucket{le="+Inf"} 1503
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
		ok     bool
	}{
		{"plain", "process_cpu_seconds_total", nil, 12.34, true},
		{"one label", "mqchat_cluster_forwards_total", map[string]string{"result": "ok"}, 1500, true},
		{"all series", "mqchat_cluster_forwards_total", nil, 1503, true},
		{"part of the labels", "mqchat_cluster_relays_total", map[string]string{"direction": "out"}, 43, true},
		{"le label with a plus", "mqchat_cluster_forward_seconds_bucket", map[string]string{"le": "+Inf"}, 1503, true},
		{"absent", "mqchat_cluster_nodes", nil, 0, false},
		{"no matching labels", "mqchat_cluster_forwards_total", map[string]string{"result": "lost"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := m.sum(tt.metric, tt.labels)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("sum = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	if _, err := parseMetrics(strings.NewReader("broken_metric{a=\"b\"}\n")); err == nil {
		t.Fatal("a line without a value accepted")
	}
}

func TestOwnershipNote(t *testing.T) {
	tests := []struct {
		placement string
		forwards  float64
		acked     int64
		warn      bool
	}{
		{placeSame, 0, 1000, false},
		{placeSame, 40, 1000, false}, // retries after failed forwards of another run's chats
		{placeSame, 300, 1000, true},
		{placeCross, 1000, 1000, false},
		{placeCross, 1010, 1000, false},
		{placeCross, 600, 1000, true},
		{placeCross, 0, 0, false},
	}
	for _, tt := range tests {
		if got := ownershipNote(tt.placement, tt.forwards, tt.acked); (got != "") != tt.warn {
			t.Errorf("ownershipNote(%s, %v, %d) = %q, want a warning: %v", tt.placement, tt.forwards, tt.acked, got, tt.warn)
		}
	}
}

func TestParseClusterArgs(t *testing.T) {
	const three = " --mqtt 127.0.0.1:1,127.0.0.1:2,127.0.0.1:3 --http 127.0.0.1:4,127.0.0.1:5,127.0.0.1:6"
	tests := []argCase{
		{"three nodes", "cluster --nodes n1,n2,n3 --placement cross --mqtt-version 3.1.1 --nats-monitor 127.0.0.1:8222" + three, "", func(o options) bool {
			return slices.Equal(o.Nodes, []string{"n1", "n2", "n3"}) && o.MQTT == "127.0.0.1:1" && o.HTTP == "127.0.0.1:4" &&
				len(o.MQTTs) == 3 && o.MQTTVersion == "3.1.1" && o.Placement == placeCross
		}},
		{"a node id per target", "cluster --nodes n1,n2" + three, "--nodes names 2 nodes for 3", nil},
		{"an HTTP address per target", "cluster --nodes n1,n2,n3 --mqtt 127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "--http has 1 addresses", nil},
		{"cross needs three", "cluster --nodes a,b --placement cross --mqtt 127.0.0.1:1,127.0.0.1:2 --http 127.0.0.1:4,127.0.0.1:5", "at least 3 nodes", nil},
		{"unknown placement", "cluster --nodes n1,n2,n3 --placement far" + three, "--placement", nil},
		{"node named twice", "cluster --nodes n1,n1,n3" + three, "twice", nil},
		{"every target loopback", "cluster --nodes n1,n2,n3 --mqtt 127.0.0.1:1,10.0.0.2:2,127.0.0.1:3 --http 127.0.0.1:4,127.0.0.1:5,127.0.0.1:6", "not a loopback", nil},
		{"NATS monitor loopback", "cluster --nodes n1,n2,n3 --nats-monitor 10.0.0.9:8222" + three, "not a loopback", nil},
		{"MQTT version", "direct --mqtt-version 4", "--mqtt-version", nil},
		{"direct spreads over targets", "direct --mqtt 127.0.0.1:1,127.0.0.1:2", "", func(o options) bool {
			return o.MQTT == "127.0.0.1:1" && len(o.MQTTs) == 2 && o.MQTTVersion == "5"
		}},
	}
	runArgCases(t, tests)
}
