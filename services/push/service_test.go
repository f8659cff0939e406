package push_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqchat/mqchat/internal/fcmtest"
	"github.com/mqchat/mqchat/internal/metrics"
	"github.com/mqchat/mqchat/services/presence"
	"github.com/mqchat/mqchat/services/push"
	"github.com/mqchat/mqchat/services/push/fcm"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/pebble"
)

const wait = 20 * time.Second

// rig is a push service on a real Pebble store, sending through the real
// Firebase SDK to the fcmtest stand-in.
type rig struct {
	fcm *fcmtest.Server
	st  *pebble.Store
	svc *push.Service
	reg *prometheus.Registry
}

func newRig(t *testing.T, opts push.Options) *rig {
	t.Helper()
	srv, err := fcmtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	prov, err := fcm.New(context.Background(), fcm.Options{CredentialsFile: srv.CredentialsFile, Endpoint: srv.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	st, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{fcm: srv, st: st, reg: prometheus.NewRegistry()}
	opts.Metrics = metrics.NewPush(r.reg, func() int { return r.svc.Depth() })
	opts.Cursors, opts.Users = st, st
	r.svc = push.New(st, prov, opts)
	t.Cleanup(func() {
		r.svc.Close()
		_ = st.Close()
	})
	return r
}

func (r *rig) device(t *testing.T, uid, dev, token string) {
	t.Helper()
	err := r.st.PutDevice(context.Background(), store.Device{UserID: uid, DeviceID: dev, Platform: store.PlatformAndroid, PushToken: token, UpdatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
}

func (r *rig) waitRequests(t *testing.T, what string, cond func([]fcmtest.Request) bool) []fcmtest.Request {
	t.Helper()
	reqs, ok := r.fcm.Wait(wait, cond)
	if !ok {
		t.Fatalf("timed out waiting for %s; got %d requests", what, len(reqs))
	}
	return reqs
}

func atLeast(n int) func([]fcmtest.Request) bool {
	return func(r []fcmtest.Request) bool { return len(r) >= n }
}

func msg(chat string, seq uint64, from, body string) store.Message {
	raw, _ := json.Marshal(body)
	return store.Message{Chat: chat, Seq: seq, From: from, Type: "text", Body: raw, SentAt: time.Now()}
}

// TestCollapsePerChat: while a worker is busy, newer messages of a chat
// fold into the push already queued for it: one push, the newest seq.
func TestCollapsePerChat(t *testing.T) {
	r := newRig(t, push.Options{Workers: 1})
	r.device(t, "busy", "phone", "tok-busy")
	r.device(t, "bob", "phone", "tok-bob")
	release := r.fcm.Hold()
	r.svc.Enqueue("busy", msg("d:alice:busy", 1, "alice", "hi"))
	r.waitRequests(t, "the worker to be busy", atLeast(1))
	for seq := uint64(1); seq <= 3; seq++ {
		r.svc.Enqueue("bob", msg("d:alice:bob", seq, "alice", fmt.Sprint("m", seq)))
	}
	r.svc.Enqueue("bob", msg("g:team", 9, "carol", "other chat"))
	if d := r.svc.Depth(); d != 2 {
		t.Fatalf("depth %d, want 2 (one per chat)", d)
	}
	release()
	reqs := r.waitRequests(t, "both pushes to bob", atLeast(3))
	time.Sleep(100 * time.Millisecond) // nothing else may follow
	bob := r.fcm.To("tok-bob")
	if len(bob) != 2 {
		t.Fatalf("bob got %d pushes, want 2: %+v", len(bob), reqs)
	}
	byChat := map[string]fcmtest.Message{}
	for _, q := range bob {
		byChat[q.Message.Data["chat"]] = q.Message
	}
	d := byChat["d:alice:bob"]
	if d.Data["seq"] != "3" || d.Data["unread"] != "3" || d.Data["from"] != "alice" {
		t.Fatalf("collapsed push data = %v, want seq 3 unread 3 from alice", d.Data)
	}
	if d.Notification.Body != "3 new messages" {
		t.Fatalf("body %q", d.Notification.Body)
	}
	if got := r.counter(t, "mqchat_push_collapsed_total", ""); got != 2 {
		t.Fatalf("collapsed = %v, want 2", got)
	}
}

// counter reads a push metric (summed over labels, or the one whose
// reason label is reason).
func (r *rig) counter(t *testing.T, name, reason string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := reason == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func (r *rig) waitCounter(t *testing.T, name, reason string, want float64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for r.counter(t, name, reason) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s{reason=%q} = %v, want %v", name, reason, r.counter(t, name, reason), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBodyOnlyWhenConfigured: message text leaves only with IncludeBody.
func TestBodyOnlyWhenConfigured(t *testing.T) {
	for _, include := range []bool{false, true} {
		t.Run(fmt.Sprint("include_body=", include), func(t *testing.T) {
			r := newRig(t, push.Options{IncludeBody: include})
			r.device(t, "bob", "phone", "tok")
			r.svc.Enqueue("bob", msg("d:alice:bob", 1, "alice", "secret plans"))
			got := r.waitRequests(t, "the push", atLeast(1))[0].Message.Notification.Body
			want := "New message"
			if include {
				want = "secret plans"
			}
			if got != want {
				t.Fatalf("body %q, want %q", got, want)
			}
		})
	}
}

// TestE2EBodyNeverPushed: an e2e message's body is ciphertext (or an
// object of per-device ciphertexts) and never becomes notification text,
// even with IncludeBody on.
func TestE2EBodyNeverPushed(t *testing.T) {
	r := newRig(t, push.Options{IncludeBody: true})
	r.device(t, "bob", "phone", "tok")
	for i, typ := range []string{"e2e", "E2E"} {
		m := msg(fmt.Sprintf("d:alice%d:bob", i), 1, "alice", "c2VjcmV0IHBsYW5z")
		m.Type = typ
		r.svc.Enqueue("bob", m)
		got := r.waitRequests(t, "the push", atLeast(i+1))[i].Message
		if got.Notification.Body != "New message" {
			t.Fatalf("type %s: pushed body %q, want the summary", typ, got.Notification.Body)
		}
		for k, v := range got.Data {
			if strings.Contains(v, "c2VjcmV0") {
				t.Fatalf("type %s: data %s carries the body: %q", typ, k, v)
			}
		}
	}
}

// TestDeadTokensDeleted: UNREGISTERED and token INVALID_ARGUMENT answers
// delete that device's token and only that one.
func TestDeadTokensDeleted(t *testing.T) {
	r := newRig(t, push.Options{})
	r.device(t, "bob", "old", "tok-old")
	r.device(t, "bob", "bad", "tok-bad")
	r.device(t, "bob", "new", "tok-new")
	r.fcm.Script("tok-old", fcmtest.Unregistered)
	r.fcm.Script("tok-bad", fcmtest.InvalidArgument)
	r.svc.Enqueue("bob", msg("d:alice:bob", 1, "alice", "hi"))
	deadline := time.Now().Add(wait)
	for {
		devs, err := r.st.Devices(context.Background(), "bob")
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) == 1 && devs[0].DeviceID == "new" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices left: %+v", devs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The counters move just after the deletes they count.
	r.waitCounter(t, "mqchat_push_tokens_removed_total", "", 2)
	r.waitCounter(t, "mqchat_push_sent_total", "", 1)
	if got := r.counter(t, "mqchat_push_tokens_removed_total", ""); got != 2 {
		t.Fatalf("tokens removed = %v, want 2", got)
	}
}

// TestTransientRetriedWithBackoff: QUOTA_EXCEEDED (not retried by the SDK)
// is retried by the worker after a doubling delay, then succeeds.
func TestTransientRetriedWithBackoff(t *testing.T) {
	const backoff = 80 * time.Millisecond
	r := newRig(t, push.Options{Backoff: backoff, MaxBackoff: time.Second})
	r.device(t, "bob", "phone", "tok")
	r.fcm.Script("tok", fcmtest.QuotaExceeded, fcmtest.Internal)
	r.svc.Enqueue("bob", msg("d:alice:bob", 1, "alice", "hi"))
	reqs := r.waitRequests(t, "three attempts", atLeast(3))
	if reqs[2].Answer != fcmtest.OK {
		t.Fatalf("third answer %s", reqs[2].Answer)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < backoff {
		t.Errorf("first retry after %s, want >= %s", gap, backoff)
	}
	if gap := reqs[2].At.Sub(reqs[1].At); gap < 2*backoff {
		t.Errorf("second retry after %s, want >= %s", gap, 2*backoff)
	}
	r.waitCounter(t, "mqchat_push_sent_total", "", 1)
}

// TestGivesUpAfterMaxAttempts: a provider that keeps failing is tried
// MaxAttempts times and the push is counted failed with its reason.
func TestGivesUpAfterMaxAttempts(t *testing.T) {
	r := newRig(t, push.Options{Backoff: time.Millisecond, MaxAttempts: 3})
	r.device(t, "bob", "phone", "tok")
	r.fcm.SetFallback(fcmtest.Internal)
	r.svc.Enqueue("bob", msg("d:alice:bob", 1, "alice", "hi"))
	r.waitCounter(t, "mqchat_push_failed_total", "internal", 1)
	if n := len(r.fcm.To("tok")); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
}

// TestFullQueueDrops: with the only worker stuck and the queue full,
// Enqueue returns at once and counts the drop.
func TestFullQueueDrops(t *testing.T) {
	r := newRig(t, push.Options{Workers: 1, QueueSize: 2})
	r.device(t, "stuck", "phone", "tok-stuck")
	release := r.fcm.Hold()
	defer release()
	r.svc.Enqueue("stuck", msg("d:a:stuck", 1, "a", "x"))
	r.waitRequests(t, "the worker to be busy", atLeast(1))
	start := time.Now()
	for i := range 5 {
		r.svc.Enqueue(fmt.Sprint("u", i), msg("d:a:b", 1, "a", "x"))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Enqueue blocked for %s", d)
	}
	if got := r.counter(t, "mqchat_push_dropped_total", ""); got != 3 {
		t.Fatalf("dropped = %v, want 3", got)
	}
	if got := r.counter(t, "mqchat_push_queue_depth", ""); got != 2 {
		t.Fatalf("queue depth = %v, want 2", got)
	}
}

// TestTrackerPushesOnlyUnreceived: an offline recipient is pushed at once,
// a connected one only when its device does not acknowledge in time, the
// sender never.
func TestTrackerPushesOnlyUnreceived(t *testing.T) {
	r := newRig(t, push.Options{})
	pres := presence.New(nopPublisher{}, presence.Options{})
	tr := push.NewTracker(r.svc, pres, 150*time.Millisecond)
	t.Cleanup(tr.Close)
	for _, u := range []string{"alice", "off", "acker", "silent"} {
		r.device(t, u, "phone", "tok-"+u)
	}
	pres.Connected("alice", "alice/phone")
	pres.Connected("acker", "acker/phone")
	pres.Connected("silent", "silent/phone")

	m := msg("g:team", 1, "alice", "hello")
	tr.Fanout([]string{"alice", "off", "acker", "silent"}, m)
	tr.Delivered("acker", "g:team", 1)
	r.waitRequests(t, "pushes to off and silent", atLeast(2))
	time.Sleep(300 * time.Millisecond) // past the ack timeout: nothing else
	got := map[string]int{}
	for _, q := range r.fcm.Requests() {
		got[q.Message.Token]++
	}
	want := map[string]int{"tok-off": 1, "tok-silent": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pushes %v, want %v", got, want)
	}
	if tr.Waiting() != 0 {
		t.Fatalf("%d waits left", tr.Waiting())
	}
}

type nopPublisher struct{}

func (nopPublisher) PublishPresence(string, []byte) error { return nil }

// TestSkipsWhatArrivedMeanwhile: a push that waited in the queue while a
// device of the user received (or the user read) the message is dropped
// and counted; the others still go out.
func TestSkipsWhatArrivedMeanwhile(t *testing.T) {
	r := newRig(t, push.Options{Workers: 1})
	ctx := context.Background()
	r.device(t, "busy", "phone", "tok-busy")
	r.device(t, "bob", "phone", "tok-bob")
	r.device(t, "carol", "phone", "tok-carol")
	r.device(t, "dave", "phone", "tok-dave")
	now := time.Now()
	for _, uid := range []string{"bob", "carol", "dave"} {
		if err := r.st.JoinChat(ctx, uid, "d:alice:"+uid, now); err != nil {
			t.Fatal(err)
		}
	}
	release := r.fcm.Hold()
	r.svc.Enqueue("busy", msg("d:alice:busy", 1, "alice", "hi"))
	r.waitRequests(t, "the worker to be busy", atLeast(1))
	for _, uid := range []string{"bob", "carol", "dave"} {
		r.svc.Enqueue(uid, msg("d:alice:"+uid, 2, "alice", "news"))
	}
	// While they wait: bob's phone acknowledges seq 2, carol reads it on
	// another device, dave does nothing.
	if _, _, err := r.st.AdvanceCursors(ctx, "bob", "d:alice:bob", 2, 0, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.st.AdvanceCursors(ctx, "carol", "d:alice:carol", 0, 2, now); err != nil {
		t.Fatal(err)
	}
	release()
	r.waitRequests(t, "dave's push", func(reqs []fcmtest.Request) bool { return len(r.fcm.To("tok-dave")) == 1 })
	r.waitCounter(t, "mqchat_push_skipped_total", "", 2)
	if n := len(r.fcm.To("tok-bob")) + len(r.fcm.To("tok-carol")); n != 0 {
		t.Fatalf("%d pushes for messages already delivered or read", n)
	}
}

// TestAttachmentPushes: an image says Photo and a file File, with the
// caption only when bodies may be shown; the body JSON (ids, hash,
// thumbnail) never goes out.
func TestAttachmentPushes(t *testing.T) {
	const withCaption = `{"attachment":"a1","caption":"at the beach","size":5,"sha256":"ab12","thumbnail":{"id":"a1.thumb","width":1,"height":1,"data":"/9j/"}}`
	const bare = `{"attachment":"a2","size":5,"sha256":"ab12"}`
	tests := []struct {
		typ, body string
		include   bool
		want      string
	}{
		{"image", withCaption, false, "Photo"},
		{"image", withCaption, true, "Photo: at the beach"},
		{"image", bare, true, "Photo"},
		{"file", withCaption, false, "File"},
		{"file", withCaption, true, "File: at the beach"},
		{"file", bare, true, "File"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/include_body=%v/%s", tc.typ, tc.include, tc.want), func(t *testing.T) {
			r := newRig(t, push.Options{IncludeBody: tc.include})
			r.device(t, "bob", "phone", "tok")
			m := msg("d:alice:bob", 1, "alice", "")
			m.Type, m.Body = tc.typ, json.RawMessage(tc.body)
			r.svc.Enqueue("bob", m)
			got := r.waitRequests(t, "the push", atLeast(1))[0].Message
			if got.Notification.Body != tc.want {
				t.Fatalf("body %q, want %q", got.Notification.Body, tc.want)
			}
			for k, v := range got.Data {
				if strings.Contains(v, "ab12") || strings.Contains(v, "/9j/") {
					t.Fatalf("data %s carries the body: %q", k, v)
				}
			}
		})
	}
}
