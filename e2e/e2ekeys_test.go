package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqchat/mqchat/internal/config"
)

// The end-to-end encryption key directory: devices publish keys, others
// list devices and claim bundles, over REST and MQTT.

type signedPrekey struct {
	ID        uint32 `json:"id"`
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

type oneTimePrekey struct {
	ID  uint32 `json:"id"`
	Key []byte `json:"key"`
}

type keyUpload struct {
	Op             string          `json:"op,omitempty"` // MQTT only
	IdentityKey    []byte          `json:"identity_key"`
	SignedPrekey   signedPrekey    `json:"signed_prekey"`
	OneTimePrekeys []oneTimePrekey `json:"one_time_prekeys,omitempty"`
}

type keyBundle struct {
	DeviceID      string         `json:"device_id"`
	IdentityKey   []byte         `json:"identity_key"`
	SignedPrekey  signedPrekey   `json:"signed_prekey"`
	OneTimePrekey *oneTimePrekey `json:"one_time_prekey"`
	UpdatedAt     string         `json:"updated_at"`
}

type keysAnswer struct {
	Type           string      `json:"type"`
	Op             string      `json:"op"`
	UserID         string      `json:"user_id"`
	Devices        []keyBundle `json:"devices"`
	DeviceID       string      `json:"device_id"`
	OneTimePrekeys int         `json:"one_time_prekeys"`
	// device_keys_changed, prekeys_low and error events
	User      string `json:"user"`
	Device    string `json:"device"`
	Change    string `json:"change"`
	Remaining int    `json:"remaining"`
	Code      string `json:"code"`
}

// signedUpload is a device's keys signed with a fresh Ed25519 identity,
// with one-time prekeys 1..n.
func signedUpload(t *testing.T, n int) keyUpload {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spk := bytes.Repeat([]byte{7}, 32)
	up := keyUpload{IdentityKey: pub, SignedPrekey: signedPrekey{ID: 1, Key: spk, Signature: ed25519.Sign(priv, spk)}}
	for i := range n {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		up.OneTimePrekeys = append(up.OneTimePrekeys, oneTimePrekey{ID: uint32(i + 1), Key: k})
	}
	return up
}

func (s *server) publishKeys(t *testing.T, a account, device string, up keyUpload) keysAnswer {
	t.Helper()
	var out keysAnswer
	if st := s.call(t, "PUT", "/v1/devices/"+device+"/keys", a.Token, up, nil, &out); st != http.StatusOK {
		t.Fatalf("PUT keys of %s/%s: %d", a.Username, device, st)
	}
	return out
}

// TestE2EKeysREST: publish, list and claim over REST; 50 concurrent claims
// of 20 one-time prekeys hand each out once.
func TestE2EKeysREST(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Limits.KeyClaimRate, c.Limits.KeyClaimBurst = 1000, 1000
		c.Limits.MaxOneTimePrekeys = 25
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	events := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "laptop")
	if rc := events.subscribe(t, "users/"+alice.ID+"/events"); rc[0] != 1 {
		t.Fatalf("subscribe: 0x%02x", rc[0])
	}

	up := signedUpload(t, 20)
	if got := s.publishKeys(t, alice, "phone", up); got.DeviceID != "phone" || got.OneTimePrekeys != 20 {
		t.Fatalf("publish: %+v", got)
	}
	alice0 := events.box.next(t, "device_keys_changed", onEvent(alice.ID, "device_keys_changed"))
	if e := decodeKeys(t, alice0.Payload); e.User != alice.ID || e.Device != "phone" || e.Change != "added" {
		t.Fatalf("own device_keys_changed: %+v", e)
	}

	// 20 held and 6 more would pass the bound of 25: refused whole.
	more := up
	more.OneTimePrekeys = signedUpload(t, 26).OneTimePrekeys[20:]
	var refusal apiError
	if st := s.call(t, "PUT", "/v1/devices/phone/keys", alice.Token, more, nil, &refusal); st != http.StatusTooManyRequests || refusal.Error.Code != "quota_exceeded" {
		t.Fatalf("past max_one_time_prekeys: %d %+v", st, refusal)
	}
	bad := up
	bad.SignedPrekey.Signature = bytes.Repeat([]byte{1}, 64)
	if st := s.call(t, "PUT", "/v1/devices/phone/keys", alice.Token, bad, nil, &refusal); st != http.StatusBadRequest || refusal.Error.Code != "invalid_payload" {
		t.Fatalf("bad signature: %d %+v", st, refusal)
	}
	if st := s.call(t, "PUT", "/v1/devices/phone/keys", alice.Token, `{"identity_key": "!!", "signed_prekey": {}}`, nil, &refusal); st != http.StatusBadRequest {
		t.Fatalf("bad base64: %d %+v", st, refusal)
	}

	var list keysAnswer
	if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/devices", bob.Token, nil, nil, &list); st != http.StatusOK ||
		list.UserID != alice.ID || len(list.Devices) != 1 || !bytes.Equal(list.Devices[0].IdentityKey, up.IdentityKey) ||
		!bytes.Equal(list.Devices[0].SignedPrekey.Signature, up.SignedPrekey.Signature) || list.Devices[0].UpdatedAt == "" {
		t.Fatalf("devices: %d %+v", st, list)
	}

	// 50 claims at once by five users: the 20 keys go once each.
	requesters := []account{bob}
	for i := range 4 {
		requesters = append(requesters, s.register(t, fmt.Sprintf("claimer%d", i)))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed = map[uint32]int{}
		none    int
		start   = make(chan struct{})
	)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var b keysAnswer
			st := s.call(t, "GET", "/v1/users/"+alice.ID+"/keys", requesters[i%len(requesters)].Token, nil, nil, &b)
			mu.Lock()
			defer mu.Unlock()
			if st != http.StatusOK || len(b.Devices) != 1 {
				t.Errorf("claim: %d %+v", st, b)
				return
			}
			if k := b.Devices[0].OneTimePrekey; k != nil {
				claimed[k.ID]++
				if !bytes.Equal(k.Key, up.OneTimePrekeys[k.ID-1].Key) {
					t.Errorf("key %d: %x, published %x", k.ID, k.Key, up.OneTimePrekeys[k.ID-1].Key)
				}
			} else {
				none++
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(claimed) != 20 || none != 30 {
		t.Fatalf("%d keys claimed, %d claims without: want 20 and 30", len(claimed), none)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Fatalf("key %d handed out %d times", id, n)
		}
	}
	// The owner heard that the last one went.
	events.box.next(t, "prekeys_low at 0", func(r received) bool {
		return onEvent(alice.ID, "prekeys_low")(r) && decodeKeys(t, r.Payload).Remaining == 0
	})

	one := signedUpload(t, 1)
	s.publishKeys(t, alice, "tablet", one)
	var b keysAnswer
	if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/keys?device=tablet", bob.Token, nil, nil, &b); st != http.StatusOK ||
		len(b.Devices) != 1 || b.Devices[0].DeviceID != "tablet" || b.Devices[0].OneTimePrekey == nil {
		t.Fatalf("claim of one device: %d %+v", st, b)
	}
	if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/keys?device=a%2Fb", bob.Token, nil, nil, &refusal); st != http.StatusBadRequest {
		t.Fatalf("bad device: %d", st)
	}

	// Blocking is silent: an empty list, not an error.
	if st := s.call(t, "POST", "/v1/blocks", alice.Token, map[string]string{"user_id": bob.ID}, nil, nil); st/100 != 2 {
		t.Fatalf("block: %d", st)
	}
	if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/keys", bob.Token, nil, nil, &b); st != http.StatusOK || b.Devices == nil || len(b.Devices) != 0 {
		t.Fatalf("claim by a blocked user: %d %+v", st, b)
	}

	for _, path := range []string{"/v1/users/AAAAAAAAAAAAAAAAAAAA/keys", "/v1/users/nobody/devices"} {
		if st := s.call(t, "GET", path, bob.Token, nil, nil, &refusal); st != http.StatusNotFound || refusal.Error.Code != "not_found" {
			t.Fatalf("GET %s: %d %+v", path, st, refusal)
		}
	}
	if st := s.call(t, "DELETE", "/v1/devices/tablet/keys", alice.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}
	if st := s.call(t, "DELETE", "/v1/devices/tablet/keys", alice.Token, nil, nil, &refusal); st != http.StatusNotFound {
		t.Fatalf("delete again: %d", st)
	}
}

