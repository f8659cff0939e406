package e2e

// Traffic that survives nodes dying: connections that move to another node
// when theirs is lost, senders that retry every cmid until it is
// acknowledged, recipients that record what they got live, and the checks
// of what PostgreSQL holds afterwards.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

const (
	// publishTimeout bounds one send attempt: longer than the cluster's
	// default request timeout (5s) for a send forwarded to an owner that
	// does not answer, so the server's own answer comes first.
	publishTimeout = 15 * time.Second
	// retryPause spaces the attempts of a cmid the cluster refused, so a
	// send waiting for a new owner does not spin.
	retryPause = 20 * time.Millisecond
)

// liveConn is one MQTT 5 device of an account that reconnects, to the
// first of its nodes that accepts it, whenever its connection is lost.
type liveConn struct {
	name   string
	acct   account
	device string
	addrs  func() []string // MQTT addresses to try, in order
	subs   []string
	onMsg  func(received) // called on paho's goroutine: must not block

	mu    sync.Mutex
	cur   *paho.Client
	conn  net.Conn
	ready chan struct{} // closed once cur is set
	done  chan struct{}
	exit  chan struct{} // closed when the supervisor returned

	connects atomic.Int32
}

// dialLive connects a (blocking until the first connection is up) and
// keeps it connected until the test ends.
func dialLive(t *testing.T, a account, device string, addrs func() []string, onMsg func(received), subs ...string) *liveConn {
	t.Helper()
	lc := &liveConn{
		name: a.Username + "/" + device, acct: a, device: device, addrs: addrs, subs: subs, onMsg: onMsg,
		ready: make(chan struct{}), done: make(chan struct{}), exit: make(chan struct{}),
	}
	go lc.supervise()
	t.Cleanup(lc.close)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := lc.get(ctx); err != nil {
		t.Fatalf("%s: no connection: %v", lc.name, err)
	}
	return lc
}

func (lc *liveConn) close() {
	select {
	case <-lc.done:
	default:
		close(lc.done)
	}
	<-lc.exit
}

func (lc *liveConn) supervise() {
	defer close(lc.exit)
	for {
		c, conn := lc.connect()
		if c == nil {
			return // closed
		}
		lc.mu.Lock()
		lc.cur, lc.conn = c, conn
		close(lc.ready)
		lc.mu.Unlock()
		lc.connects.Add(1)
		select {
		case <-c.Done():
		case <-lc.done:
			_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
			_ = conn.Close()
			return
		}
		_ = conn.Close()
		lc.mu.Lock()
		lc.cur, lc.conn = nil, nil
		lc.ready = make(chan struct{})
		lc.mu.Unlock()
	}
}

// connect tries each address in turn until one accepts the device and its
// subscriptions, or the conn is closed.
func (lc *liveConn) connect() (*paho.Client, net.Conn) {
	for {
		for _, addr := range lc.addrs() {
			select {
			case <-lc.done:
				return nil, nil
			default:
			}
			if c, conn, err := lc.dial(addr); err == nil {
				return c, conn
			}
		}
		select {
		case <-lc.done:
			return nil, nil
		case <-time.After(50 * time.Millisecond): // every node refused: try them again
		}
	}
}

func (lc *liveConn) dial(addr string) (*paho.Client, net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, nil, err
	}
	cfg := paho.ClientConfig{
		Conn:               packets.NewThreadSafeConn(conn),
		OnClientError:      func(error) {},
		OnServerDisconnect: func(*paho.Disconnect) {},
		PacketTimeout:      publishTimeout,
	}
	if lc.onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			lc.onMsg(received{Topic: p.Packet.Topic, Payload: p.Packet.Payload, Retain: p.Packet.Retain})
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	// A connect that takes over the device from a node that does not
	// answer waits for the cluster's request timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{
		ClientID: lc.acct.ID + "/" + lc.device, Username: lc.acct.ID, UsernameFlag: true,
		Password: []byte(lc.acct.Token), PasswordFlag: true, KeepAlive: 30, CleanStart: true,
	}); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	if len(lc.subs) > 0 {
		opts := make([]paho.SubscribeOptions, len(lc.subs))
		for i, f := range lc.subs {
			opts[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
		}
		ack, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
		if err == nil && ack != nil && slices.ContainsFunc(ack.Reasons, func(r byte) bool { return r >= 0x80 }) {
			err = fmt.Errorf("subscribe refused: %v", ack.Reasons)
		}
		if err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
	}
	return c, conn, nil
}

