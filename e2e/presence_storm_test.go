package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

const (
	// stormGroups groups hold the star user and every watcher, so the
	// question "may this watcher see the star" has to find a shared group
	// among thousands on a cache miss.
	stormGroups   = 1000
	stormWatchers = 200
	// At least stormSamples connects and 1:1 deliveries are timed, over at
	// least stormSpan (several of the star's presence.publish_interval),
	// within stormBudget: a run on the old code would otherwise take many
	// minutes; it then fails with fewer samples.
	stormSamples = 100
	stormSpan    = 3 * time.Second
	stormBudget  = 60 * time.Second
	// stormBound is the p90 allowed for an unrelated user's CONNECT→SUBACK
	// and an unrelated 1:1 delivery during the storm, and stormTail the
	// p99, under -race on a loaded 2-core machine: alone, runs measured
	// 10–115 ms at p99, the delivery's share being mostly fsync and Pebble
	// compacting the seeded groups; inside the whole suite (other packages'
	// tests on the same two cores) one run's p99 connect was 1.3 s with
	// p50 16 ms. When presence published under its lock with store scans
	// per delivery, the same test measured p50 4 s and p99 10 s.
	stormBound = 500 * time.Millisecond
	stormTail  = 3 * time.Second
)

// TestPresenceStormIsolation: one user in thousands of groups, watched by
// hundreds of users subscribed to its presence, connects and disconnects
// two devices over and over with the default settings, so its presence
// changes all the time and reaches every watcher at each
// presence.publish_interval. Meanwhile an unrelated user connects and
// subscribes and an unrelated pair exchanges 1:1 messages: neither may
// wait for the storm, and no watcher's ACL question may read the store.
// Afterwards every watcher, a new subscriber and REST agree on the star's
// final state: the retained message follows the latest state.
func TestPresenceStormIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MQTT clients and 1000 groups; skipped with -short")
	}
	s := startServer(t, nil)
	star, alice, bob, carol := s.register(t, "star"), s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	watchers := registerMany(t, s, "watcher", stormWatchers)
	seedGroups(t, s, star, watchers, stormGroups)
	befriend(t, s, alice, bob)

	dialV5(t, tcpConn(t, s.addrs.MQTT), star, "anchor") // keeps the star online throughout
	ws := make([]*presenceWatcher, len(watchers))
	parallel(t, 2, len(watchers), func(i int) error {
		w, err := watchPresence(s, watchers[i], star.ID)
		ws[i] = w
		return err
	})
	t.Cleanup(func() {
		for _, w := range ws {
			if w != nil {
				_ = w.c.Disconnect(&paho.Disconnect{})
			}
		}
	})

	sender := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	receiver := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	receiver.subscribe(t, "users/"+bob.ID+"/inbox")

	hits := `mqchat_presence_visibility_checks_total{answer="allowed",cache="hit"}`
	misses := `mqchat_presence_visibility_checks_total{answer="allowed",cache="miss"}`
	before := scrape(t, s)

	// The storm: two devices of the star reconnecting as fast as they can.
	stop := make(chan struct{})
	var flaps atomic.Int64
	var flapErr atomic.Value
	var storm sync.WaitGroup
	for _, device := range []string{"flap1", "flap2"} {
		storm.Add(1)
		go func() {
			defer storm.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := flap(s, star, device); err != nil {
					flapErr.Store(err)
					return
				}
				flaps.Add(1)
			}
		}()
	}
	stopStorm := sync.OnceFunc(func() { close(stop); storm.Wait() })
	t.Cleanup(stopStorm)
	eventually(t, "the storm reaches the watchers", func() error {
		if n := ws[0].n.Load(); n < 3 { // the retained message and two changes
			return fmt.Errorf("first watcher got %d presence messages", n)
		}
		return nil
	})

	var connects, deliveries []time.Duration
	start := time.Now()
	flapsBefore, seenBefore := flaps.Load(), ws[0].n.Load()
	for i := 0; (i < stormSamples || time.Since(start) < stormSpan) && time.Since(start) < stormBudget; i++ {
		// A sample that times out counts with the time it waited: the
		// bound check below reports it.
		connects = append(connects, timeConnect(t, s, carol, fmt.Sprintf("probe%d", i)))
		deliveries = append(deliveries, timeDelivery(t, sender, receiver, fmt.Sprintf("storm-%d", i)))
	}
	during, seen := flaps.Load()-flapsBefore, ws[0].n.Load()-seenBefore
	stopStorm()
	if err, _ := flapErr.Load().(error); err != nil {
		t.Fatalf("storm: %v", err)
	}

	cp50, cp90, cp99 := percentiles(connects)
	dp50, dp90, dp99 := percentiles(deliveries)
	t.Logf("%d flaps, %d presence messages per watcher during %d samples in %v: connect→SUBACK p50 %v p90 %v p99 %v, 1:1 delivery p50 %v p90 %v p99 %v",
		during, seen, len(connects), time.Since(start).Round(time.Millisecond), cp50, cp90, cp99, dp50, dp90, dp99)
	if during < 20 || seen < 3 {
		t.Fatalf("only %d flaps and %d presence messages to a watcher while measuring: no storm to be isolated from", during, seen)
	}
	if len(connects) < stormSamples {
		t.Errorf("only %d of %d samples within %v", len(connects), stormSamples, stormBudget)
	}
	if cp90 > stormBound || dp90 > stormBound {
		t.Errorf("p90 connect→SUBACK %v, 1:1 delivery %v during the storm; bound %v", cp90, dp90, stormBound)
	}
	if cp99 > stormTail || dp99 > stormTail {
		t.Errorf("p99 connect→SUBACK %v, 1:1 delivery %v during the storm; bound %v", cp99, dp99, stormTail)
	}
	// Every presence delivery's ACL question was answered from memory: the
	// watchers' subscriptions computed the answers, the storm only reused
	// them.
	after := scrape(t, s)
	if d := after[misses] - before[misses]; d != 0 {
		t.Errorf("%v visibility answers read from the store during the storm, want 0", d)
	}
	if d := after[hits] - before[hits]; d < stormWatchers*float64(seen-1) {
		t.Errorf("%v visibility answers from memory during the storm, want at least %d", d, stormWatchers*(seen-1))
	}

	// The storm is over; the anchor alone is left. Everyone converges on
	// that state, which is also the retained message.
	want := presenceMsg{Status: "online", Devices: 1}
	eventually(t, "watchers see the final state", func() error {
		for i, w := range ws {
			if got := w.latest(); got != want {
				return fmt.Errorf("watcher %d last saw %+v, want %+v", i, got, want)
			}
		}
		return nil
	})
	late := dialV5(t, tcpConn(t, s.addrs.MQTT), watchers[0], "late")
	late.subscribe(t, "presence/"+star.ID)
	if got := decodePresence(t, late.box.next(t, "retained presence", onTopic("presence/"+star.ID))); got != want {
		t.Fatalf("retained presence after the storm = %+v, want %+v", got, want)
	}
	var rest presenceMsg
	if st := s.call(t, "GET", "/v1/presence/"+star.ID, watchers[0].Token, nil, nil, &rest); st != http.StatusOK ||
		rest.Status != want.Status || rest.Devices != want.Devices {
		t.Fatalf("REST presence after the storm = %d %+v, want %+v", st, rest, want)
	}
}

