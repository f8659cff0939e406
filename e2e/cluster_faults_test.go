package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqchat/mqchat/services/chat"
)

// addrsOf lists the MQTT addresses of the nodes given, in that order: a
// liveConn tries them in turn.
func (c *chatdCluster) addrsOf(nodes ...int) func() []string {
	return func() []string {
		out := make([]string, len(nodes))
		for k, i := range nodes {
			out[k] = c.nodes[i].mqttAddr
		}
		return out
	}
}

// TestClusterOwnerKilled: clients on n1 and n2 pipeline sends to four 1:1
// chats owned by n3, retrying every cmid until it is acknowledged, and n3
// is SIGKILLed mid-traffic. The survivors take its chats over within the
// ttl (plus a second), nothing acknowledged is lost, nothing is stored
// twice, every chat's seqs stay 1..max, and recipients (two of them were
// connected to n3) have the whole history from what they got live plus a
// sync.
func TestClusterOwnerKilled(t *testing.T) {
	const n1, n2, n3 = 0, 1, 2
	c := startCluster(t, 3)
	s1 := c.server(n1).register(t, "sender1")
	s2 := c.server(n2).register(t, "sender2")
	type recipient struct {
		acct account
		from account
		home int
		log  *inboxLog
	}
	rs := []*recipient{
		{acct: c.peerOwnedBy(t, n1, n3, "r1", s1), from: s1, home: n3},
		{acct: c.peerOwnedBy(t, n1, n3, "r2", s1), from: s1, home: n1},
		{acct: c.peerOwnedBy(t, n2, n3, "r3", s2), from: s2, home: n3},
		{acct: c.peerOwnedBy(t, n2, n3, "r4", s2), from: s2, home: n2},
	}
	for _, r := range rs {
		r.log = newInboxLog()
		// After n3 dies its recipients reconnect to n1.
		dialLive(t, r.acct, "phone", c.addrsOf(r.home, n1), r.log)
	}
	senders := map[string]*liveConn{
		s1.ID: dialLive(t, s1, "phone", c.addrsOf(n1, n2), nil),
		s2.ID: dialLive(t, s2, "phone", c.addrsOf(n2, n1), nil),
	}
	load := newSendLoad(t)
	var chats []string
	var targets []sendTarget
	for k, r := range rs {
		ch := chat.DirectChatID(r.from.ID, r.acct.ID)
		chats = append(chats, ch)
		targets = append(targets, sendTarget{to: "user:" + r.acct.ID, chat: ch})
		load.send(senders[r.from.ID], targets[k], 4, fmt.Sprintf("c%d", k))
	}

	load.waitAcks(t, "sends before the kill", 200)
	c.kill(t, n3)
	killed := time.Now()
	for k, r := range rs {
		load.probe(senders[r.from.ID], targets[k], killed, fmt.Sprintf("probe%d", k))
	}
	c.waitMembers(t, n1, n2)
	recovery := load.waitRecovered(t, killed, chats...)
	t.Logf("the dead owner's chats accepted sends again %v after the kill", recovery)
	if limit := clusterTTL + time.Second; recovery > limit {
		t.Errorf("the dead owner's chats took %v to accept sends again, want at most ttl + 1s = %v", recovery, limit)
	}
	load.waitAcks(t, "sends after the takeover", 200)
	load.stop(t)

	stored := c.checkStore(t, load.acked)
	for k, r := range rs {
		c.checkCoverage(t, n1, r.acct, r.log, chats[k], stored[chats[k]])
	}
}