// get returns the current connection, waiting for a reconnect in progress.
func (lc *liveConn) get(ctx context.Context) (*paho.Client, error) {
	for {
		lc.mu.Lock()
		c, ready := lc.cur, lc.ready
		lc.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-ready:
		case <-lc.done:
			return nil, errors.New("closed")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// drop closes c if it is still the current connection, so the supervisor
// reconnects: for a connection whose publish got no answer at all.
func (lc *liveConn) drop(c *paho.Client) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.cur == c && lc.conn != nil {
		_ = lc.conn.Close()
	}
}

// ack is one acknowledged send.
type ack struct {
	chat, sender string
	started, at  time.Time // the acknowledged attempt's publish and PUBACK
}

// sendTarget is a chat a sender writes to.
type sendTarget struct {
	to   string // "user:{id}" or "group:{id}"
	chat string
}

// sendLoad runs senders that pipeline sends and retry each cmid until it is
// acknowledged.
type sendLoad struct {
	stopping chan struct{} // lanes take no new cmid once closed
	quit     context.Context
	halt     context.CancelFunc // lanes give up at once: the test is over
	stopOnce sync.Once
	deadline time.Time // past it a lane gives up its cmid and reports it
	wg       sync.WaitGroup

	mu        sync.Mutex
	acked     map[string]ack // by cmid
	attempted map[string]string
	refusals  map[string]int // reason of a failed attempt -> count
	givenUp   []string
	total     atomic.Int64
}

func newSendLoad(t *testing.T) *sendLoad {
	quit, halt := context.WithCancel(context.Background())
	tr := &sendLoad{
		stopping: make(chan struct{}), quit: quit, halt: halt, deadline: time.Now().Add(50 * time.Second),
		acked: map[string]ack{}, attempted: map[string]string{}, refusals: map[string]int{},
	}
	// A test that ended early (failed) leaves no sender running.
	t.Cleanup(func() {
		halt()
		tr.wg.Wait()
	})
	return tr
}

// send starts lanes goroutines publishing on lc to target, each with one
// send in flight, cmids prefix-{lane}-{n}.
func (tr *sendLoad) send(lc *liveConn, target sendTarget, lanes int, prefix string) {
	for lane := range lanes {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-tr.stopping:
					return
				default:
				}
				cmid := fmt.Sprintf("%s-%d-%d", prefix, lane, n)
				if !tr.deliver(lc, target, cmid) {
					return
				}
			}
		}()
	}
}

// deliver publishes cmid until a PUBACK with reason 0, reconnecting as
// needed; false when it gave up at the deadline.
func (tr *sendLoad) deliver(lc *liveConn, target sendTarget, cmid string) bool {
	payload, _ := json.Marshal(map[string]any{"to": target.to, "cmid": cmid, "type": "text", "body": cmid})
	tr.mu.Lock()
	tr.attempted[cmid] = target.chat
	tr.mu.Unlock()
	for {
		if tr.quit.Err() != nil {
			return false
		}
		if time.Now().After(tr.deadline) {
			tr.mu.Lock()
			tr.givenUp = append(tr.givenUp, cmid)
			tr.mu.Unlock()
			return false
		}
		ctx, cancel := context.WithTimeout(tr.quit, publishTimeout)
		c, err := lc.get(ctx)
		if err != nil {
			cancel()
			tr.refused("no connection: " + err.Error())
			continue
		}
		started := time.Now()
		resp, err := c.Publish(ctx, &paho.Publish{Topic: "users/" + lc.acct.ID + "/send", QoS: 1, Payload: payload})
		cancel()
		switch {
		case err == nil && resp != nil && resp.ReasonCode == 0:
			tr.mu.Lock()
			tr.acked[cmid] = ack{chat: target.chat, sender: lc.acct.ID, started: started, at: time.Now()}
			tr.mu.Unlock()
			tr.total.Add(1)
			return true
		case resp != nil:
			tr.refused(fmt.Sprintf("PUBACK 0x%02x", resp.ReasonCode))
		case errors.Is(err, context.DeadlineExceeded):
			tr.refused("no PUBACK within " + publishTimeout.String())
			lc.drop(c)
		default:
			tr.refused("connection lost")
		}
		time.Sleep(retryPause)
	}
}

