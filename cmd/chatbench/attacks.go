package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqchat/mqchat/services/groups"
)

// attackKind is one way of misbehaving. run keeps at it until ctx ends,
// bounded in count besides; when the server refuses or drops it, it counts
// that and retries with backoff, as a determined client would.
type attackKind struct {
	name string
	run  func(ctx context.Context, a *attackEnv, st *attackCounters)
}

// attackKinds in their default rotation order.
var attackKinds = []attackKind{
	{"stall", stallAttack},
	{"alias", aliasFlood},
	{"subscribe", subscribeFlood},
	{"reconnect", reconnectStorm},
	{"connections", connectionFlood},
	{"groupops", groupOpsFlood},
	{"oversize", oversizeFlood},
	{"malformed", malformedFlood},
}

// Per-run bounds of the attackers (a run lasts one rotation slot).
const (
	aliasConns      = 4    // connections holding topic aliases at once
	aliasPerConn    = 8192 // aliases each tries to register
	aliasTopicBytes = 2048 // length of each aliased topic
	subsConns       = 2    // connections holding subscriptions at once
	subsPerPacket   = 100  // filters per SUBSCRIBE
	subsPerConn     = 5000 // filters each tries to hold
	subsFilterBytes = 256  // length of each filter
	stormMax        = 3000 // CONNECTs of the one device id
	connFloodMax    = 200  // connections of one user held at once
	groupOpsMax     = 1000 // group creates and renames
	oversizeMax     = 100  // packets over the server's maximum
	malformedMax    = 300  // malformed packets
	verdictWait     = 2 * time.Second
)

func attackNames() []string {
	names := make([]string, len(attackKinds))
	for i, k := range attackKinds {
		names[i] = k.name
	}
	return names
}

func checkAttacks(names []string) error {
	if len(names) == 0 {
		return errors.New("--attacks must name at least one attacker")
	}
	for i, n := range names {
		if !slices.Contains(attackNames(), n) {
			return fmt.Errorf("--attacks: unknown attacker %q (known: %s)", n, strings.Join(attackNames(), ", "))
		}
		if slices.Contains(names[:i], n) {
			return fmt.Errorf("--attacks: %q named twice", n) // each attacker has one user
		}
	}
	return nil
}

// attackCounters are one attacker kind's figures over the whole soak.
type attackCounters struct {
	runs    atomic.Int64
	actions atomic.Int64 // packets, connections, requests attempted
	refused atomic.Int64 // refused with a reason code or HTTP status
	dropped atomic.Int64 // connections the server closed
	errors  atomic.Int64 // anything else: timeouts, the tool's own failures
}

// failed counts why an action did not go through. Failures caused by the
// run's own end are not counted.
func (c *attackCounters) failed(ctx context.Context, err error) {
	var he *httpError
	switch {
	case ctx.Err() != nil:
	case isRefused(err), errors.As(err, &he) && he.status < 500:
		c.refused.Add(1)
	case isDrop(err):
		c.dropped.Add(1)
	default:
		c.errors.Add(1)
	}
}

// isDrop reports whether err is the server closing or resetting the
// connection.
func isDrop(err error) bool {
	return errors.Is(err, errServerDisconnect) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// attackStat is attackCounters as reported.
type attackStat struct {
	Kind    string `json:"kind"`
	Runs    int64  `json:"runs"`
	Actions int64  `json:"actions"`
	Refused int64  `json:"refused"`
	Dropped int64  `json:"dropped"`
	Errors  int64  `json:"errors"`
}

func (c *attackCounters) stat(kind string) attackStat {
	return attackStat{kind, c.runs.Load(), c.actions.Load(), c.refused.Load(), c.dropped.Load(), c.errors.Load()}
}

// backoff spaces out an attacker's retries after a refusal or a drop:
// 50 ms doubling up to 2 s, from the start again after a success.
type backoff struct{ cur time.Duration }

const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 2 * time.Second
)

func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, backoffMin), backoffMax)
	return b.cur
}

func (b *backoff) wait(ctx context.Context) bool { return sleepCtx(ctx, b.next()) }
func (b *backoff) reset()                        { b.cur = 0 }

// attackEnv is what the attackers share: one user per attacker kind, a
// dialer on source addresses of their own, the staller's groups.
type attackEnv struct {
	o     options
	api   *restClient
	d     *dialer
	users map[string]account
	stall *staller
	group *client // the groupops user's MQTT connection
	tags  atomic.Int64

	mu    sync.Mutex
	drops []float64 // seconds from a stall's first note to the server dropping it
}

