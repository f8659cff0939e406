package e2e

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"

	"github.com/mqchat/mqchat/store"
)

// The proof that mqchat carries end-to-end encryption without reading it:
// three devices with real keys (Ed25519 identities, X25519 prekeys), a
// simplified X3DH over the key directory and device messages, then 1:1 and
// group messages whose bodies the server stores as ciphertext only.

// Wire shapes of docs/e2e.md. Byte fields are []byte so encoding/json
// writes and reads them as standard base64, as the API does.

// e2eeAnswer is a REST key answer, a keys answer on users/{me}/events, or
// any other event there this test looks at.
type e2eeAnswer struct {
	Type           string      `json:"type"`
	Op             string      `json:"op"`
	UserID         string      `json:"user_id"`
	Devices        []keyBundle `json:"devices"`
	DeviceID       string      `json:"device_id"`
	OneTimePrekeys int         `json:"one_time_prekeys"`
	// device_keys_changed and prekeys_low
	User      string `json:"user"`
	Device    string `json:"device"`
	Change    string `json:"change"`
	Remaining *int   `json:"remaining"`
	// error events and sync answers (the marker)
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

type e2eeAddress struct {
	User   string `json:"user"`
	Device string `json:"device"`
}

// e2eeDeviceMsg is a DeviceMessageView: a device inbox publish or an item
// of GET /v1/devices/{device}/messages.
type e2eeDeviceMsg struct {
	Seq        uint64          `json:"seq"`
	From       string          `json:"from"`
	FromDevice string          `json:"from_device"`
	CMID       string          `json:"cmid"`
	Body       json.RawMessage `json:"body"`
	SentAt     string          `json:"sent_at"`
	ToDevice   string          `json:"to_device"`
}

// e2eeSealed is one AEAD ciphertext with its nonce.
type e2eeSealed struct {
	Nonce      []byte `json:"n"`
	Ciphertext []byte `json:"c"`
}

// e2eeSessionInit is the first device message of a pairwise session (the
// X3DH "initial message"): what the responder needs to derive the same key,
// and a first ciphertext that proves it did.
type e2eeSessionInit struct {
	Kind            string     `json:"kind"` // "session_init"
	IdentityKey     []byte     `json:"identity_key"`
	Ephemeral       []byte     `json:"ephemeral_key"`
	EphemeralSig    []byte     `json:"ephemeral_sig"` // by IdentityKey: binds the ephemeral to the initiator
	SignedPrekeyID  uint32     `json:"signed_prekey_id"`
	OneTimePrekeyID uint32     `json:"one_time_prekey_id"`
	Hello           e2eeSealed `json:"hello"`
}

// e2eeSessionMsg carries a ciphertext under an established pairwise key:
// a group session key share, or a reply.
type e2eeSessionMsg struct {
	Kind   string     `json:"kind"` // "group_key" | "reply"
	Group  string     `json:"group,omitempty"`
	Sealed e2eeSealed `json:"sealed"`
}

// e2eeGroupBody is the body of an e2e group message: one ciphertext under
// the group session key every member device holds.
type e2eeGroupBody struct {
	Session string     `json:"session"`
	Sealed  e2eeSealed `json:"sealed"`
}

// e2eeKeyring is one device's private key material and sessions, as an E2E
// client keeps it on the device.
type e2eeKeyring struct {
	acct     account
	device   string
	idPriv   ed25519.PrivateKey
	idPub    ed25519.PublicKey
	spkID    uint32
	spk      *ecdh.PrivateKey
	otks     map[uint32]*ecdh.PrivateKey
	sessions map[string][]byte // "uid/device" -> pairwise key
	groups   map[string][]byte // group session id -> key
	seen     map[uint64]bool   // device message seqs handled (delivery is at least once)
}

func newE2EEKeyring(t *testing.T, a account, device string, spkID, firstOTK uint32, n int) *e2eeKeyring {
	t.Helper()
	k := &e2eeKeyring{acct: a, device: device, sessions: map[string][]byte{}, groups: map[string][]byte{}, seen: map[uint64]bool{}}
	k.newIdentity(t, spkID)
	k.addOneTimePrekeys(t, firstOTK, n)
	return k
}

// newIdentity replaces the identity and signed prekey and forgets the
// one-time prekeys (they belonged to the old identity).
func (k *e2eeKeyring) newIdentity(t *testing.T, spkID uint32) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k.idPub, k.idPriv, k.spkID, k.spk = pub, priv, spkID, spk
	k.otks = map[uint32]*ecdh.PrivateKey{}
}

func (k *e2eeKeyring) addOneTimePrekeys(t *testing.T, first uint32, n int) []oneTimePrekey {
	t.Helper()
	var out []oneTimePrekey
	for i := range uint32(n) {
		otk, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.otks[first+i] = otk
		out = append(out, oneTimePrekey{ID: first + i, Key: otk.PublicKey().Bytes()})
	}
	return out
}