func (tr *sendLoad) refused(why string) {
	tr.mu.Lock()
	tr.refusals[why]++
	tr.mu.Unlock()
}

// stop lets every lane finish the cmid it holds (retrying it until
// acknowledged) and waits for them; it fails the test when any gave up.
func (tr *sendLoad) stop(t *testing.T) {
	t.Helper()
	tr.stopOnce.Do(func() { close(tr.stopping) })
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("traffic: %d acknowledged of %d cmids; failed attempts: %v", len(tr.acked), len(tr.attempted), tr.refusals)
	if len(tr.givenUp) > 0 {
		t.Fatalf("%d cmids never acknowledged before the deadline, e.g. %v", len(tr.givenUp), tr.givenUp[:min(5, len(tr.givenUp))])
	}
}

// waitAcks waits until n more sends than now are acknowledged.
func (tr *sendLoad) waitAcks(t *testing.T, what string, n int64) {
	t.Helper()
	want := tr.total.Load() + n
	eventually(t, what, func() error {
		if got := tr.total.Load(); got < want {
			return fmt.Errorf("%d acknowledged sends, want %d", got, want)
		}
		return nil
	})
}

// firstAckStartedAfter is when the first send of chat published after
// since was acknowledged.
func (tr *sendLoad) firstAckStartedAfter(chat string, since time.Time) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var first time.Time
	for _, a := range tr.acked {
		if a.chat == chat && !a.started.Before(since) && (first.IsZero() || a.at.Before(first)) {
			first = a.at
		}
	}
	return first, !first.IsZero()
}

// waitRecovered waits until every chat listed accepted a send published
// after since, and returns the longest time from since to that PUBACK.
func (tr *sendLoad) waitRecovered(t *testing.T, since time.Time, chats ...string) time.Duration {
	t.Helper()
	var worst time.Duration
	eventually(t, "every chat accepts sends again", func() error {
		worst = 0
		for _, ch := range chats {
			at, ok := tr.firstAckStartedAfter(ch, since)
			if !ok {
				return fmt.Errorf("no send to %s acknowledged since %v", ch, since.Format(time.StampMilli))
			}
			worst = max(worst, at.Sub(since))
		}
		return nil
	})
	return worst
}

// storedMsg is one row of the messages table.
type storedMsg struct {
	chat         string
	seq, id      int64
	sender, cmid string
	typ          string
}

