package e2e

// Traffic that survives nodes dying, through the client library:
// connections that move to another node when theirs is lost, senders that
// retry every cmid until it is stored, recipients that record what their
// client delivered, and the checks of what PostgreSQL holds afterwards.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqchat/mqchat/client"
)

const (
	// publishTimeout bounds one send attempt: longer than the cluster's
	// default request timeout (5s) for a send forwarded to an owner that
	// does not answer, so the server's own answer comes first.
	publishTimeout = 15 * time.Second
)

// liveConn is one device of an account, through the client library: it
// reconnects, to the first of its nodes that accepts it, whenever its
// connection is lost, and retries each send with its cmid until stored.
type liveConn struct {
	name string
	acct account
	c    *client.Client
}

// dialLive connects a (blocking until the first connection is up) and
// keeps it connected until the test ends. Every message the client
// delivers goes to log, when there is one.
func dialLive(t *testing.T, a account, device string, addrs func() []string, log *inboxLog) *liveConn {
	t.Helper()
	var next atomic.Int64
	opts := client.Options{
		MQTTAddr: addrs()[0], UserID: a.ID, Token: a.Token, DeviceID: device,
		RequestTimeout: publishTimeout, ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("device", a.Username+"/"+device),
		// Each dial starts one node further along the list, so that a node
		// that takes connections but refuses the login is not tried
		// forever; the first dial goes to the first node.
		Dialer: func(ctx context.Context, _ string) (net.Conn, error) {
			list := addrs()
			first := int(next.Add(1)-1) % len(list)
			var errs []error
			for k := range list {
				var d net.Dialer
				dctx, cancel := context.WithTimeout(ctx, time.Second)
				conn, err := d.DialContext(dctx, "tcp", list[(first+k)%len(list)])
				cancel()
				if err == nil {
					return conn, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("%s/%s: no connection: %v", a.Username, device, err)
	}
	t.Cleanup(c.Close)
	go func() {
		for m := range c.Messages() {
			if log != nil {
				log.record(m)
			}
		}
	}()
	go func() {
		for range c.Events() {
		}
	}()
	return &liveConn{name: a.Username + "/" + device, acct: a, c: c}
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
	givenUp   []string
	total     atomic.Int64
}

func newSendLoad(t *testing.T) *sendLoad {
	quit, halt := context.WithCancel(context.Background())
	tr := &sendLoad{
		stopping: make(chan struct{}), quit: quit, halt: halt, deadline: time.Now().Add(50 * time.Second),
		acked: map[string]ack{}, attempted: map[string]string{},
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

// probe starts a fresh send to target every probeEvery from now until one
// published at or after since is acknowledged: lanes stuck on a send to a
// dead owner (until the request timeout) would otherwise hide when the
// chat took sends again. Probe sends are sends like the others (retried,
// checked in the store).
func (tr *sendLoad) probe(lc *liveConn, target sendTarget, since time.Time, prefix string) {
	const probeEvery = 100 * time.Millisecond
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for n := 0; ; n++ {
			if _, ok := tr.firstAckStartedAfter(target.chat, since); ok {
				return
			}
			tr.wg.Add(1)
			go func() {
				defer tr.wg.Done()
				tr.deliver(lc, target, fmt.Sprintf("%s-%d", prefix, n))
			}()
			select {
			case <-tick.C:
			case <-tr.stopping:
				return
			case <-tr.quit.Done():
				return
			}
		}
	}()
}

// deliver sends cmid until it is stored (the client retries it across
// reconnects and refusals); false when it gave up at the deadline.
func (tr *sendLoad) deliver(lc *liveConn, target sendTarget, cmid string) bool {
	tr.mu.Lock()
	tr.attempted[cmid] = target.chat
	tr.mu.Unlock()
	ctx, cancel := context.WithDeadline(tr.quit, tr.deadline)
	defer cancel()
	started := time.Now()
	sent, err := lc.c.SendMessage(ctx, client.Outgoing{To: target.to, CMID: cmid, Body: cmid})
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch {
	case err == nil:
		if sent.Chat != target.chat {
			tr.givenUp = append(tr.givenUp, fmt.Sprintf("%s stored in %s, sent to %s", cmid, sent.Chat, target.chat))
			return false
		}
		tr.acked[cmid] = ack{chat: target.chat, sender: lc.acct.ID, started: started, at: time.Now()}
		tr.total.Add(1)
		return true
	case tr.quit.Err() != nil:
		return false
	default:
		tr.givenUp = append(tr.givenUp, fmt.Sprintf("%s: %v", cmid, err))
		return false
	}
}

// stop lets every lane finish the cmid it holds (retrying it until
// acknowledged) and waits for them; it fails the test when any gave up.
func (tr *sendLoad) stop(t *testing.T) {
	t.Helper()
	tr.stopOnce.Do(func() { close(tr.stopping) })
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("traffic: %d acknowledged of %d cmids", len(tr.acked), len(tr.attempted))
	if len(tr.givenUp) > 0 {
		t.Fatalf("%d cmids never stored before the deadline, e.g. %v", len(tr.givenUp), tr.givenUp[:min(5, len(tr.givenUp))])
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

// inboxLog records the messages a recipient's client delivered.
type inboxLog struct {
	mu  sync.Mutex
	got map[string]map[uint64][]string // chat -> seq -> cmids delivered with it
}

func newInboxLog() *inboxLog { return &inboxLog{got: map[string]map[uint64][]string{}} }

func (l *inboxLog) record(m client.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got[m.Chat] == nil {
		l.got[m.Chat] = map[uint64][]string{}
	}
	l.got[m.Chat][m.Seq] = append(l.got[m.Chat][m.Seq], m.CMID)
}

// checkCoverage checks one recipient's view of chat: whatever its client
// delivered (live, or fetched after a reconnect) is what the store holds
// at that seq (a deposed owner's message that was not stored must never
// have been delivered), once, and the delivered messages plus a sync of
// everything after the last seq it got without a gap are the whole
// history.
func (c *chatdCluster) checkCoverage(t *testing.T, via int, a account, log *inboxLog, ch string, stored []storedMsg) {
	t.Helper()
	log.mu.Lock()
	live := map[uint64][]string{}
	for seq, cmids := range log.got[ch] {
		live[seq] = slices.Clone(cmids)
	}
	log.mu.Unlock()
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
