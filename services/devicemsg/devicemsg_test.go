package devicemsg_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/ratelimit"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/consent"
	"github.com/mqchat/mqchat/services/devicemsg"
	"github.com/mqchat/mqchat/store"
	pebblestore "github.com/mqchat/mqchat/store/pebble"
)

// published records what the service hands the outbox.
type published struct {
	mu  sync.Mutex
	got []devicemsg.View
	to  []string // user/device
}

func (p *published) DeliverDevice(uid, device string, payload []byte) {
	var v devicemsg.View
	if err := json.Unmarshal(payload, &v); err != nil {
		panic(fmt.Sprintf("undecodable device message %q: %v", payload, err))
	}
	p.mu.Lock()
	p.got = append(p.got, v)
	p.to = append(p.to, uid+"/"+device)
	p.mu.Unlock()
}

func (p *published) all() ([]devicemsg.View, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]devicemsg.View(nil), p.got...), append([]string(nil), p.to...)
}

type counts struct {
	mu     sync.Mutex
	result map[string]int
	acked  int
}

func (c *counts) ObserveDeviceMessage(r string) {
	c.mu.Lock()
	c.result[r]++
	c.mu.Unlock()
}

func (c *counts) ObserveDeviceMessagesAcked(n int) {
	c.mu.Lock()
	c.acked += n
	c.mu.Unlock()
}

func (c *counts) get(r string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.result[r]
}

func (c *counts) ackedN() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

type rig struct {
	st      *pebblestore.Store
	consent *consent.Service
	out     *published
	metrics *counts
	svc     *devicemsg.Service
}

func newRig(t *testing.T, opts devicemsg.Options) *rig {
	t.Helper()
	st, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	r := &rig{st: st, consent: consent.New(st, consent.Options{}), out: &published{}, metrics: &counts{result: map[string]int{}}}
	opts.Blocks, opts.Metrics = r.consent, r.metrics
	r.svc = devicemsg.New(st, r.out, opts)
	t.Cleanup(r.svc.Close)
	return r
}