// publication is what the device publishes: its public keys, the signed
// prekey signed by the identity key, and the given one-time prekeys.
func (k *e2eeKeyring) publication(otks []oneTimePrekey) keyUpload {
	spk := k.spk.PublicKey().Bytes()
	return keyUpload{
		IdentityKey:    k.idPub,
		SignedPrekey:   signedPrekey{ID: k.spkID, Key: spk, Signature: ed25519.Sign(k.idPriv, spk)},
		OneTimePrekeys: otks,
	}
}

func (k *e2eeKeyring) allOneTimePrekeys() []oneTimePrekey {
	var out []oneTimePrekey
	for id, otk := range k.otks {
		out = append(out, oneTimePrekey{ID: id, Key: otk.PublicKey().Bytes()})
	}
	slices.SortFunc(out, func(a, b oneTimePrekey) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (k *e2eeKeyring) address() string { return k.acct.ID + "/" + k.device }

// e2eeFingerprint is what two users compare out of band (a "safety number").
func e2eeFingerprint(identity []byte) string {
	sum := sha256.Sum256(identity)
	return base64.RawStdEncoding.EncodeToString(sum[:12])
}

// e2eeDeriveKey is a simplified X3DH: HKDF over DH(ephemeral, signed
// prekey) || DH(ephemeral, one-time prekey), bound to both identities.
func e2eeDeriveKey(t *testing.T, dh1, dh2, initiatorID, responderID []byte) []byte {
	t.Helper()
	info := slices.Concat([]byte("mqchat e2e proof session v1"), initiatorID, responderID)
	key := make([]byte, chacha20poly1305.KeySize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, slices.Concat(dh1, dh2), nil, info), key); err != nil {
		t.Fatal(err)
	}
	return key
}

func e2eeSeal(t *testing.T, key, plaintext, ad []byte) e2eeSealed {
	t.Helper()
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return e2eeSealed{Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plaintext, ad)}
}

func e2eeOpen(t *testing.T, key []byte, s e2eeSealed, ad []byte) []byte {
	t.Helper()
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := aead.Open(nil, s.Nonce, s.Ciphertext, ad)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	return pt
}

// e2eeVerifyBundle is what a client checks in a fetched bundle before it
// trusts it: the signed prekey is signed by the identity key, and the
// identity key is the one its user confirmed out of band (here: the key
// the test knows the device really has).
func e2eeVerifyBundle(t *testing.T, b keyBundle, want *e2eeKeyring) {
	t.Helper()
	if b.DeviceID != want.device {
		t.Fatalf("bundle of device %q, want %q", b.DeviceID, want.device)
	}
	if e2eeFingerprint(b.IdentityKey) != e2eeFingerprint(want.idPub) {
		t.Fatalf("%s: identity key %x is not the device's %x (safety number mismatch)", want.address(), b.IdentityKey, want.idPub)
	}
	if len(b.IdentityKey) != ed25519.PublicKeySize || !ed25519.Verify(b.IdentityKey, b.SignedPrekey.Key, b.SignedPrekey.Signature) {
		t.Fatalf("%s: signed prekey signature does not verify", want.address())
	}
	if b.SignedPrekey.ID != want.spkID || !bytes.Equal(b.SignedPrekey.Key, want.spk.PublicKey().Bytes()) {
		t.Fatalf("%s: signed prekey %d %x, want %d", want.address(), b.SignedPrekey.ID, b.SignedPrekey.Key, want.spkID)
	}
}