// timeConnect connects a new device of a and subscribes it to its inbox,
// and returns how long that took until the SUBACK.
func timeConnect(t *testing.T, s *server, a account, device string) time.Duration {
	t.Helper()
	t0 := time.Now()
	c, ack, err := connectV5(tcpConn(t, s.addrs.MQTT), a.ID, a.Token, a.ID+"/"+device, nil)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return time.Since(t0)
		}
		t.Fatalf("connect %s: %v (connack %+v)", device, err, ack)
	}
	defer func() { _ = c.c.Disconnect(&paho.Disconnect{}) }()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sub, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "users/" + a.ID + "/inbox", QoS: 1}}})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
	case err != nil || len(sub.Reasons) != 1 || sub.Reasons[0] != 1:
		t.Fatalf("subscribe %s: %v %+v", device, err, sub)
	}
	return time.Since(t0)
}

// timeDelivery sends a 1:1 message from sender to receiver and returns how
// long it took to arrive.
func timeDelivery(t *testing.T, sender, receiver *v5, cmid string) time.Duration {
	t.Helper()
	inbox := "users/" + receiver.acct.ID + "/inbox"
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := sender.c.Publish(ctx, &paho.Publish{Topic: "users/" + sender.acct.ID + "/send", QoS: 1,
		Payload: envelope(receiver.acct.ID, cmid, "during the storm")})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return time.Since(t0)
	case err != nil || resp.ReasonCode != 0:
		t.Fatalf("send %s: %v %+v", cmid, err, resp)
	}
	for {
		select {
		case r := <-receiver.box:
			if r.Topic == inbox && r.inbox(t).CMID == cmid {
				return time.Since(t0)
			}
		case <-ctx.Done():
			return time.Since(t0)
		}
	}
}