// TestE2EKeysClaimRateLimit: claims past the burst answer 429 with
// Retry-After, per requester.
func TestE2EKeysClaimRateLimit(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Limits.KeyClaimRate, c.Limits.KeyClaimBurst = 1, 2 })
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	s.publishKeys(t, alice, "phone", signedUpload(t, 5))
	for i := range 2 {
		if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/keys", bob.Token, nil, nil, nil); st != http.StatusOK {
			t.Fatalf("claim %d: %d", i, st)
		}
	}
	res := rawHTTP(t, s, "GET", "/v1/users/"+alice.ID+"/keys", map[string]string{"Authorization": "Bearer " + bob.Token}, "")
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "1" || !bytes.Contains(res.body, []byte(`"rate_limited"`)) {
		t.Fatalf("claim past the burst: %d %q %s", res.status, res.header.Get("Retry-After"), res.body)
	}
	// Listing devices claims nothing and is not limited; another requester
	// has its own bucket.
	if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/devices", bob.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("devices: %d", st)
	}
	if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/keys", carol.Token, nil, nil, nil); st != http.StatusOK {
		t.Fatalf("another requester: %d", st)
	}
}

func decodeKeys(t *testing.T, payload []byte) keysAnswer {
	t.Helper()
	var e keysAnswer
	if err := json.Unmarshal(payload, &e); err != nil {
		t.Fatalf("event %q: %v", payload, err)
	}
	return e
}