// checkStore reads every message from PostgreSQL and checks what the
// fence must guarantee: every acknowledged cmid stored exactly once in its
// chat, no (sender, cmid) twice, seqs 1..max without gap or duplicate in
// every chat, message ids unique across nodes. It returns the rows by
// chat, ordered by seq.
func (c *chatdCluster) checkStore(t *testing.T, acked map[string]ack) map[string][]storedMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	rows, err := c.db.Query(ctx, `SELECT chat_id, seq, id, sender, convert_from(cmid, 'UTF8'), type FROM messages ORDER BY chat_id, seq`)
	if err != nil {
		t.Fatalf("read messages: %v", err)
	}
	byChat := map[string][]storedMsg{}
	bySender := map[[2]string][]storedMsg{}
	byID := map[int64]storedMsg{}
	n := 0
	for rows.Next() {
		var m storedMsg
		if err := rows.Scan(&m.chat, &m.seq, &m.id, &m.sender, &m.cmid, &m.typ); err != nil {
			t.Fatalf("scan message: %v", err)
		}
		n++
		byChat[m.chat] = append(byChat[m.chat], m)
		if m.typ != "system" {
			k := [2]string{m.sender, m.cmid}
			bySender[k] = append(bySender[k], m)
		}
		if prev, dup := byID[m.id]; dup {
			t.Errorf("message id %d twice: %s seq %d and %s seq %d", m.id, prev.chat, prev.seq, m.chat, m.seq)
		}
		byID[m.id] = m
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read messages: %v", err)
	}
	for ch, msgs := range byChat {
		// Ordered by seq, and (chat, seq) is the key: count = max(seq)
		// exactly when the seqs are 1..count.
		if last := msgs[len(msgs)-1].seq; last != int64(len(msgs)) {
			t.Errorf("chat %s: %d messages, max(seq) %d", ch, len(msgs), last)
		}
	}
	for k, msgs := range bySender {
		if len(msgs) > 1 {
			t.Errorf("sender %s cmid %s stored %d times: %+v", k[0], k[1], len(msgs), msgs)
		}
	}
	var lost []string
	for cmid, a := range acked {
		msgs := bySender[[2]string{a.sender, cmid}]
		switch {
		case len(msgs) == 0:
			lost = append(lost, cmid)
		case msgs[0].chat != a.chat:
			t.Errorf("acknowledged %s stored in %s, sent to %s", cmid, msgs[0].chat, a.chat)
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged sends are not stored, e.g. %v", len(lost), len(acked), lost[:min(10, len(lost))])
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("store: %d messages in %d chats, every acknowledged cmid once, seqs gap-free", n, len(byChat))
	return byChat
}

// inboxLog records the inbox messages a recipient's connections got live.
type inboxLog struct {
	mu   sync.Mutex
	got  map[string]map[uint64][]string // chat -> seq -> cmids received with it
	errs []string
}

func newInboxLog() *inboxLog { return &inboxLog{got: map[string]map[uint64][]string{}} }

func (l *inboxLog) record(r received) {
	if !strings.HasSuffix(r.Topic, "/inbox") {
		return
	}
	var m inboxMsg
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := json.Unmarshal(r.Payload, &m); err != nil {
		l.errs = append(l.errs, fmt.Sprintf("inbox payload %q: %v", r.Payload, err))
		return
	}
	if l.got[m.Chat] == nil {
		l.got[m.Chat] = map[uint64][]string{}
	}
	l.got[m.Chat][m.Seq] = append(l.got[m.Chat][m.Seq], m.CMID)
}

// checkCoverage checks one recipient's view of chat: whatever it got live
// is what the store holds at that seq (a deposed owner's message that was
// not stored must never have been delivered), and the live messages plus a
// sync of everything after the last seq it got without a gap are the whole
// history.
func (c *chatdCluster) checkCoverage(t *testing.T, via int, a account, log *inboxLog, ch string, stored []storedMsg) {
	t.Helper()
	log.mu.Lock()
	live := map[uint64][]string{}
	for seq, cmids := range log.got[ch] {
		live[seq] = slices.Clone(cmids)
	}
	errs := slices.Clone(log.errs)
	log.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%s: %v", a.Username, errs)
	}
	dups := 0
	for seq, cmids := range live {
		if seq == 0 || seq > uint64(len(stored)) {
			t.Fatalf("%s got %s seq %d live, the store holds 1..%d", a.Username, ch, seq, len(stored))
		}
		for _, cmid := range cmids {
			if want := stored[seq-1].cmid; cmid != want {
				t.Fatalf("%s got %s seq %d live as cmid %q; the store holds %q there", a.Username, ch, seq, cmid, want)
			}
		}
		dups += len(cmids) - 1
	}
	var contiguous uint64
	for live[contiguous+1] != nil {
		contiguous++
	}
	var synced []inboxMsg
	for after := contiguous; ; {
		page := c.server(via).history(t, a, ch, fmt.Sprintf("?limit=200&after=%d", after))
		synced = append(synced, page.Messages...)
		if page.Next == nil {
			break
		}
		after = *page.Next
	}
	have := map[uint64]bool{}
	for seq := range live {
		have[seq] = true
	}
	for _, m := range synced {
		if want := stored[m.Seq-1]; m.CMID != want.cmid {
			t.Fatalf("sync of %s seq %d: cmid %q, the store holds %q", ch, m.Seq, m.CMID, want.cmid)
		}
		have[m.Seq] = true
	}
	for seq := uint64(1); seq <= uint64(len(stored)); seq++ {
		if !have[seq] {
			t.Fatalf("%s: seq %d of %s neither delivered live nor synced after %d", a.Username, seq, ch, contiguous)
		}
	}
	t.Logf("%s %s: %d of %d seqs live (%d duplicates), gap-free live up to %d, %d synced",
		a.Username, ch, len(live), len(stored), dups, contiguous, len(synced))
}