// TestClusterOwnerPaused: the owner of a busy chat is SIGSTOPped past its
// ttl. The others take the chat over and accept its sends; when the owner
// is resumed it has lost its lease: it drops its clients, answers /readyz
// with an error until it has rejoined, counts the fencing, and whatever it
// still had in flight is refused by the store, not stored twice.
func TestClusterOwnerPaused(t *testing.T) {
	const n1, n2, n3 = 0, 1, 2
	c := startCluster(t, 3)
	s := c.server(n1).register(t, "sender")
	r := c.peerOwnedBy(t, n2, n3, "recipient", s)
	ch := chat.DirectChatID(s.ID, r.ID)
	bystander := c.server(n3).register(t, "bystander")
	onN3 := dialWatched(t, c.server(n3), bystander.ID, bystander.Token, "phone")

	rlog := newInboxLog()
	load := newSendLoad(t)
	sender := dialLive(t, s, "phone", c.addrsOf(n1, n2), nil)
	load.send(sender, sendTarget{to: "user:" + r.ID, chat: ch}, 4, "s")
	load.send(dialLive(t, r, "phone", c.addrsOf(n2, n1), rlog),
		sendTarget{to: "user:" + s.ID, chat: ch}, 4, "r")
	load.waitAcks(t, "sends before the pause", 150)

	c.signal(t, n3, syscall.SIGSTOP)
	paused := time.Now()
	load.probe(sender, sendTarget{to: "user:" + r.ID, chat: ch}, paused, "probe")
	c.waitMembers(t, n1, n2)
	takeover := load.waitRecovered(t, paused, ch)
	load.waitRecovered(t, paused.Add(clusterTTL), ch)
	t.Logf("the chat accepted sends again %v after its owner was paused (ttl %v)", takeover, clusterTTL)
	load.waitAcks(t, "sends while the owner is paused", 100)

	// A probe sent while the node is stopped waits in its listen backlog
	// and is the first thing it answers once resumed: its lease ran out
	// long ago, so it must not say it is ready.
	type answer struct {
		status int
		err    error
	}
	probe, wrote := make(chan answer, 1), make(chan struct{})
	go func() {
		req, err := http.NewRequest("GET", c.nodes[n3].base+"/readyz", nil)
		if err != nil {
			probe <- answer{err: err}
			return
		}
		var once sync.Once
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(wrote) }) },
		}))
		client := &http.Client{Timeout: waitTimeout}
		resp, err := client.Do(req)
		if err != nil {
			probe <- answer{err: err}
			return
		}
		resp.Body.Close()
		probe <- answer{status: resp.StatusCode}
	}()
	select {
	case <-wrote:
	case a := <-probe:
		t.Fatalf("/readyz of the stopped node answered: %+v", a)
	case <-time.After(waitTimeout):
		t.Fatal("could not send /readyz to the stopped node")
	}
	c.signal(t, n3, syscall.SIGCONT)
	select {
	case a := <-probe:
		if a.err != nil || a.status == http.StatusOK {
			t.Errorf("the resumed node's first /readyz: status %d, error %v; want a refusal: it holds no lease", a.status, a.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the resumed node did not answer /readyz")
	}
	select {
	case <-onN3.c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the resumed node kept its client connected after losing its lease")
	}
	// Ready again only once it holds a lease again.
	eventually(t, "the resumed node ready again", func() error { return c.ready(n3) })
	if member, err := c.metric(n3, "mqchat_cluster_member"); err != nil || member != 1 {
		t.Errorf("the resumed node answers /readyz 200 with mqchat_cluster_member = %v (%v): ready without its lease", member, err)
	}
	c.waitMembers(t, c.all()...)
	if fenced, err := c.metric(n3, "mqchat_cluster_fenced_total"); err != nil || fenced < 1 {
		t.Errorf("mqchat_cluster_fenced_total on the resumed node = %v (%v), want at least 1", fenced, err)
	}
	// The chat goes back to its owner, which must continue its seqs.
	load.waitAcks(t, "sends after the owner rejoined", 100)
	load.stop(t)

	stored := c.checkStore(t, load.acked)
	c.checkCoverage(t, n1, r, rlog, ch, stored[ch])
}

// TestClusterRollingRestart: with senders on every node writing to chats
// owned by each node, n1, n2 and n3 are restarted one after the other
// (SIGTERM, exit, start on the same data dir and ports, rejoin). Senders
// whose node goes away reconnect to another and retry; every acknowledged
// cmid is stored once and seqs stay gap-free.
func TestClusterRollingRestart(t *testing.T) {
	c := startCluster(t, 3)
	for i, p := range c.nodes {
		t.Logf("%s: MQTT %s", c.ids[i], p.mqttAddr)
	}
	load := newSendLoad(t)
	var chats []string
	for i := range 3 {
		from := c.server(i).register(t, fmt.Sprintf("sender-%d", i))
		owner := (i + 1) % 3
		to := c.peerOwnedBy(t, i, owner, fmt.Sprintf("recipient-%d", i), from)
		ch := chat.DirectChatID(from.ID, to.ID)
		chats = append(chats, ch)
		lc := dialLive(t, from, "phone", c.addrsOf(i, (i+1)%3, (i+2)%3), nil)
		load.send(lc, sendTarget{to: "user:" + to.ID, chat: ch}, 3, fmt.Sprintf("c%d", i))
	}
	load.waitAcks(t, "sends before the restarts", 100)

	for i := range 3 {
		before, acked := time.Now(), load.total.Load()
		c.restart(t, i)
		t.Logf("%s restarted at %s and rejoined in %v, %d sends acknowledged meanwhile", c.ids[i], before.Format("15:04:05.000"), time.Since(before), load.total.Load()-acked)
		if load.total.Load() == acked {
			t.Errorf("no send acknowledged while %s restarted", c.ids[i])
		}
		// Every chat, the restarted node's included, takes sends again.
		load.waitRecovered(t, time.Now(), chats...)
	}
	load.waitAcks(t, "sends after the restarts", 50)
	load.stop(t)
	c.checkStore(t, load.acked)
}