// TestE2EKeysMQTT: the users/{me}/keys request topic over both protocol
// versions, and device_keys_changed reaching the people one shares a chat
// with.
func TestE2EKeysMQTT(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver, func(t *testing.T) {
			s := startServer(t, nil)
			alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
			a := dialDevice(t, s, ver, alice, "phone")
			b := dialDevice(t, s, ver, bob, "phone")
			c := dialDevice(t, s, ver, carol, "phone")
			b.wantRC(t, b.request(t, "send", envelope(alice.ID, "hello", "hi")), 0)
			a.inbox(t)

			keysEvent := func(d *device, typ string) keysAnswer {
				t.Helper()
				r := d.next(t, typ, onEvent(d.acct.ID, typ))
				return decodeKeys(t, r.Payload)
			}
			up := signedUpload(t, 2)
			up.Op = "publish"
			a.wantRC(t, a.request(t, "keys", up), 0)
			if e := keysEvent(a, "keys"); e.Op != "publish" || e.DeviceID != "phone" || e.OneTimePrekeys != 2 {
				t.Fatalf("publish answer: %+v", e)
			}
			for _, d := range []*device{a, b} {
				if e := keysEvent(d, "device_keys_changed"); e.User != alice.ID || e.Device != "phone" || e.Change != "added" {
					t.Fatalf("%s: device_keys_changed %+v", d.acct.Username, e)
				}
			}

			b.wantRC(t, b.request(t, "keys", map[string]string{"op": "claim", "user": alice.ID}), 0)
			if e := keysEvent(b, "keys"); e.Op != "claim" || e.UserID != alice.ID || len(e.Devices) != 1 ||
				e.Devices[0].OneTimePrekey == nil || e.Devices[0].OneTimePrekey.ID != 1 ||
				!bytes.Equal(e.Devices[0].IdentityKey, up.IdentityKey) {
				t.Fatalf("claim answer: %+v", e)
			}
			b.wantRC(t, b.request(t, "keys", map[string]string{"op": "devices", "user": alice.ID}), 0)
			if e := keysEvent(b, "keys"); e.Op != "devices" || len(e.Devices) != 1 || e.Devices[0].OneTimePrekey != nil {
				t.Fatalf("devices answer: %+v", e)
			}

			for _, bad := range []struct {
				req  any
				rc   byte
				code string
			}{
				{map[string]string{"op": "steal"}, 0x99, "invalid_payload"},
				{map[string]string{"op": "claim", "user": "AAAAAAAAAAAAAAAAAAAA"}, 0x87, "unknown_recipient"},
				{map[string]string{"op": "claim"}, 0x99, "invalid_payload"},
			} {
				b.wantRC(t, b.request(t, "keys", bad.req), bad.rc)
				if e := keysEvent(b, "error"); e.Code != bad.code {
					t.Fatalf("%v: error %+v, want %s", bad.req, e, bad.code)
				}
			}

			a.wantRC(t, a.request(t, "keys", map[string]string{"op": "delete"}), 0)
			if e := keysEvent(a, "keys"); e.Op != "delete" || e.DeviceID != "phone" {
				t.Fatalf("delete answer: %+v", e)
			}
			if e := keysEvent(b, "device_keys_changed"); e.Change != "removed" {
				t.Fatalf("bob: %+v", e)
			}
			// carol shares no chat with alice and heard nothing; her next
			// event is the answer to her own request.
			c.wantRC(t, c.request(t, "keys", map[string]string{"op": "devices", "user": alice.ID}), 0)
			r := c.next(t, "carol's first event", onTopic("users/"+carol.ID+"/events"))
			if e := decodeKeys(t, r.Payload); e.Type != "keys" || len(e.Devices) != 0 {
				t.Fatalf("carol: %+v", e)
			}
		})
	}
}