func newAttackEnv(ctx context.Context, o options, api *restClient, healthy []account, log *slog.Logger) (*attackEnv, error) {
	a := &attackEnv{o: o, api: api, d: newDialerFrom(4, 8), users: map[string]account{}}
	users, err := api.registerMany(ctx, o.Prefix+"-x", len(o.Attacks))
	if err != nil {
		return nil, err
	}
	for i, n := range o.Attacks {
		a.users[n] = users[i]
	}
	if u, ok := a.users["stall"]; ok {
		log.Info("making one group of the stalled user per writer", "writers", o.Writers)
		if a.stall, err = newStaller(ctx, o, api, u, healthy); err != nil {
			return nil, err
		}
	}
	if u, ok := a.users["groupops"]; ok {
		var c counters
		if a.group, err = newClient(ctx, a.d, o.MQTT, identity{ClientID: u.ID + "/ops", Username: u.ID, Password: u.Token}, &c, nil); err != nil {
			a.close()
			return nil, err
		}
	}
	return a, nil
}

func (a *attackEnv) close() {
	if a.stall != nil {
		a.stall.close()
	}
	if a.group != nil {
		a.group.close()
	}
}

func (a *attackEnv) tag() string { return strconv.FormatInt(a.tags.Add(1), 10) }

func (a *attackEnv) ident(kind, device string) identity {
	u := a.users[kind]
	return identity{ClientID: u.ID + "/" + device, Username: u.ID, Password: u.Token}
}

// connect opens a raw session that closes when ctx ends; failures are
// counted.
func (a *attackEnv) connect(ctx context.Context, st *attackCounters, id identity) (net.Conn, *packets.Connack, bool) {
	st.actions.Add(1)
	cn, ack, err := rawConnect(ctx, a.d, a.o.MQTT, id, nil)
	if err != nil {
		st.failed(ctx, err)
		return nil, nil, false
	}
	context.AfterFunc(ctx, func() { _ = cn.Close() })
	return cn, ack, true
}

// stallAttack is the isolation scenario's stalled consumer; dropped, it
// comes back with a new connection.
func stallAttack(ctx context.Context, a *attackEnv, st *attackCounters) {
	var b backoff
	for ctx.Err() == nil {
		out := a.stall.run(ctx, "r"+a.tag())
		st.actions.Add(1 + out.Sent + out.Refused + out.Errors)
		st.refused.Add(out.Refused)
		st.errors.Add(out.Errors)
		if !out.Disconnected {
			if out.Refused+out.Errors > 0 && out.Sent == 0 {
				b.wait(ctx) // not even connected
			}
			continue
		}
		st.dropped.Add(1)
		a.mu.Lock()
		a.drops = append(a.drops, out.After.Seconds())
		a.mu.Unlock()
		b.wait(ctx)
	}
}

// aliasFlood registers as many MQTT 5 topic aliases as it can, each for a
// long topic, on several connections that it then holds: the server keeps
// every alias's topic for the connection's life.
func aliasFlood(ctx context.Context, a *attackEnv, st *attackCounters) {
	pad := strings.Repeat("a", aliasTopicBytes)
	uid := a.users["alias"].ID
	tag := a.tag()
	var b backoff
	for c := 0; c < aliasConns && ctx.Err() == nil; {
		cn, _, ok := a.connect(ctx, st, a.ident("alias", fmt.Sprintf("alias%s-%d", tag, c)))
		if !ok {
			b.wait(ctx)
			continue
		}
		done := discard(cn)
		full := true
		for i := 1; i <= aliasPerConn && ctx.Err() == nil; i++ {
			pk := packets.NewControlPacket(packets.PUBLISH)
			p := pk.Content.(*packets.Publish)
			alias := uint16(i)
			p.Topic = "users/" + uid + "/send/" + strconv.Itoa(i) + "/" + pad
			p.Properties = &packets.Properties{TopicAlias: &alias}
			p.Payload = []byte("{}")
			if !writeAction(ctx, cn, st, pk, done) {
				full = false
				break
			}
		}
		if !full {
			b.wait(ctx)
			continue
		}
		b.reset()
		c++
	}
	<-ctx.Done() // the aliases live as long as their connections
}

// writeAction writes one attacker packet and counts it; false when the
// connection is gone.
func writeAction(ctx context.Context, cn net.Conn, st *attackCounters, pk *packets.ControlPacket, done <-chan struct{}) bool {
	st.actions.Add(1)
	_ = cn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := pk.WriteTo(cn)
	if err == nil && closed(done) {
		err = errServerDisconnect
	}
	if err != nil {
		st.failed(ctx, err)
		return false
	}
	return true
}

