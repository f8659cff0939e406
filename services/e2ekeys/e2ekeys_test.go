package e2ekeys

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/consent"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/pebble"
)

// recorder keeps what the service publishes and counts.
type recorder struct {
	mu       sync.Mutex
	events   []sent
	refusals map[string]int
	claims   map[string]int
}

type sent struct {
	uid string
	v   any
}

func newRecorder() *recorder {
	return &recorder{refusals: map[string]int{}, claims: map[string]int{}}
}

func (r *recorder) Event(uid string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, sent{uid, v})
}

func (r *recorder) ObserveLimitRefusals(limit string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refusals[limit] += n
}

func (r *recorder) ObservePrekeyClaim(result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claims[result]++
}

// take returns and forgets the events published so far.
func (r *recorder) take() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

type fixture struct {
	svc     *Service
	st      *pebble.Store
	consent *consent.Service
	rec     *recorder
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	st, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cs := consent.New(st, consent.Options{})
	rec := newRecorder()
	opts.Limits, opts.Metrics = rec, rec
	return &fixture{svc: New(st, cs, rec, opts), st: st, consent: cs, rec: rec}
}

func (f *fixture) user(t *testing.T) string {
	t.Helper()
	id := ids.NewUserID()
	if err := f.st.CreateUser(context.Background(), store.User{ID: id, Username: "u" + id[:10], CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return id
}

// directChat puts a 1:1 chat of a and b in both chat lists, with n
// messages.
func (f *fixture) directChat(t *testing.T, a, b string, n int) {
	t.Helper()
	ctx := context.Background()
	c := chat.DirectChatID(a, b)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, u := range []string{a, b} {
		if err := f.st.JoinChat(ctx, u, c, now); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []store.Message
	for i := range n {
		msgs = append(msgs, store.Message{Chat: c, Seq: uint64(i + 1), ID: uint64(now.UnixMilli())<<16 + uint64(i), From: a,
			CMID: fmt.Sprintf("c%d", i), Type: "text", Body: []byte(`"hi"`), SentAt: now})
	}
	if len(msgs) > 0 {
		if err := f.st.AppendMessages(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) group(t *testing.T, members ...string) {
	t.Helper()
	g := store.Group{ID: ids.NewUserID(), Name: "g", CreatedBy: members[0], CreatedAt: time.Now()}
	var ms []store.Member
	for i, m := range members {
		role := store.Role("member")
		if i == 0 {
			role = "owner"
		}
		ms = append(ms, store.Member{GroupID: g.ID, UserID: m, Role: role, JoinedAt: g.CreatedAt})
	}
	if err := f.st.CreateGroup(context.Background(), g, ms); err != nil {
		t.Fatal(err)
	}
}

// identity is a device's Ed25519 identity key pair.
type identity struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newIdentity(t *testing.T) identity {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return identity{pub, priv}
}

// upload is a correctly signed upload with one-time prekeys ids first..first+n-1.
func (id identity) upload(spk uint32, first uint32, n int) Upload {
	key := bytes.Repeat([]byte{byte(spk)}, 32)
	up := Upload{IdentityKey: id.pub, SignedPrekey: &SignedPrekey{ID: spk, Key: key, Signature: ed25519.Sign(id.priv, key)}}
	for i := range n {
		up.OneTimePrekeys = append(up.OneTimePrekeys, OneTimePrekey{ID: first + uint32(i), Key: bytes.Repeat([]byte{byte(first) + byte(i)}, 32)})
	}
	return up
}

func wantCode(t *testing.T, what string, err error, code chat.Code) {
	t.Helper()
	if chat.CodeOf(err) != code || err == nil {
		t.Fatalf("%s: error %v, want %s", what, err, code)
	}
}

func TestPublishValidation(t *testing.T) {
	f := newFixture(t, Options{MaxKeyBytes: 64, MaxOneTimePrekeys: 3})
	uid := f.user(t)
	id := newIdentity(t)
	other := newIdentity(t)
	valid := func() Upload { return id.upload(1, 1, 2) }
	cases := []struct {
		name   string
		device string
		edit   func(*Upload)
		code   chat.Code // "" = accepted
	}{
		{"signed by the identity key", "phone", func(*Upload) {}, ""},
		{"signed by another key", "phone", func(u *Upload) {
			u.SignedPrekey.Signature = ed25519.Sign(other.priv, u.SignedPrekey.Key)
		}, chat.CodeInvalid},
		{"signature of other bytes", "phone", func(u *Upload) { u.SignedPrekey.Key = bytes.Repeat([]byte{9}, 32) }, chat.CodeInvalid},
		{"other identity sizes are opaque", "phone", func(u *Upload) {
			u.IdentityKey = append([]byte{5}, id.pub...) // 33 bytes: a Signal-encoded Curve25519 key
			u.SignedPrekey.Signature = []byte("not checked")
		}, ""},
		{"identity key at the size limit", "phone", func(u *Upload) { u.IdentityKey = bytes.Repeat([]byte{1}, 64) }, ""},
		{"identity key too large", "phone", func(u *Upload) { u.IdentityKey = bytes.Repeat([]byte{1}, 65) }, chat.CodeInvalid},
		{"signed prekey too large", "phone", func(u *Upload) {
			u.IdentityKey = bytes.Repeat([]byte{1}, 40)
			u.SignedPrekey.Key = bytes.Repeat([]byte{1}, 65)
		}, chat.CodeInvalid},
		{"signature too large", "phone", func(u *Upload) {
			u.IdentityKey = bytes.Repeat([]byte{1}, 40)
			u.SignedPrekey.Signature = bytes.Repeat([]byte{1}, 65)
		}, chat.CodeInvalid},
		{"one-time prekey too large", "phone", func(u *Upload) { u.OneTimePrekeys[1].Key = bytes.Repeat([]byte{1}, 65) }, chat.CodeInvalid},
		{"empty one-time prekey", "phone", func(u *Upload) { u.OneTimePrekeys[0].Key = nil }, chat.CodeInvalid},
		{"one-time prekey id twice", "phone", func(u *Upload) { u.OneTimePrekeys[1].ID = u.OneTimePrekeys[0].ID }, chat.CodeInvalid},
		{"more one-time prekeys than a device holds", "phone", func(u *Upload) {
			*u = id.upload(1, 1, 4)
		}, chat.CodeQuota},
		{"no identity key", "phone", func(u *Upload) { u.IdentityKey = nil }, chat.CodeInvalid},
		{"no signed prekey", "phone", func(u *Upload) { u.SignedPrekey = nil }, chat.CodeInvalid},
		{"no signature", "phone", func(u *Upload) { u.SignedPrekey.Signature = nil }, chat.CodeInvalid},
		{"bad device id", "a/b", func(*Upload) {}, chat.CodeInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each case starts from a device without keys.
			_ = f.svc.Delete(context.Background(), uid, "phone")
			up := valid()
			c.edit(&up)
			got, err := f.svc.Publish(context.Background(), uid, c.device, up)
			if c.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got.DeviceID != c.device || got.OneTimePrekeys != len(up.OneTimePrekeys) {
					t.Fatalf("answer %+v", got)
				}
				return
			}
			wantCode(t, "publish", err, c.code)
			keys, err := f.st.DeviceKeys(context.Background(), uid)
			if err != nil || len(keys) != 0 {
				t.Fatalf("a refused upload stored %v (%v)", keys, err)
			}
		})
	}
}

func TestOneTimePrekeyBoundCountsHeldKeys(t *testing.T) {
	f := newFixture(t, Options{MaxOneTimePrekeys: 5})
	ctx := context.Background()
	owner, peer := f.user(t), f.user(t)
	id := newIdentity(t)
	steps := []struct {
		name string
		up   Upload
		code chat.Code
		held int // one-time prekeys the device holds after the step
	}{
		{"first upload", id.upload(1, 1, 3), "", 3},
		{"past the bound with the held ones", id.upload(9, 10, 3), chat.CodeQuota, 3},
		{"up to the bound", id.upload(2, 10, 2), "", 5},
		{"one more", id.upload(9, 20, 1), chat.CodeQuota, 5},
		{"no one-time prekeys at the bound", id.upload(3, 0, 0), "", 5},
		{"a new identity drops the held ones", newIdentity(t).upload(1, 1, 5), "", 5},
	}
	for _, s := range steps {
		got, err := f.svc.Publish(ctx, owner, "phone", s.up)
		if s.code != "" {
			wantCode(t, s.name, err, s.code)
		} else if err != nil || got.OneTimePrekeys != s.held {
			t.Fatalf("%s: %+v, %v; want %d held", s.name, got, err, s.held)
		}
		keys, err := f.st.DeviceKeys(ctx, owner)
		if err != nil || len(keys) != 1 {
			t.Fatalf("%s: keys %v, %v", s.name, keys, err)
		}
		if keys[0].SignedPrekeyID == 9 {
			t.Fatalf("%s: a refused upload replaced the signed prekey", s.name)
		}
	}
	// Exactly the five held keys are handed out, then none.
	for i := range 6 {
		b, err := f.svc.Claim(ctx, peer, owner, "")
		if err != nil || len(b.Devices) != 1 {
			t.Fatalf("claim %d: %+v, %v", i, b, err)
		}
		if got := b.Devices[0].OneTimePrekey != nil; got != (i < 5) {
			t.Fatalf("claim %d: one-time prekey %v, want one: %v", i, b.Devices[0].OneTimePrekey, i < 5)
		}
	}
}

// changes returns the device_keys_changed events of what was published,
// by recipient.
func changes(t *testing.T, evs []sent) map[string]KeysChangedEvent {
	t.Helper()
	out := map[string]KeysChangedEvent{}
	for _, e := range evs {
		ev, ok := e.v.(KeysChangedEvent)
		if !ok {
			continue
		}
		if _, dup := out[e.uid]; dup {
			t.Fatalf("%s got two events: %+v", e.uid, evs)
		}
		out[e.uid] = ev
	}
	return out
}

func TestKeyChangeAudience(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	owner := f.user(t)
	friend, quiet, groupmate, stranger, blocked, blocker := f.user(t), f.user(t), f.user(t), f.user(t), f.user(t), f.user(t)
	f.directChat(t, friend, owner, 2)  // a 1:1 chat with messages
	f.directChat(t, owner, quiet, 0)   // in both lists, but nothing said
	f.directChat(t, owner, blocked, 1) // the owner blocks this one
	f.directChat(t, blocker, owner, 1) // this one blocks the owner: still told
	f.group(t, groupmate, owner, friend)
	if _, err := f.consent.Block(ctx, owner, blocked); err != nil {
		t.Fatal(err)
	}
	if _, err := f.consent.Block(ctx, blocker, owner); err != nil {
		t.Fatal(err)
	}
	audience := []string{owner, friend, groupmate, blocker}
	notTold := []string{quiet, stranger, blocked}
	id := newIdentity(t)

	steps := []struct {
		name   string
		do     func() error
		change string // "" = nobody is told
	}{
		{"new device", func() error { _, err := f.svc.Publish(ctx, owner, "phone", id.upload(1, 1, 3)); return err }, ChangeAdded},
		{"same keys again", func() error { _, err := f.svc.Publish(ctx, owner, "phone", id.upload(1, 1, 3)); return err }, ""},
		{"new signed prekey", func() error { _, err := f.svc.Publish(ctx, owner, "phone", id.upload(2, 0, 0)); return err }, ""},
		{"more one-time prekeys", func() error { _, err := f.svc.Publish(ctx, owner, "phone", id.upload(2, 10, 5)); return err }, ""},
		{"new identity", func() error {
			_, err := f.svc.Publish(ctx, owner, "phone", newIdentity(t).upload(1, 1, 1))
			return err
		}, ChangeIdentity},
		{"removed", func() error { return f.svc.Delete(ctx, owner, "phone") }, ChangeRemoved},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := changes(t, f.rec.take())
		if s.change == "" {
			if len(got) != 0 {
				t.Fatalf("%s: told %v", s.name, got)
			}
			continue
		}
		want := KeysChangedEvent{Type: "device_keys_changed", User: owner, Device: "phone", Change: s.change}
		for _, u := range audience {
			if got[u] != want {
				t.Errorf("%s: %s got %+v, want %+v", s.name, u, got[u], want)
			}
		}
		for _, u := range notTold {
			if ev, ok := got[u]; ok {
				t.Errorf("%s: %s was told %+v", s.name, u, ev)
			}
		}
	}
	wantCode(t, "delete again", f.svc.Delete(ctx, owner, "phone"), chat.CodeNotFound)
	if evs := f.rec.take(); len(evs) != 0 {
		t.Fatalf("a refused delete told %v", evs)
	}
}

func TestClaimRateLimit(t *testing.T) {
	f := newFixture(t, Options{ClaimRate: 1, ClaimBurst: 3})
	ctx := context.Background()
	owner, a, b := f.user(t), f.user(t), f.user(t)
	if _, err := f.svc.Publish(ctx, owner, "phone", newIdentity(t).upload(1, 1, 10)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := f.svc.Claim(ctx, a, owner, ""); err != nil {
			t.Fatalf("claim %d within the burst: %v", i, err)
		}
	}
	_, err := f.svc.Claim(ctx, a, owner, "")
	wantCode(t, "claim past the burst", err, chat.CodeRateLimited)
	var ce *chat.Error
	if !errors.As(err, &ce) || ce.RetryAfter != time.Second {
		t.Fatalf("retry after %v, want 1s", ce)
	}
	if f.rec.refusals[LimitKeyClaim] != 1 {
		t.Fatalf("refusals %v", f.rec.refusals)
	}
	// The limit is the requester's: another user still claims, listing
	// devices claims nothing and is not limited.
	if _, err := f.svc.Claim(ctx, b, owner, ""); err != nil {
		t.Fatalf("another requester: %v", err)
	}
	for range 5 {
		if _, err := f.svc.Devices(ctx, a, owner); err != nil {
			t.Fatalf("devices: %v", err)
		}
	}
	if f.rec.claims[ClaimKey] != 4 {
		t.Fatalf("claims %v, want 4 keys", f.rec.claims)
	}
}

func TestBlockedRequesterAndUnknownUsers(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	owner, blocked, other := f.user(t), f.user(t), f.user(t)
	if _, err := f.svc.Publish(ctx, owner, "phone", newIdentity(t).upload(1, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.consent.Block(ctx, owner, blocked); err != nil {
		t.Fatal(err)
	}
	b, err := f.svc.Claim(ctx, blocked, owner, "")
	if err != nil || b.UserID != owner || b.Devices == nil || len(b.Devices) != 0 {
		t.Fatalf("blocked claim: %+v, %v; want an empty list", b, err)
	}
	d, err := f.svc.Devices(ctx, blocked, owner)
	if err != nil || d.Devices == nil || len(d.Devices) != 0 {
		t.Fatalf("blocked devices: %+v, %v; want an empty list", d, err)
	}
	// The blocked requester's claims took nothing.
	for i := range 2 {
		b, err := f.svc.Claim(ctx, other, owner, "phone")
		if err != nil || len(b.Devices) != 1 || b.Devices[0].OneTimePrekey == nil || b.Devices[0].OneTimePrekey.ID != uint32(i+1) {
			t.Fatalf("claim %d: %+v, %v", i, b, err)
		}
	}
	d, err = f.svc.Devices(ctx, other, owner)
	if err != nil || len(d.Devices) != 1 || d.Devices[0].DeviceID != "phone" || d.Devices[0].UpdatedAt == "" {
		t.Fatalf("devices: %+v, %v", d, err)
	}
	// Another device id of the owner has nothing.
	if b, err := f.svc.Claim(ctx, other, owner, "tablet"); err != nil || len(b.Devices) != 0 {
		t.Fatalf("claim of a device without keys: %+v, %v", b, err)
	}
	for _, uid := range []string{ids.NewUserID(), "not an id"} {
		_, err := f.svc.Claim(ctx, other, uid, "")
		if !IsNoSuchUser(err) || chat.CodeOf(err) != chat.CodeNotFound {
			t.Fatalf("claim of %q: %v", uid, err)
		}
		_, err = f.svc.Devices(ctx, other, uid)
		if !IsNoSuchUser(err) {
			t.Fatalf("devices of %q: %v", uid, err)
		}
	}
	_, err = f.svc.Claim(ctx, other, owner, "a/b")
	wantCode(t, "bad device id", err, chat.CodeInvalid)
}

func TestPrekeysLow(t *testing.T) {
	for _, c := range []struct {
		low  int
		want []int // remaining counts that are announced
	}{
		{low: 3, want: []int{2, 1, 0}},
		{low: 0, want: []int{0}},
	} {
		t.Run(fmt.Sprint("low=", c.low), func(t *testing.T) {
			f := newFixture(t, Options{PrekeysLow: c.low})
			ctx := context.Background()
			owner, peer := f.user(t), f.user(t)
			id := newIdentity(t)
			if _, err := f.svc.Publish(ctx, owner, "phone", id.upload(1, 1, 5)); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Publish(ctx, owner, "laptop", newIdentity(t).upload(1, 1, 0)); err != nil {
				t.Fatal(err)
			}
			f.rec.take()
			var got []int
			for i := range 7 {
				b, err := f.svc.Claim(ctx, peer, owner, "phone")
				if err != nil || len(b.Devices) != 1 {
					t.Fatalf("claim %d: %+v, %v", i, b, err)
				}
				for _, e := range f.rec.take() {
					ev, ok := e.v.(PrekeysLowEvent)
					if !ok || e.uid != owner || ev.Type != "prekeys_low" || ev.Device != "phone" {
						t.Fatalf("event %+v to %s", e.v, e.uid)
					}
					got = append(got, ev.Remaining)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("prekeys_low at %v, want %v", got, c.want)
			}
			if f.rec.claims[ClaimKey] != 5 || f.rec.claims[ClaimNone] != 2 {
				t.Fatalf("claims %v", f.rec.claims)
			}
			// A device that published none hands out none and is not
			// nagged on every claim.
			b, err := f.svc.Claim(ctx, peer, owner, "laptop")
			if err != nil || len(b.Devices) != 1 || b.Devices[0].OneTimePrekey != nil || !bytes.Equal(b.Devices[0].SignedPrekey.Key, bytes.Repeat([]byte{1}, 32)) {
				t.Fatalf("claim of a device without one-time prekeys: %+v, %v", b, err)
			}
			if evs := f.rec.take(); len(evs) != 0 {
				t.Fatalf("events %v", evs)
			}
		})
	}
}