// initiate runs the initiator's half of the key agreement against a
// claimed bundle and returns the session_init body for the responder.
func (k *e2eeKeyring) initiate(t *testing.T, peer string, b keyBundle) e2eeSessionInit {
	t.Helper()
	if b.OneTimePrekey == nil {
		t.Fatalf("%s: claim handed out no one-time prekey", peer)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dh := func(pub []byte) []byte {
		p, err := ecdh.X25519().NewPublicKey(pub)
		if err != nil {
			t.Fatalf("%s: bad X25519 key: %v", peer, err)
		}
		s, err := eph.ECDH(p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	key := e2eeDeriveKey(t, dh(b.SignedPrekey.Key), dh(b.OneTimePrekey.Key), k.idPub, b.IdentityKey)
	k.sessions[peer] = key
	ephPub := eph.PublicKey().Bytes()
	return e2eeSessionInit{
		Kind: "session_init", IdentityKey: k.idPub, Ephemeral: ephPub, EphemeralSig: ed25519.Sign(k.idPriv, ephPub),
		SignedPrekeyID: b.SignedPrekey.ID, OneTimePrekeyID: b.OneTimePrekey.ID,
		Hello: e2eeSeal(t, key, []byte("hello "+peer), ephPub),
	}
}

// accept runs the responder's half: from is the initiator's address,
// fromIdentity its identity key as the directory lists it (and as its
// user confirmed out of band). The one-time prekey is used up.
func (k *e2eeKeyring) accept(t *testing.T, from string, fromIdentity []byte, m e2eeSessionInit) {
	t.Helper()
	if m.Kind != "session_init" {
		t.Fatalf("%s: expected a session_init, got %q", k.address(), m.Kind)
	}
	if !bytes.Equal(m.IdentityKey, fromIdentity) || !ed25519.Verify(fromIdentity, m.Ephemeral, m.EphemeralSig) {
		t.Fatalf("%s: session_init from %s is not signed by its directory identity", k.address(), from)
	}
	if m.SignedPrekeyID != k.spkID {
		t.Fatalf("%s: session_init for signed prekey %d, have %d", k.address(), m.SignedPrekeyID, k.spkID)
	}
	otk, ok := k.otks[m.OneTimePrekeyID]
	if !ok {
		t.Fatalf("%s: session_init names one-time prekey %d it does not hold (handed out twice?)", k.address(), m.OneTimePrekeyID)
	}
	delete(k.otks, m.OneTimePrekeyID)
	eph, err := ecdh.X25519().NewPublicKey(m.Ephemeral)
	if err != nil {
		t.Fatal(err)
	}
	dh1, err := k.spk.ECDH(eph)
	if err != nil {
		t.Fatal(err)
	}
	dh2, err := otk.ECDH(eph)
	if err != nil {
		t.Fatal(err)
	}
	key := e2eeDeriveKey(t, dh1, dh2, fromIdentity, k.idPub)
	if got := e2eeOpen(t, key, m.Hello, m.Ephemeral); string(got) != "hello "+k.address() {
		t.Fatalf("%s: session hello decrypts to %q", k.address(), got)
	}
	k.sessions[from] = key
}

// e2eeClient is an MQTT device (either protocol version) with the topics it
// subscribed to; sub subscribes one more filter and returns the SUBACK code.
type e2eeClient struct {
	*device
	sub func(t *testing.T, filter string) byte
}

// dialE2EE connects a device and subscribes it to filters (not to
// users/{me}/#: device inboxes are subscribed by name).
func dialE2EE(t *testing.T, s *server, ver string, a account, name string, filters ...string) *e2eeClient {
	t.Helper()
	d := &device{ver: ver, acct: a}
	c := &e2eeClient{device: d}
	if ver == "v5" {
		cl := dialV5(t, tcpConn(t, s.addrs.MQTT), a, name)
		d.box = cl.box
		d.pub = func(t *testing.T, topic string, payload []byte) byte {
			t.Helper()
			rc, err := cl.publish(t, topic, payload)
			if rc == 0 && err != nil {
				t.Fatalf("publish %s: %v", topic, err)
			}
			return rc
		}
		c.sub = func(t *testing.T, filter string) byte { t.Helper(); return cl.subscribe(t, filter)[0] }
	} else {
		cl := dialV3(t, "tcp://"+s.addrs.MQTT, a, name)
		d.box = cl.box
		d.pub = func(t *testing.T, topic string, payload []byte) byte {
			t.Helper()
			cl.publish(t, topic, payload)
			return 0
		}
		c.sub = func(t *testing.T, filter string) byte { t.Helper(); return cl.subscribe(t, filter) }
	}
	for _, f := range filters {
		if rc := c.sub(t, f); rc != 1 {
			t.Fatalf("%s/%s subscribe %s: 0x%02x", a.Username, name, f, rc)
		}
	}
	return c
}

func e2eeDecodeAnswer(t *testing.T, payload []byte) e2eeAnswer {
	t.Helper()
	var a e2eeAnswer
	if err := json.Unmarshal(payload, &a); err != nil {
		t.Fatalf("event %q: %v", payload, err)
	}
	return a
}

// answer waits for the next event on the device's events topic that pred
// accepts, failing at once on an error event.
func (c *e2eeClient) answer(t *testing.T, what string, pred func(e2eeAnswer) bool) e2eeAnswer {
	t.Helper()
	topic := "users/" + c.acct.ID + "/events"
	r := c.next(t, what, func(r received) bool {
		if r.Topic != topic {
			return false
		}
		a := e2eeDecodeAnswer(t, r.Payload)
		if a.Type == "error" {
			t.Fatalf("%s: error event while waiting for %s: %s", c.acct.Username, what, r.Payload)
		}
		return pred(a)
	})
	return e2eeDecodeAnswer(t, r.Payload)
}

// keyChange waits for the next device_keys_changed event: the first one
// must be the wanted one, so a spurious event (a top-up announced as a
// change) fails here.
func (c *e2eeClient) keyChange(t *testing.T, user, device, change string) {
	t.Helper()
	ev := c.answer(t, "device_keys_changed "+device, func(a e2eeAnswer) bool { return a.Type == "device_keys_changed" })
	if ev.User != user || ev.Device != device || ev.Change != change {
		t.Fatalf("%s: device_keys_changed %+v, want %s/%s %s", c.acct.Username, ev, user, device, change)
	}
}

// deviceMsg waits for the next device message on the device's own inbox
// that it has not seen: delivery is at least once, so a seq seen before is
// dropped, as docs/e2e.md asks of clients.
func (c *e2eeClient) deviceMsg(t *testing.T, k *e2eeKeyring) e2eeDeviceMsg {
	t.Helper()
	topic := "users/" + k.acct.ID + "/devices/" + k.device + "/inbox"
	for {
		r := c.next(t, "device message for "+k.device, onTopic(topic))
		var m e2eeDeviceMsg
		if err := json.Unmarshal(r.Payload, &m); err != nil {
			t.Fatalf("device message %q: %v", r.Payload, err)
		}
		if m.Seq == 0 || m.SentAt == "" || m.ToDevice != k.device {
			t.Fatalf("device message %s: incomplete or misaddressed", r.Payload)
		}
		if k.seen[m.Seq] {
			continue
		}
		k.seen[m.Seq] = true
		return m
	}
}

// e2eePutKeys publishes over REST and returns how many one-time prekeys the
// device holds afterwards.
func e2eePutKeys(t *testing.T, s *server, k *e2eeKeyring, body keyUpload) int {
	t.Helper()
	var out e2eeAnswer
	if st := s.call(t, "PUT", "/v1/devices/"+k.device+"/keys", k.acct.Token, body, nil, &out); st != http.StatusOK || out.DeviceID != k.device {
		t.Fatalf("PUT keys of %s: %d %+v", k.address(), st, out)
	}
	return out.OneTimePrekeys
}

// e2eeSendREST sends a device message over REST (POST
// /v1/device-messages) and returns its seq in the recipient's mailbox.
func e2eeSendREST(t *testing.T, s *server, from *e2eeKeyring, to *e2eeKeyring, cmid string, body any) uint64 {
	t.Helper()
	var out struct {
		ToDevice  e2eeAddress `json:"to_device"`
		Seq       uint64      `json:"seq"`
		SentAt    string      `json:"sent_at"`
		Duplicate bool        `json:"duplicate"`
	}
	req := map[string]any{"to_device": e2eeAddress{User: to.acct.ID, Device: to.device}, "cmid": cmid, "body": body, "from_device": from.device}
	if st := s.call(t, "POST", "/v1/device-messages", from.acct.Token, req, nil, &out); st != http.StatusCreated ||
		out.Seq == 0 || out.Duplicate || out.ToDevice != (e2eeAddress{User: to.acct.ID, Device: to.device}) {
		t.Fatalf("POST /v1/device-messages %s: %d %+v", cmid, st, out)
	}
	return out.Seq
}

// e2eeSendMQTT sends a device message on users/{me}/send: an envelope with
// to_device instead of to.
func e2eeSendMQTT(t *testing.T, c *e2eeClient, to *e2eeKeyring, cmid string, body any) {
	t.Helper()
	env := map[string]any{"to_device": e2eeAddress{User: to.acct.ID, Device: to.device}, "cmid": cmid, "body": body}
	c.wantRC(t, c.request(t, "send", env), 0)
}

// e2eeDecode decodes a message body the test itself encoded.
func e2eeDecode[T any](t *testing.T, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("body %s: %v", raw, err)
	}
	return v
}

// e2eeDirectoryIdentity is the identity key uid's device has in the directory
// (GET /v1/users/{uid}/devices, which claims nothing).
func e2eeDirectoryIdentity(t *testing.T, s *server, as account, uid, device string) []byte {
	t.Helper()
	var out e2eeAnswer
	if st := s.call(t, "GET", "/v1/users/"+uid+"/devices", as.Token, nil, nil, &out); st != http.StatusOK || out.UserID != uid {
		t.Fatalf("GET devices of %s: %d %+v", uid, st, out)
	}
	for _, d := range out.Devices {
		if d.DeviceID == device {
			if d.OneTimePrekey != nil {
				t.Fatalf("the devices listing handed out a one-time prekey: %+v", d)
			}
			return d.IdentityKey
		}
	}
	t.Fatalf("%s has no device %s in the directory: %+v", uid, device, out.Devices)
	return nil
}

// TestEndToEndEncryption: alice (phone over MQTT 5, laptop over MQTT
// 3.1.1) and bob (phone over MQTT 5) publish real keys, set up pairwise
// sessions by a simplified X3DH over the key directory and device messages,
// share a group session key, and exchange e2e 1:1 and group messages that
// every intended device decrypts while the server stores only ciphertext.
// A new identity key reaches bob as device_keys_changed, and not carol,
// who shares no chat with alice.
func TestEndToEndEncryption(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	events := func(a account) string { return "users/" + a.ID + "/events" }
	inbox := func(a account) string { return "users/" + a.ID + "/inbox" }
	devInbox := func(k *e2eeKeyring) string { return "users/" + k.acct.ID + "/devices/" + k.device + "/inbox" }

	aPhoneKeys := newE2EEKeyring(t, alice, "phone", 1, 1, 10)
	aLaptopKeys := newE2EEKeyring(t, alice, "laptop", 1, 100, 10)
	bPhoneKeys := newE2EEKeyring(t, bob, "phone", 7, 1, 10)

	// alice's phone reads its device messages over REST, so it subscribes
	// to no device inbox; the laptop subscribes to its own later, to get
	// what waited for it replayed.
	aPhone := dialE2EE(t, s, "v5", alice, "phone", events(alice), inbox(alice))
	aLaptop := dialE2EE(t, s, "v3", alice, "laptop", events(alice), inbox(alice))
	bPhone := dialE2EE(t, s, "v5", bob, "phone", events(bob), inbox(bob), devInbox(bPhoneKeys))
	cPhone := dialE2EE(t, s, "v5", carol, "phone", events(carol))
	// alice's tablet, with no keys, watches her whole subtree: device
	// messages to her other devices must never reach it.
	aTablet := dialE2EE(t, s, "v5", alice, "tablet", "users/"+alice.ID+"/#")

	// A device inbox is its device's alone, even for the same user.
	if rc := aLaptop.sub(t, devInbox(aPhoneKeys)); rc != 0x80 {
		t.Fatalf("laptop subscribed to the phone's device inbox: 0x%02x", rc)
	}
	if rc := cPhone.sub(t, devInbox(bPhoneKeys)); rc != 0x87 {
		t.Fatalf("carol subscribed to bob's device inbox: 0x%02x", rc)
	}

	// Publishing. The server refuses a signed prekey whose signature does
	// not verify against a 32-byte (Ed25519) identity key.
	forged := aLaptopKeys.publication(nil)
	forged.SignedPrekey.Signature = ed25519.Sign(aPhoneKeys.idPriv, forged.SignedPrekey.Key)
	var refusal struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if st := s.call(t, "PUT", "/v1/devices/laptop/keys", alice.Token, forged, nil, &refusal); st != http.StatusBadRequest || refusal.Error.Code != "invalid_payload" {
		t.Fatalf("forged signed prekey: %d %+v", st, refusal)
	}

	// alice's phone over MQTT, the others over REST.
	pub := aPhoneKeys.publication(aPhoneKeys.allOneTimePrekeys())
	pub.Op = "publish"
	aPhone.wantRC(t, aPhone.request(t, "keys", pub), 0)
	if a := aPhone.answer(t, "keys publish", func(a e2eeAnswer) bool { return a.Type == "keys" && a.Op == "publish" }); a.DeviceID != "phone" || a.OneTimePrekeys != 10 {
		t.Fatalf("MQTT publish answer %+v", a)
	}
	aPhone.keyChange(t, alice.ID, "phone", "added")
	if n := e2eePutKeys(t, s, aLaptopKeys, aLaptopKeys.publication(aLaptopKeys.allOneTimePrekeys())); n != 10 {
		t.Fatalf("laptop holds %d one-time prekeys, want 10", n)
	}
	aPhone.keyChange(t, alice.ID, "laptop", "added")
	if n := e2eePutKeys(t, s, bPhoneKeys, bPhoneKeys.publication(bPhoneKeys.allOneTimePrekeys())); n != 10 {
		t.Fatalf("bob's phone holds %d one-time prekeys, want 10", n)
	}
	bPhone.keyChange(t, bob.ID, "phone", "added")

	// alice's phone claims bob's bundle over MQTT and her laptop's over
	// REST, and checks both before trusting them.
	aPhone.wantRC(t, aPhone.request(t, "keys", map[string]string{"op": "claim", "user": bob.ID}), 0)
	bobClaim := aPhone.answer(t, "claim of bob", func(a e2eeAnswer) bool { return a.Type == "keys" && a.Op == "claim" })
	if bobClaim.UserID != bob.ID || len(bobClaim.Devices) != 1 {
		t.Fatalf("claim of bob: %+v", bobClaim)
	}
	e2eeVerifyBundle(t, bobClaim.Devices[0], bPhoneKeys)
	var laptopClaim e2eeAnswer
	if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/keys?device=laptop", alice.Token, nil, nil, &laptopClaim); st != http.StatusOK ||
		laptopClaim.UserID != alice.ID || len(laptopClaim.Devices) != 1 {
		t.Fatalf("claim of alice's laptop: %d %+v", st, laptopClaim)
	}
	e2eeVerifyBundle(t, laptopClaim.Devices[0], aLaptopKeys)

	// The claim left bob with 9 one-time prekeys, under prekeys_low (10).
	if a := bPhone.answer(t, "prekeys_low", func(a e2eeAnswer) bool { return a.Type == "prekeys_low" }); a.Device != "phone" || a.Remaining == nil || *a.Remaining != 9 {
		t.Fatalf("prekeys_low %+v, want phone with 9", a)
	}
	// A one-time prekey is handed out once: a second claim gets another.
	var again e2eeAnswer
	if st := s.call(t, "GET", "/v1/users/"+bob.ID+"/keys", alice.Token, nil, nil, &again); st != http.StatusOK || len(again.Devices) != 1 ||
		again.Devices[0].OneTimePrekey == nil || again.Devices[0].OneTimePrekey.ID == bobClaim.Devices[0].OneTimePrekey.ID {
		t.Fatalf("second claim of bob: %d %+v (first one-time prekey %d)", st, again, bobClaim.Devices[0].OneTimePrekey.ID)
	}
	if a := bPhone.answer(t, "prekeys_low", func(a e2eeAnswer) bool { return a.Type == "prekeys_low" }); a.Remaining == nil || *a.Remaining != 8 {
		t.Fatalf("second prekeys_low %+v, want 8", a)
	}
	// bob replenishes: the same identity with 5 more one-time prekeys
	// (no device_keys_changed: checked by the next keyChange on bob).
	if n := e2eePutKeys(t, s, bPhoneKeys, bPhoneKeys.publication(bPhoneKeys.addOneTimePrekeys(t, 11, 5))); n != 13 {
		t.Fatalf("after the top-up bob's phone holds %d one-time prekeys, want 13", n)
	}

	// Session setup: the initial message to each device is a device
	// message, to bob over MQTT and to the laptop over REST.
	e2eeSendMQTT(t, aPhone, bPhoneKeys, "init-bob-phone", aPhoneKeys.initiate(t, bPhoneKeys.address(), bobClaim.Devices[0]))
	e2eeSendREST(t, s, aPhoneKeys, aLaptopKeys, "init-alice-laptop", aPhoneKeys.initiate(t, aLaptopKeys.address(), laptopClaim.Devices[0]))

	aliceIdentity := e2eeDirectoryIdentity(t, s, bob, alice.ID, "phone")
	m := bPhone.deviceMsg(t, bPhoneKeys)
	if m.From != alice.ID || m.FromDevice != "phone" || m.CMID != "init-bob-phone" {
		t.Fatalf("bob's first device message %+v", m)
	}
	bPhoneKeys.accept(t, aPhoneKeys.address(), aliceIdentity, e2eeDecode[e2eeSessionInit](t, m.Body))

	// The laptop subscribes now: what waited for it is replayed.
	if rc := aLaptop.sub(t, devInbox(aLaptopKeys)); rc != 1 {
		t.Fatalf("laptop subscribe to its device inbox: 0x%02x", rc)
	}
	m = aLaptop.deviceMsg(t, aLaptopKeys)
	if m.From != alice.ID || m.FromDevice != "phone" || m.CMID != "init-alice-laptop" {
		t.Fatalf("laptop's first device message %+v", m)
	}
	aLaptopKeys.accept(t, aPhoneKeys.address(), e2eeDirectoryIdentity(t, s, alice, alice.ID, "phone"), e2eeDecode[e2eeSessionInit](t, m.Body))

	// bob answers on the new session over REST; alice's phone reads and
	// acknowledges its device messages over REST.
	replyAD := []byte(bPhoneKeys.address() + ">" + aPhoneKeys.address())
	reply := e2eeSessionMsg{Kind: "reply", Sealed: e2eeSeal(t, bPhoneKeys.sessions[aPhoneKeys.address()], []byte("hi alice, session up"), replyAD)}
	replySeq := e2eeSendREST(t, s, bPhoneKeys, aPhoneKeys, "reply-1", reply)
	var dup struct {
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
	}
	if st := s.call(t, "POST", "/v1/device-messages", bob.Token, map[string]any{"to_device": e2eeAddress{User: alice.ID, Device: "phone"}, "cmid": "reply-1", "body": reply, "from_device": "phone"}, nil, &dup); st != http.StatusOK || !dup.Duplicate || dup.Seq != replySeq {
		t.Fatalf("retried device message: %d %+v, want duplicate of seq %d", st, dup, replySeq)
	}
	var pending struct {
		Messages []e2eeDeviceMsg `json:"messages"`
	}
	if st := s.call(t, "GET", "/v1/devices/phone/messages?after=0", alice.Token, nil, nil, &pending); st != http.StatusOK || len(pending.Messages) != 1 {
		t.Fatalf("alice's phone pending: %d %+v", st, pending)
	}
	if pm := pending.Messages[0]; pm.Seq != replySeq || pm.From != bob.ID || pm.FromDevice != "phone" || pm.ToDevice != "phone" {
		t.Fatalf("alice's phone pending message %+v", pm)
	}
	got := e2eeDecode[e2eeSessionMsg](t, pending.Messages[0].Body)
	if pt := e2eeOpen(t, aPhoneKeys.sessions[bPhoneKeys.address()], got.Sealed, replyAD); string(pt) != "hi alice, session up" {
		t.Fatalf("alice's phone decrypted %q", pt)
	}
	var acked struct {
		Deleted int `json:"deleted"`
	}
	if st := s.call(t, "POST", "/v1/devices/phone/messages/ack", alice.Token, map[string]uint64{"seq": replySeq}, nil, &acked); st != http.StatusOK || acked.Deleted != 1 {
		t.Fatalf("ack: %d %+v", st, acked)
	}
	if st := s.call(t, "GET", "/v1/devices/phone/messages", alice.Token, nil, nil, &pending); st != http.StatusOK || len(pending.Messages) != 0 {
		t.Fatalf("alice's phone pending after ack: %d %+v", st, pending)
	}

	// An e2e 1:1 message: one ciphertext per recipient device, alice's own
	// laptop included, each bound to the chat, cmid and device.
	chat := directChat(alice.ID, bob.ID)
	secret := []byte("meet at the old mill at nine")
	adFor := func(chat, cmid, dev string) []byte { return []byte(chat + "|" + cmid + "|" + dev) }
	direct := map[string]e2eeSealed{}
	for _, peer := range []*e2eeKeyring{bPhoneKeys, aLaptopKeys} {
		direct[peer.address()] = e2eeSeal(t, aPhoneKeys.sessions[peer.address()], secret, adFor(chat, "e2e-1", peer.address()))
	}
	env := map[string]any{"to": "user:" + bob.ID, "cmid": "e2e-1", "type": "e2e", "body": direct}
	aPhone.wantRC(t, aPhone.request(t, "send", env), 0)
	for _, rcpt := range []struct {
		c *e2eeClient
		k *e2eeKeyring
	}{{bPhone, bPhoneKeys}, {aLaptop, aLaptopKeys}} {
		msg := rcpt.c.next(t, "e2e 1:1 message", func(r received) bool {
			return r.Topic == inbox(rcpt.k.acct) && r.inbox(t).CMID == "e2e-1"
		}).inbox(t)
		if msg.Type != "e2e" || msg.Chat != chat || msg.From != alice.ID {
			t.Fatalf("%s: e2e message %+v", rcpt.k.address(), msg)
		}
		body := e2eeDecode[map[string]e2eeSealed](t, msg.Body)
		mine, ok := body[rcpt.k.address()]
		if !ok {
			t.Fatalf("%s: no ciphertext for this device in %s", rcpt.k.address(), msg.Body)
		}
		if pt := e2eeOpen(t, rcpt.k.sessions[aPhoneKeys.address()], mine, adFor(chat, "e2e-1", rcpt.k.address())); !bytes.Equal(pt, secret) {
			t.Fatalf("%s decrypted %q", rcpt.k.address(), pt)
		}
	}

	// A group of alice and bob: alice's phone makes a group session key
	// and shares it with every member device over device messages
	// (Megolm-style), then sends one ciphertext for all.
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "mill", "members": []string{bob.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	groupKey := make([]byte, chacha20poly1305.KeySize)
	if _, err := rand.Read(groupKey); err != nil {
		t.Fatal(err)
	}
	const session = "alice-phone-1"
	aPhoneKeys.groups[session] = groupKey
	shareAD := func(to *e2eeKeyring) []byte {
		return []byte("group_key|" + g.GroupID + "|" + session + "|" + to.address())
	}
	for i, peer := range []*e2eeKeyring{bPhoneKeys, aLaptopKeys} {
		share := e2eeSessionMsg{Kind: "group_key", Group: g.GroupID, Sealed: e2eeSeal(t, aPhoneKeys.sessions[peer.address()], groupKey, shareAD(peer))}
		if i == 0 {
			e2eeSendMQTT(t, aPhone, peer, "share-"+strconv.Itoa(i), share)
		} else {
			e2eeSendREST(t, s, aPhoneKeys, peer, "share-"+strconv.Itoa(i), share)
		}
	}
	for _, rcpt := range []struct {
		c *e2eeClient
		k *e2eeKeyring
	}{{bPhone, bPhoneKeys}, {aLaptop, aLaptopKeys}} {
		dm := rcpt.c.deviceMsg(t, rcpt.k)
		share := e2eeDecode[e2eeSessionMsg](t, dm.Body)
		if dm.From != alice.ID || share.Kind != "group_key" || share.Group != g.GroupID {
			t.Fatalf("%s: expected the group key share, got %+v", rcpt.k.address(), dm)
		}
		rcpt.k.groups[session] = e2eeOpen(t, rcpt.k.sessions[aPhoneKeys.address()], share.Sealed, shareAD(rcpt.k))
	}
	groupSecret := []byte("the mill is closed, meet at the bridge")
	gAD := []byte(g.Chat + "|e2e-g1|" + session)
	genv := map[string]any{"to": "group:" + g.GroupID, "cmid": "e2e-g1", "type": "e2e",
		"body": e2eeGroupBody{Session: session, Sealed: e2eeSeal(t, groupKey, groupSecret, gAD)}}
	aPhone.wantRC(t, aPhone.request(t, "send", genv), 0)
	for _, rcpt := range []struct {
		c *e2eeClient
		k *e2eeKeyring
	}{{bPhone, bPhoneKeys}, {aLaptop, aLaptopKeys}} {
		msg := rcpt.c.next(t, "e2e group message", func(r received) bool {
			return r.Topic == inbox(rcpt.k.acct) && r.inbox(t).CMID == "e2e-g1"
		}).inbox(t)
		body := e2eeDecode[e2eeGroupBody](t, msg.Body)
		if msg.Type != "e2e" || msg.Chat != g.Chat || body.Session != session {
			t.Fatalf("%s: group message %+v", rcpt.k.address(), msg)
		}
		if pt := e2eeOpen(t, rcpt.k.groups[session], body.Sealed, gAD); !bytes.Equal(pt, groupSecret) {
			t.Fatalf("%s decrypted the group message to %q", rcpt.k.address(), pt)
		}
	}

	// The tablet got the group message after the key shares were
	// delivered live to the laptop: had any device message been published
	// to it, it would have come first.
	for {
		r := aTablet.next(t, "the group message on the tablet", func(received) bool { return true })
		if strings.Contains(r.Topic, "/devices/") {
			t.Fatalf("alice's tablet received another device's message on %s: %s", r.Topic, r.Payload)
		}
		if r.Topic == inbox(alice) && r.inbox(t).CMID == "e2e-g1" {
			break
		}
	}

	// Delivered device messages were acknowledged by PUBACK (bob over MQTT
	// 5, the laptop over 3.1.1): nothing stays pending.
	for _, k := range []*e2eeKeyring{bPhoneKeys, aLaptopKeys} {
		eventually(t, k.address()+" device messages acknowledged", func() error {
			var p struct {
				Messages []e2eeDeviceMsg `json:"messages"`
			}
			if st := s.call(t, "GET", "/v1/devices/"+k.device+"/messages", k.acct.Token, nil, nil, &p); st != http.StatusOK {
				return fmt.Errorf("status %d", st)
			}
			if len(p.Messages) != 0 {
				return fmt.Errorf("%d still pending", len(p.Messages))
			}
			return nil
		})
	}

	// What the server stored is ciphertext: neither plaintext nor the
	// group key appears in any stored body, raw or base64.
	secrets := [][]byte{secret, groupSecret, groupKey}
	for _, c := range []string{chat, g.Chat} {
		msgs, err := s.app.Store().History(context.Background(), c, store.HistoryQuery{After: 0, Limit: 100})
		if err != nil {
			t.Fatalf("history of %s: %v", c, err)
		}
		e2e := 0
		for _, sm := range msgs {
			for _, p := range secrets {
				if bytes.Contains(sm.Body, p) || bytes.Contains(sm.Body, []byte(base64.StdEncoding.EncodeToString(p))) {
					t.Fatalf("stored body of %s seq %d holds a plaintext: %s", c, sm.Seq, sm.Body)
				}
			}
			if sm.Type == "e2e" {
				e2e++
			}
		}
		if e2e != 1 {
			t.Fatalf("%s: %d stored e2e messages, want 1", c, e2e)
		}
	}

	// The laptop gets a new identity: bob (who shares chats with alice)
	// and alice's phone are told, bob re-fetches and sees a new safety
	// number, and the old one-time prekeys are gone with the old identity.
	oldFingerprint := e2eeFingerprint(aLaptopKeys.idPub)
	aLaptopKeys.newIdentity(t, 2)
	if n := e2eePutKeys(t, s, aLaptopKeys, aLaptopKeys.publication(aLaptopKeys.addOneTimePrekeys(t, 500, 3))); n != 3 {
		t.Fatalf("after the new identity the laptop holds %d one-time prekeys, want 3", n)
	}
	bPhone.keyChange(t, alice.ID, "laptop", "identity_changed")
	aPhone.keyChange(t, alice.ID, "laptop", "identity_changed")
	if fp := e2eeFingerprint(e2eeDirectoryIdentity(t, s, bob, alice.ID, "laptop")); fp == oldFingerprint || fp != e2eeFingerprint(aLaptopKeys.idPub) {
		t.Fatalf("directory fingerprint %s after the change (old %s, new %s)", fp, oldFingerprint, e2eeFingerprint(aLaptopKeys.idPub))
	}
	var fresh e2eeAnswer
	if st := s.call(t, "GET", "/v1/users/"+alice.ID+"/keys?device=laptop", bob.Token, nil, nil, &fresh); st != http.StatusOK || len(fresh.Devices) != 1 {
		t.Fatalf("bob's claim of the new laptop bundle: %d %+v", st, fresh)
	}
	e2eeVerifyBundle(t, fresh.Devices[0], aLaptopKeys)
	if otk := fresh.Devices[0].OneTimePrekey; otk == nil || otk.ID < 500 {
		t.Fatalf("claim after the new identity handed out %+v, want one of the new one-time prekeys", otk)
	}

	// carol shares no chat with alice: the change never reached her. Her
	// own sync answer, published on the same topic after bob was told,
	// marks the point by which it would have arrived.
	cPhone.wantRC(t, cPhone.request(t, "sync", map[string]string{"request_id": "marker"}), 0)
	for {
		r := cPhone.next(t, "carol's marker", onTopic(events(carol)))
		a := e2eeDecodeAnswer(t, r.Payload)
		if a.Type == "device_keys_changed" {
			t.Fatalf("carol, a stranger to alice, was told: %s", r.Payload)
		}
		if a.Type == "sync" && a.RequestID == "marker" {
			break
		}
	}
}