// subscribeFlood subscribes to thousands of long filters under the
// user's own responses/ subtree, a hundred per SUBSCRIBE, and holds them.
func subscribeFlood(ctx context.Context, a *attackEnv, st *attackCounters) {
	pad := strings.Repeat("f", subsFilterBytes)
	uid := a.users["subscribe"].ID
	tag := a.tag()
	var b backoff
	for c := 0; c < subsConns && ctx.Err() == nil; {
		cn, _, ok := a.connect(ctx, st, a.ident("subscribe", fmt.Sprintf("subs%s-%d", tag, c)))
		if !ok {
			b.wait(ctx)
			continue
		}
		full := true
		for n, pid := 0, uint16(1); n < subsPerConn && ctx.Err() == nil; n, pid = n+subsPerPacket, pid+1 {
			filters := make([]string, subsPerPacket)
			for j := range filters {
				filters[j] = fmt.Sprintf("users/%s/responses/%s-%d/%d/%s", uid, tag, c, n+j, pad)
			}
			st.actions.Add(int64(len(filters)))
			refused, _, err := rawSubscribe(cn, pid, filters)
			if err != nil {
				st.failed(ctx, err)
				full = false
				break
			}
			st.refused.Add(int64(refused))
		}
		if !full {
			_ = cn.Close()
			b.wait(ctx)
			continue
		}
		b.reset()
		c++
	}
	<-ctx.Done()
}

// reconnectStorm connects one device id over and over, as fast as the
// server lets it.
func reconnectStorm(ctx context.Context, a *attackEnv, st *attackCounters) {
	id := a.ident("reconnect", "storm")
	var b backoff
	for range stormMax {
		if ctx.Err() != nil {
			return
		}
		cn, _, ok := a.connect(ctx, st, id)
		if !ok {
			b.wait(ctx)
			continue
		}
		b.reset()
		// A clean DISCONNECT, then wait for the server to close first: the
		// TIME_WAIT stays on its side, not on the tool's ports.
		_, _ = packets.NewControlPacket(packets.DISCONNECT).WriteTo(cn)
		_ = cn.SetReadDeadline(time.Now().Add(verdictWait))
		_, _ = packets.ReadPacket(cn)
		_ = cn.Close()
	}
}

// connectionFlood opens as many connections of one user (distinct device
// ids) as the server allows, up to connFloodMax, and holds them.
func connectionFlood(ctx context.Context, a *attackEnv, st *attackCounters) {
	tag := a.tag()
	var held []<-chan struct{}
	var b backoff
	for i := 0; len(held) < connFloodMax && ctx.Err() == nil; i++ {
		cn, _, ok := a.connect(ctx, st, a.ident("connections", fmt.Sprintf("m%s-%d", tag, i)))
		if !ok {
			b.wait(ctx)
			continue
		}
		b.reset()
		held = append(held, discard(cn))
	}
	<-ctx.Done()
	// A server enforcing a connection limit may close older connections
	// instead of refusing new ones.
	for _, done := range held {
		select {
		case <-done:
		case <-time.After(verdictWait): // closing them is under way
		}
	}
}

// groupOpsFlood creates and renames groups as fast as it can, over REST
// and over MQTT (users/{me}/groups), in turns.
func groupOpsFlood(ctx context.Context, a *attackEnv, st *attackCounters) {
	u := a.users["groupops"]
	tag := a.tag()
	var restGroup, mqttGroup string
	var b backoff
	for i := range groupOpsMax {
		if ctx.Err() != nil {
			return
		}
		st.actions.Add(1)
		name := fmt.Sprintf("flood-%s-%d", tag, i)
		var err error
		switch {
		case i%4 == 0 || i%4 == 1 && restGroup == "":
			var g struct {
				GroupID string `json:"group_id"`
			}
			if err = a.restOp(ctx, "POST", "/v1/groups", u.Token, map[string]any{"name": name, "members": []string{}}, &g); err == nil {
				restGroup = g.GroupID
			}
		case i%4 == 1:
			err = a.restOp(ctx, "PATCH", "/v1/groups/"+restGroup, u.Token, map[string]any{"name": name}, nil)
		case i%4 == 2 || mqttGroup == "":
			opID := "op" + tag + "-" + strconv.Itoa(i)
			if err = a.mqttOp(ctx, u.ID, map[string]any{"op_id": opID, "op": "create", "name": name}); err == nil {
				mqttGroup = groups.DeriveID(u.ID, opID)
			}
		default:
			err = a.mqttOp(ctx, u.ID, map[string]any{"op_id": "op" + tag + "-" + strconv.Itoa(i), "op": "rename", "group_id": mqttGroup, "name": name})
		}
		if err != nil {
			st.failed(ctx, err)
			b.wait(ctx)
			continue
		}
		b.reset()
	}
}