func (r *rig) user(t *testing.T) string {
	t.Helper()
	id := ids.NewUserID()
	if err := r.st.CreateUser(context.Background(), store.User{ID: id, Username: "u" + id, PasswordHash: []byte("x"), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return id
}

func (r *rig) pending(t *testing.T, uid, device string) []store.DeviceMessage {
	t.Helper()
	msgs, err := r.st.PendingDeviceMessages(context.Background(), uid, device, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func envelope(to, device, cmid, body string) devicemsg.Envelope {
	return devicemsg.Envelope{ToDevice: &devicemsg.Address{User: to, Device: device}, CMID: cmid, Body: json.RawMessage(body)}
}

// TestSendStoresPublishesAndDedupes: a send is stored with the device's
// next seq and published to that device; a retried cmid answers the
// stored message and publishes nothing again.
func TestSendStoresPublishesAndDedupes(t *testing.T) {
	r := newRig(t, devicemsg.Options{})
	ctx := context.Background()
	alice, bob := r.user(t), r.user(t)
	env := envelope(bob, "phone", "k1", `{"ciphertext":"AAEC","type":3}`)
	env.FromDevice = "laptop"
	first, err := r.svc.Send(ctx, alice, env)
	if err != nil {
		t.Fatal(err)
	}
	if first.Seq != 1 || first.Duplicate || first.To != (devicemsg.Address{User: bob, Device: "phone"}) {
		t.Fatalf("first send %+v", first)
	}
	second, err := r.svc.Send(ctx, alice, envelope(bob, "phone", "k2", `"AAEC"`))
	if err != nil || second.Seq != 2 {
		t.Fatalf("second send %+v, %v", second, err)
	}
	again, err := r.svc.Send(ctx, alice, env)
	if err != nil || !again.Duplicate || again.Seq != 1 || !again.SentAt.Equal(first.SentAt) {
		t.Fatalf("retry %+v, %v; want the first message", again, err)
	}
	got, to := r.out.all()
	if len(got) != 2 || to[0] != bob+"/phone" || to[1] != bob+"/phone" {
		t.Fatalf("published %d to %v, want 2 to %s/phone", len(got), to, bob)
	}
	want := devicemsg.View{
		Seq: 1, From: alice, FromDevice: "laptop", CMID: "k1", Body: json.RawMessage(`{"ciphertext":"AAEC","type":3}`),
		SentAt: first.SentAt.UTC().Format(chat.SentAtLayout), ToDevice: "phone",
	}
	if g := got[0]; g.Seq != want.Seq || g.From != want.From || g.FromDevice != want.FromDevice || g.CMID != want.CMID ||
		string(g.Body) != string(want.Body) || g.SentAt != want.SentAt || g.ToDevice != want.ToDevice {
		t.Fatalf("published %+v, want %+v", g, want)
	}
	if n := len(r.pending(t, bob, "phone")); n != 2 {
		t.Fatalf("%d stored, want 2", n)
	}
	if r.metrics.get("stored") != 2 || r.metrics.get("duplicate") != 1 {
		t.Fatalf("metrics %+v", r.metrics.result)
	}
	// The same cmid for another device is no retry.
	if _, err := r.svc.Send(ctx, alice, envelope(bob, "tablet", "k1", `"x"`)); chat.CodeOf(err) != chat.CodeCMIDReused {
		t.Fatalf("cmid reused for another device: %v", err)
	}
}

// TestSendRefusals: every refusal has its code and stores nothing.
func TestSendRefusals(t *testing.T) {
	r := newRig(t, devicemsg.Options{MaxBodyBytes: 300})
	ctx := context.Background()
	alice, bob := r.user(t), r.user(t)
	to := "to"
	cases := []struct {
		name string
		env  devicemsg.Envelope
		code chat.Code
	}{
		{"no to_device", devicemsg.Envelope{CMID: "c", Body: json.RawMessage(`"x"`)}, chat.CodeInvalid},
		{"to and to_device", func() devicemsg.Envelope { e := envelope(bob, "phone", "c", `"x"`); e.To = &to; return e }(), chat.CodeInvalid},
		{"unknown user", envelope(ids.NewUserID(), "phone", "c", `"x"`), chat.CodeUnknownRecipient},
		{"malformed user", envelope("not an id", "phone", "c", `"x"`), chat.CodeUnknownRecipient},
		{"bad device", envelope(bob, "a/b", "c", `"x"`), chat.CodeInvalid},
		{"empty device", envelope(bob, "", "c", `"x"`), chat.CodeInvalid},
		{"bad from_device", func() devicemsg.Envelope { e := envelope(bob, "phone", "c", `"x"`); e.FromDevice = "#"; return e }(), chat.CodeInvalid},
		{"no cmid", envelope(bob, "phone", "", `"x"`), chat.CodeInvalid},
		{"long cmid", envelope(bob, "phone", strings.Repeat("c", 65), `"x"`), chat.CodeInvalid},
		{"null body", envelope(bob, "phone", "c", `null`), chat.CodeInvalid},
		{"no body", envelope(bob, "phone", "c", ``), chat.CodeInvalid},
		{"lone surrogate", envelope(bob, "phone", "c", `"\ud800"`), chat.CodeInvalid},
		{"body too large", envelope(bob, "phone", "c", `"`+strings.Repeat("x", 300)+`"`), chat.CodeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.svc.Send(ctx, alice, tc.env)
			if chat.CodeOf(err) != tc.code {
				t.Fatalf("err %v, want %s", err, tc.code)
			}
		})
	}
	if n := len(r.pending(t, bob, "phone")); n != 0 {
		t.Fatalf("%d stored after refusals", n)
	}
	if got, _ := r.out.all(); len(got) != 0 {
		t.Fatalf("published %d after refusals", len(got))
	}
	if r.metrics.get("refused") != len(cases) {
		t.Fatalf("refused counted %d, want %d", r.metrics.get("refused"), len(cases))
	}
}

// TestQuota: past MaxPending waiting messages a send is refused
// quota_exceeded until the device acknowledges some.
func TestQuota(t *testing.T) {
	r := newRig(t, devicemsg.Options{MaxPending: 3})
	ctx := context.Background()
	alice, bob := r.user(t), r.user(t)
	for i := range 3 {
		if _, err := r.svc.Send(ctx, alice, envelope(bob, "phone", fmt.Sprint("c", i), `"x"`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.svc.Send(ctx, alice, envelope(bob, "phone", "c3", `"x"`)); chat.CodeOf(err) != chat.CodeQuota {
		t.Fatalf("fourth send: %v, want quota_exceeded", err)
	}
	// Another device of the same user has a mailbox of its own.
	if _, err := r.svc.Send(ctx, alice, envelope(bob, "laptop", "c4", `"x"`)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.svc.Ack(ctx, bob, "phone", 2); err != nil || n != 2 {
		t.Fatalf("ack: %d, %v", n, err)
	}
	res, err := r.svc.Send(ctx, alice, envelope(bob, "phone", "c3", `"x"`))
	if err != nil || res.Seq != 4 {
		t.Fatalf("after ack: %+v, %v; want seq 4", res, err)
	}
}

// TestRateLimitShared: the limiter handed in (the chat service's) is
// spent by device messages too.
func TestRateLimitShared(t *testing.T) {
	lim := ratelimit.NewEvery(time.Hour, 2)
	r := newRig(t, devicemsg.Options{Limiter: lim})
	ctx := context.Background()
	alice, bob := r.user(t), r.user(t)
	if !lim.Allow(alice) { // a chat send spent one
		t.Fatal("limiter refused the first token")
	}
	if _, err := r.svc.Send(ctx, alice, envelope(bob, "phone", "c1", `"x"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Send(ctx, alice, envelope(bob, "phone", "c2", `"x"`)); chat.CodeOf(err) != chat.CodeQuota {
		t.Fatalf("over the shared budget: %v", err)
	}
}

// TestBlockedSenderDropped: a device message to someone who blocks the
// sender is answered like a stored one but neither stored nor published.
func TestBlockedSenderDropped(t *testing.T) {
	r := newRig(t, devicemsg.Options{})
	ctx := context.Background()
	alice, bob := r.user(t), r.user(t)
	if _, err := r.consent.Block(ctx, bob, alice); err != nil {
		t.Fatal(err)
	}
	res, err := r.svc.Send(ctx, alice, envelope(bob, "phone", "c1", `"x"`))
	if err != nil || res.Duplicate || res.SentAt.IsZero() || res.To.User != bob {
		t.Fatalf("blocked send answered %+v, %v", res, err)
	}
	if n := len(r.pending(t, bob, "phone")); n != 0 {
		t.Fatalf("%d stored for the blocker", n)
	}
	if got, _ := r.out.all(); len(got) != 0 {
		t.Fatalf("published %d to the blocker", len(got))
	}
	// Bob still reaches alice.
	if _, err := r.svc.Send(ctx, bob, envelope(alice, "phone", "c1", `"x"`)); err != nil {
		t.Fatal(err)
	}
	if n := len(r.pending(t, alice, "phone")); n != 1 {
		t.Fatalf("%d stored for alice", n)
	}
}

// TestPendingAndAck: pending pages in seq order after a cursor, and an
// acknowledgement deletes up to its seq.
func TestPendingAndAck(t *testing.T) {
	r := newRig(t, devicemsg.Options{})
	ctx := context.Background()
	alice, bob := r.user(t), r.user(t)
	for i := range 5 {
		if _, err := r.svc.Send(ctx, alice, envelope(bob, "phone", fmt.Sprint("c", i), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	page, err := r.svc.Pending(ctx, bob, "phone", 1, 2)
	if err != nil || len(page) != 2 || page[0].Seq != 2 || page[1].Seq != 3 || string(page[0].Body) != "1" {
		t.Fatalf("page %+v, %v", page, err)
	}
	if _, err := r.svc.Pending(ctx, bob, "a+b", 0, 10); chat.CodeOf(err) != chat.CodeInvalid {
		t.Fatalf("bad device: %v", err)
	}
	n, err := r.svc.Ack(ctx, bob, "phone", 3)
	if err != nil || n != 3 {
		t.Fatalf("ack: %d, %v", n, err)
	}
	if left := r.pending(t, bob, "phone"); len(left) != 2 || left[0].Seq != 4 {
		t.Fatalf("left %+v", left)
	}
	if r.metrics.ackedN() != 3 {
		t.Fatalf("acked counted %d", r.metrics.ackedN())
	}
}

// TestAckedAsync: Acked (the broker's PUBACK path) returns at once and
// the deletion follows on the service's own goroutine.
func TestAckedAsync(t *testing.T) {
	r := newRig(t, devicemsg.Options{})
	ctx := context.Background()
	alice, bob := r.user(t), r.user(t)
	for i := range 3 {
		if _, err := r.svc.Send(ctx, alice, envelope(bob, "phone", fmt.Sprint("c", i), `"x"`)); err != nil {
			t.Fatal(err)
		}
	}
	r.svc.Acked(bob, "phone", 1)
	r.svc.Acked(bob, "phone", 2)
	waitFor(t, "two acknowledged", func() bool { return len(r.pending(t, bob, "phone")) == 1 })
}

// TestReplayHoldsAcks: a replay hands the pending messages in order, and
// an acknowledgement made meanwhile (here of a message the replay has not
// reached) is applied only once the replay is over, so nothing is
// deleted unread.
func TestReplayHoldsAcks(t *testing.T) {
	r := newRig(t, devicemsg.Options{})
	ctx := context.Background()
	alice, bob := r.user(t), r.user(t)
	const n = 250 // more than one page
	for i := range n {
		if _, err := r.svc.Send(ctx, alice, envelope(bob, "phone", fmt.Sprint("c", i), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint64
	err := r.svc.Replay(ctx, bob, "phone", func(payload []byte) bool {
		var v devicemsg.View
		if err := json.Unmarshal(payload, &v); err != nil {
			t.Fatalf("replayed %q: %v", payload, err)
		}
		if len(seqs) == 0 {
			r.svc.Acked(bob, "phone", n) // a live copy of the newest, acknowledged first
		}
		seqs = append(seqs, v.Seq)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != n {
		t.Fatalf("replayed %d, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("replayed seq %d at %d", s, i)
		}
	}
	waitFor(t, "the held acknowledgement applied", func() bool { return len(r.pending(t, bob, "phone")) == 0 })

	// A replay stopped by its client (publish false) ends at once.
	if _, err := r.svc.Send(ctx, alice, envelope(bob, "phone", "late", `"x"`)); err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := r.svc.Replay(ctx, bob, "phone", func([]byte) bool { calls++; return false }); err != nil || calls != 1 {
		t.Fatalf("stopped replay: %d calls, %v", calls, err)
	}
}

// TestDecodeEnvelope: what MQTT sends are parsed as, and which payloads
// are device messages at all.
func TestDecodeEnvelope(t *testing.T) {
	r := newRig(t, devicemsg.Options{MaxBodyBytes: 256})
	for _, tc := range []struct {
		payload string
		device  bool
		code    chat.Code // "" = decodes
	}{
		{`{"to_device":{"user":"u","device":"d"},"cmid":"c","body":"x"}`, true, ""},
		{`{"to":"user:u","cmid":"c","body":"to_device"}`, false, ""},
		{`{"to":"user:u","cmid":"c","body":{"to_device":1}}`, false, ""},
		{`{"to_device":{"user":"u","device":"d"},"cmid":"c","body":"x","type":"e2e"}`, true, chat.CodeInvalid},
		{`{"to_device":{"user":"u","device":"d"},"cmid":"c","body":"x"} {}`, true, chat.CodeInvalid},
		{`{"to_device":{"user":"u","device":"d"},"cmid":"c","body":"` + strings.Repeat("x", 5000) + `"}`, true, chat.CodeTooLarge},
		{`{"to_device":"u","cmid":"c","body":"x"}`, true, chat.CodeInvalid},
		{`not json "to_device"`, false, ""},
	} {
		if got := devicemsg.IsDeviceEnvelope([]byte(tc.payload)); got != tc.device {
			t.Errorf("IsDeviceEnvelope(%.60q) = %v", tc.payload, got)
		}
		if !tc.device {
			continue
		}
		_, err := r.svc.DecodeEnvelope([]byte(tc.payload))
		if tc.code == "" && err != nil || tc.code != "" && chat.CodeOf(err) != tc.code {
			t.Errorf("DecodeEnvelope(%.60q) = %v, want %q", tc.payload, err, tc.code)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
