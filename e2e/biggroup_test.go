package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// TestFiveHundredMemberGroup: a message to a group at the default size
// limit reaches every member exactly once. (Timing is measured by
// cmd/chatbench, not here; see docs/benchmarks.md.)
func TestFiveHundredMemberGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("500 MQTT clients; skipped with -short")
	}
	s := startServer(t, nil)
	const n = 500
	users := make([]account, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			users[i] = s.register(t, fmt.Sprintf("member%03d", i))
		}()
	}
	wg.Wait()
	ids := make([]string, 0, n-1)
	for _, u := range users[1:] {
		ids = append(ids, u.ID)
	}
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", users[0].Token, map[string]any{"name": "everyone", "members": ids}, nil, &g); st != http.StatusCreated || len(g.Members) != n {
		t.Fatalf("create: %d, %d members", st, len(g.Members))
	}
	clients := make([]*v5, n)
	for i, u := range users {
		clients[i] = dialV5(t, tcpConn(t, s.addrs.MQTT), u, "d")
		clients[i].subscribe(t, "users/"+u.ID+"/inbox")
	}
	if rc, err := clients[0].publish(t, "users/"+users[0].ID+"/send", groupEnvelope(g.GroupID, "hello-all", "hi")); rc != 0 || err != nil {
		t.Fatalf("send: 0x%02x %v", rc, err)
	}
	for i, c := range clients {
		m := c.box.next(t, fmt.Sprintf("member %d", i), func(r received) bool { return r.inbox(t).CMID == "hello-all" }).inbox(t)
		if m.Chat != g.Chat || m.Seq != 2 {
			t.Fatalf("member %d got %+v", i, m)
		}
	}
	// Exactly once: a marker after it is the next thing each member sees.
	if rc, err := clients[0].publish(t, "users/"+users[0].ID+"/send", groupEnvelope(g.GroupID, "marker", "end")); rc != 0 || err != nil {
		t.Fatalf("marker: 0x%02x %v", rc, err)
	}
	for i, c := range clients {
		if m := c.box.next(t, "marker", onTopic("users/"+users[i].ID+"/inbox")).inbox(t); m.CMID != "marker" {
			t.Fatalf("member %d: %s before the marker", i, m.CMID)
		}
	}
}