// flap connects a device of a and disconnects it cleanly: two changes of
// a's presence.
func flap(s *server, a account, device string) error {
	conn, err := net.DialTimeout("tcp", s.addrs.MQTT, waitTimeout)
	if err != nil {
		return err
	}
	c, ack, err := connectV5(conn, a.ID, a.Token, a.ID+"/"+device, nil)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("connect %s: %w (connack %+v)", device, err, ack)
	}
	return c.c.Disconnect(&paho.Disconnect{})
}

// presenceWatcher is an MQTT 5 client subscribed to one user's presence
// that keeps only a count and the newest message, so no backlog builds up
// however long the storm lasts.
type presenceWatcher struct {
	c    *paho.Client
	n    atomic.Int64
	mu   sync.Mutex
	last presenceMsg
}

func (w *presenceWatcher) latest() presenceMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func watchPresence(s *server, a account, uid string) (*presenceWatcher, error) {
	conn, err := net.DialTimeout("tcp", s.addrs.MQTT, waitTimeout)
	if err != nil {
		return nil, err
	}
	w := &presenceWatcher{}
	w.c = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			var m presenceMsg
			if p.Packet.Topic == "presence/"+uid && json.Unmarshal(p.Packet.Payload, &m) == nil {
				w.mu.Lock()
				w.last = m
				w.mu.Unlock()
				w.n.Add(1)
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := w.c.Connect(ctx, &paho.Connect{
		ClientID: a.ID + "/watch", Username: a.ID, UsernameFlag: true, Password: []byte(a.Token), PasswordFlag: true,
		KeepAlive: 30, CleanStart: true,
	}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("connect %s: %w", a.Username, err)
	}
	ack, err := w.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "presence/" + uid, QoS: 1}}})
	if err != nil || len(ack.Reasons) != 1 || ack.Reasons[0] != 1 {
		return w, fmt.Errorf("subscribe %s: %v %+v", a.Username, err, ack)
	}
	return w, nil
}

// registerMany registers n users named prefix0…
func registerMany(t *testing.T, s *server, prefix string, n int) []account {
	t.Helper()
	users := make([]account, n)
	var mu sync.Mutex
	parallel(t, 8, n, func(i int) error {
		var tok struct {
			UserID      string `json:"user_id"`
			AccessToken string `json:"access_token"`
		}
		name := fmt.Sprintf("%s%d", prefix, i)
		// Not s.register: its t.Fatal may not run on this goroutine.
		resp, err := http.Post(s.base+"/v1/auth/register", "application/json",
			strings.NewReader(fmt.Sprintf(`{"username":%q,"password":"correct horse"}`, name)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("register %s: status %d", name, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		mu.Lock()
		users[i] = account{ID: tok.UserID, Username: name, Token: tok.AccessToken}
		mu.Unlock()
		return nil
	})
	return users
}

// seedGroups stores n groups owned by owner with every member in each,
// straight into the node's store before any of them is used: through the
// groups service each would also be announced and recorded in its chat,
// which this test does not need.
func seedGroups(t *testing.T, s *server, owner account, members []account, n int) {
	t.Helper()
	st := s.app.Store()
	parallel(t, 8, n, func(int) error {
		gid := ids.NewUserID()
		now := time.Now()
		ms := []store.Member{{GroupID: gid, UserID: owner.ID, Role: store.RoleOwner, JoinedAt: now}}
		for _, m := range members {
			ms = append(ms, store.Member{GroupID: gid, UserID: m.ID, Role: store.RoleMember, JoinedAt: now})
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		return st.CreateGroup(ctx, store.Group{ID: gid, Name: gid, CreatedBy: owner.ID, CreatedAt: now}, ms)
	})
}

// parallel runs f(0…n-1), width at a time, and fails on the first error.
func parallel(t *testing.T, width, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, width)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// percentiles returns the median and the 99th percentile (nearest rank).
func percentiles(d []time.Duration) (p50, p90, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return rank(0.50), rank(0.90), rank(0.99)
}