// TestE2EKeysResponseTopic: an MQTT 5 keys request naming a Response Topic
// is answered there with its Correlation Data, errors included, and one
// naming another user's subtree is refused 0x87.
func TestE2EKeysResponseTopic(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	s.publishKeys(t, alice, "phone", signedUpload(t, 3))
	b, box := dialV5Props(t, s, bob, "phone")
	mine := "users/" + bob.ID + "/responses/keys"
	events := "users/" + bob.ID + "/events"
	for i, tc := range []struct {
		topic, payload string
		rc             byte
		answer, typ    string
	}{
		{mine, `{"op":"claim","user":"` + alice.ID + `","request_id":"k1"}`, 0, mine, "keys"},
		{mine, `{"op":"devices","user":"` + alice.ID + `"}`, 0, mine, "keys"},
		{mine, `{"op":"claim","user":"AAAAAAAAAAAAAAAAAAAA"}`, 0x87, mine, "error"},
		{"users/" + alice.ID + "/responses/x", `{"op":"devices","user":"` + alice.ID + `"}`, 0x87, events, "error"},
	} {
		corr := []byte(fmt.Sprintf("corr-%d", i))
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		resp, err := b.Publish(ctx, &paho.Publish{
			Topic: "users/" + bob.ID + "/keys", QoS: 1, Payload: []byte(tc.payload),
			Properties: &paho.PublishProperties{ResponseTopic: tc.topic, CorrelationData: corr},
		})
		cancel()
		if resp == nil || resp.ReasonCode != tc.rc {
			t.Fatalf("%s: PUBACK %+v (%v), want 0x%02x", tc.payload, resp, err, tc.rc)
		}
		m := nextProps(t, box, tc.typ, func(m propsMsg) bool { return m.Topic == tc.answer })
		e := decodeKeys(t, m.Payload)
		if e.Type != tc.typ {
			t.Fatalf("%s: answer %s", tc.payload, m.Payload)
		}
		if tc.answer == mine && !bytes.Equal(m.Correlation, corr) {
			t.Fatalf("%s: correlation %q, want %q", tc.payload, m.Correlation, corr)
		}
		if tc.typ == "keys" && (e.UserID != alice.ID || len(e.Devices) != 1) {
			t.Fatalf("%s: answer %+v", tc.payload, e)
		}
	}
}
