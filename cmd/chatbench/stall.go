package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqchat/mqchat/services/chat"
)

// stallRcvBuf is the stalled connection's SO_RCVBUF (Linux doubles it).
const stallRcvBuf = 4096

// staller is a stalled consumer: a user subscribed at QoS 1 to its own
// inbox from a connection with a tiny receive buffer that it never reads.
// It fills that connection with notes to self sent from a second, healthy
// connection, and then sends one message into each of a set of groups
// chosen so that every chat writer fans one out to it. A server whose
// deliveries wait on a client's socket then has every writer's fan-out
// stuck behind this one client, and delivery stops for everyone.
type staller struct {
	user   account
	sender *client  // the user's healthy connection
	groups []string // group ids, the i-th owned by writer i
	mqtt   string
	d      *dialer // SO_RCVBUF set before connecting
	notes  int
	note   int // body bytes of each note
	runs   atomic.Int64
}

// newStaller connects the attacker's healthy connection and makes, with
// creators taking turns, groups of the attacker until every writer owns one.
func newStaller(ctx context.Context, o options, api *restClient, user account, creators []account) (*staller, error) {
	groups, err := reachWriters(ctx, api, creators, user.ID, o.Writers, o.Prefix)
	if err != nil {
		return nil, err
	}
	var c counters
	sender, err := newClient(ctx, newDialerFrom(2, 1), o.MQTT, identity{ClientID: user.ID + "/fill", Username: user.ID, Password: user.Token}, &c, nil)
	if err != nil {
		return nil, fmt.Errorf("stalled user's sending connection: %w", err)
	}
	d := newDialerFrom(3, 1)
	d.rcvBuf = stallRcvBuf
	return &staller{user: user, sender: sender, groups: groups, mqtt: o.MQTT, d: d, notes: o.StallNotes, note: o.StallBytes}, nil
}

// reachWriters creates groups holding target until each of n writers owns
// one (chat.ShardOf); creators take turns, so none makes more than a few
// (the server may limit group operations per user). Group ids are the
// server's, so it takes about n·ln(n) groups.
func reachWriters(ctx context.Context, api *restClient, creators []account, target string, n int, prefix string) ([]string, error) {
	byWriter := make([]string, n)
	for i, found := 0, 0; found < n; i++ {
		if i >= 20*n {
			return nil, fmt.Errorf("%d groups reached only %d of %d writers", i, found, n)
		}
		var g struct {
			GroupID string `json:"group_id"`
		}
		cr := creators[i%len(creators)]
		if err := api.do(ctx, "POST", "/v1/groups", cr.Token, map[string]any{"name": fmt.Sprintf("%s-w%d", prefix, i), "members": []string{target}}, &g); err != nil {
			return nil, fmt.Errorf("create a group for the stalled user: %w", err)
		}
		if w := chat.ShardOf(chat.GroupChatID(g.GroupID), n); byWriter[w] == "" {
			byWriter[w] = g.GroupID
			found++
		}
	}
	return byWriter, nil
}

// stallOutcome is what one stall did and how the server answered.
type stallOutcome struct {
	Sent         int64         `json:"sent"`    // notes and group messages acknowledged
	Refused      int64         `json:"refused"` // refused by the server (reason code, or the connection refused)
	Errors       int64         `json:"errors"`  // neither: timeouts, connection lost
	Disconnected bool          `json:"disconnected"`
	After        time.Duration `json:"-"` // from the first note to the server dropping the stalled connection
}

// run opens the stalled connection, fills it, sends into every writer's
// group and then holds the connection until ctx ends or the server drops
// it. tag makes its client id and cmids unique.
func (s *staller) run(ctx context.Context, tag string) stallOutcome {
	var out stallOutcome
	s.runs.Add(1)
	uid := s.user.ID
	cn, err := rawSession(ctx, s.d, s.mqtt, identity{ClientID: uid + "/stall-" + tag, Username: uid, Password: s.user.Token, Subs: []string{"users/" + uid + "/inbox"}})
	switch {
	case err == nil:
	case isRefused(err):
		out.Refused++
		return out
	case ctx.Err() == nil:
		out.Errors++
		return out
	default:
		return out
	}
	defer cn.Close()
	start := time.Now()
	gone := watchGone(ctx, cn)

	var sent, refused, errs atomic.Int64
	send := func(to, cmid, body string) {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		err := s.sender.publish(pctx, "users/"+uid+"/send", []byte(`{"to":"`+to+`","cmid":"`+cmid+`","body":"`+body+`"}`))
		switch {
		case err == nil:
			sent.Add(1)
		case isRefused(err):
			refused.Add(1)
		case ctx.Err() == nil:
			errs.Add(1)
		}
	}
	// cmids start with x: the healthy receivers' codec ignores them.
	body := strings.Repeat("s", s.note)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(s.notes) && ctx.Err() == nil && !closed(gone.done); n = next.Add(1) {
				send("user:"+uid, "x"+tag+"-n"+strconv.FormatInt(n, 10), body)
			}
		})
	}
	wg.Wait()
	for i, g := range s.groups {
		if ctx.Err() != nil || closed(gone.done) {
			break
		}
		wg.Go(func() { send("group:"+g, "x"+tag+"-g"+strconv.Itoa(i), "stall") })
	}
	wg.Wait()
	select {
	case <-ctx.Done():
	case <-gone.done:
	}
	out.Sent, out.Refused, out.Errors = sent.Load(), refused.Load(), errs.Load()
	if at := gone.at.Load(); at != 0 {
		out.Disconnected, out.After = true, time.Unix(0, at).Sub(start)
	}
	return out
}

func (s *staller) close() { s.sender.close() }

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// gone reports when the server dropped a connection that is never read.
type gone struct {
	done chan struct{}
	at   atomic.Int64 // UnixNano of the first failed write
}

// stallPing is how often the stalled client writes a PINGREQ. It reads
// nothing, so a write failing (the server reset the connection) is how it
// learns it was dropped; the pings also keep its keep-alive fresh, as a
// hostile client would.
const stallPing = 250 * time.Millisecond

func watchGone(ctx context.Context, cn net.Conn) *gone {
	g := &gone{done: make(chan struct{})}
	go func() {
		ping := packets.NewControlPacket(packets.PINGREQ)
		t := time.NewTicker(stallPing)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			_ = cn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := ping.WriteTo(cn); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue // our own send buffer is full: not a verdict
				}
				g.at.Store(time.Now().UnixNano())
				close(g.done)
				return
			}
		}
	}()
	return g
}