// restOp makes one request; a 429 is a refusal, not a reason to wait.
func (a *attackEnv) restOp(ctx context.Context, method, path, token string, in, out any) error {
	status, _, err := a.api.try(ctx, method, path, token, in, out)
	if err == nil && status == http.StatusTooManyRequests {
		return &httpError{method: method, path: path, status: status}
	}
	return err
}

func (a *attackEnv) mqttOp(ctx context.Context, uid string, req map[string]any) error {
	raw, err := json.Marshal(req)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	return a.group.publish(pctx, "users/"+uid+"/groups", raw)
}

// oversizeFlood sends PUBLISH packets larger than the maximum packet size
// the server announced in its CONNACK (1 MiB if it announced none).
func oversizeFlood(ctx context.Context, a *attackEnv, st *attackCounters) {
	uid := a.users["oversize"].ID
	tag := a.tag()
	var b backoff
	for i := range oversizeMax {
		if ctx.Err() != nil {
			return
		}
		cn, ack, ok := a.connect(ctx, st, a.ident("oversize", "big"+tag+"-"+strconv.Itoa(i)))
		if !ok {
			b.wait(ctx)
			continue
		}
		size := 1 << 20
		if ack.Properties != nil && ack.Properties.MaximumPacketSize != nil {
			size = int(*ack.Properties.MaximumPacketSize) + 1024
		}
		pk := packets.NewControlPacket(packets.PUBLISH)
		p := pk.Content.(*packets.Publish)
		p.Topic = "users/" + uid + "/send"
		p.Payload = make([]byte, size)
		st.actions.Add(1)
		_ = cn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := pk.WriteTo(cn)
		if err == nil {
			err = verdict(cn, nil)
		}
		_ = cn.Close()
		if err != nil {
			st.failed(ctx, err)
			b.wait(ctx) // the expected answer is a drop: reconnecting at once is the flood
		}
	}
}

// malformedFlood sends, in turns, garbage after a CONNECT, a PUBLISH whose
// topic is not UTF-8, and a send whose JSON envelope is cut off.
func malformedFlood(ctx context.Context, a *attackEnv, st *attackCounters) {
	uid := a.users["malformed"].ID
	tag := a.tag()
	var b backoff
	for i := range malformedMax {
		if ctx.Err() != nil {
			return
		}
		cn, _, ok := a.connect(ctx, st, a.ident("malformed", "bad"+tag+"-"+strconv.Itoa(i)))
		if !ok {
			b.wait(ctx)
			continue
		}
		st.actions.Add(1)
		_ = cn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		var err error
		switch i % 3 {
		case 0: // packet type 0 is reserved; the rest is noise
			_, err = cn.Write(append([]byte{0x00, 0x20}, []byte(strings.Repeat("\xde\xad\xbe\xef", 8))...))
		case 1:
			pk := packets.NewControlPacket(packets.PUBLISH)
			p := pk.Content.(*packets.Publish)
			p.Topic, p.QoS, p.PacketID, p.Payload = "users/"+uid+"/send/\xff\xfe", 1, 1, []byte("{}")
			_, err = pk.WriteTo(cn)
		case 2:
			pk := packets.NewControlPacket(packets.PUBLISH)
			p := pk.Content.(*packets.Publish)
			p.Topic, p.QoS, p.PacketID, p.Payload = "users/"+uid+"/send", 1, 1, []byte(`{"to":"user:`)
			_, err = pk.WriteTo(cn)
		}
		if err == nil {
			err = verdict(cn, func(p *packets.ControlPacket) error {
				if ack, ok := p.Content.(*packets.Puback); ok && ack.ReasonCode >= 0x80 {
					return &refusedError{what: "publish", code: ack.ReasonCode}
				}
				return nil
			})
		}
		_ = cn.Close()
		if err != nil {
			st.failed(ctx, err)
			if !isRefused(err) {
				b.wait(ctx)
			}
		}
	}
}

// verdict reads what the server answers to an attacker's packet for up to
// verdictWait: a drop (a DISCONNECT or the connection closed), a refusal
// that check finds in a packet, or nothing (nil).
func verdict(cn net.Conn, check func(*packets.ControlPacket) error) error {
	_ = cn.SetReadDeadline(time.Now().Add(verdictWait))
	for {
		p, err := packets.ReadPacket(cn)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return nil
		case err != nil:
			return err
		case p.Type == packets.DISCONNECT:
			return errServerDisconnect
		case check != nil:
			if err := check(p); err != nil {
				return err
			}
			if p.Type == packets.PUBACK {
				return nil
			}
		}
	}
}
