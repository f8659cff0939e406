// Package e2ekeys is the device key directory of end-to-end encryption:
// each device publishes its public keys (an identity key, a signed prekey,
// one-time prekeys) and others fetch them to start an encrypted session
// with it. The keys are opaque to the server except for one check (an
// Ed25519 signature of the signed prekey, when the identity key has that
// size): nothing here lets the server read a message.
//
// Fetching a bundle claims (removes) one one-time prekey per device, so
// claims are rate-limited per requester, and a device running low is told
// to upload more. Users who share a chat with a device's owner learn when
// the device is added, changes identity or is removed, so their clients can
// warn about and re-key the session.
package e2ekeys

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/ratelimit"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Store is the slice of the storage contract the directory uses: the key
// aggregate itself, accounts, and what tells who shares a chat with whom.
type Store interface {
	store.KeyDirectory
	UserByID(ctx context.Context, id string) (store.User, error)
	ChatStates(ctx context.Context, uid string) ([]store.ChatState, error)
	LastMessages(ctx context.Context, chats []string) (map[string]store.Message, error)
	GroupsOf(ctx context.Context, uid, after string, limit int) ([]store.Member, error)
	MembersOfGroups(ctx context.Context, groupIDs []string) (map[string][]store.Member, error)
}

// Blocks answers whether a user blocks another (services/consent).
type Blocks interface {
	Blocked(ctx context.Context, blocker, other string) (bool, error)
}

// Events publishes an event to every device of a user, on any node
// (hooks.Outbox).
type Events interface {
	Event(uid string, v any)
}

// LimitObserver counts refused claims.
type LimitObserver interface{ ObserveLimitRefusals(limit string, n int) }

// Metrics counts claims by result: ClaimKey ("key") or ClaimNone ("none",
// the device had no one-time prekey left).
type Metrics interface{ ObservePrekeyClaim(result string) }

// LimitKeyClaim names the claim rate limit in LimitObserver.
const LimitKeyClaim = "key_claim"

// Claim results for Metrics.
const (
	ClaimKey  = "key"
	ClaimNone = "none"
)

// Options configures the service. Zero values are replaced by the
// defaults of the configuration (internal/config).
type Options struct {
	MaxKeyBytes       int // each key and signature; 0 = 4096
	MaxOneTimePrekeys int // per device; 0 = 200
	// PrekeysLow: a claim leaving a device fewer one-time prekeys than
	// this sends its owner a prekeys_low event (and one at 0 whatever it
	// is).
	PrekeysLow int
	// ClaimRate and ClaimBurst bound each requester's bundle fetches per
	// second; ClaimRate 0 means unlimited.
	ClaimRate, ClaimBurst int
	Limits                LimitObserver // nil = not counted
	Metrics               Metrics       // nil = not counted
	Logger                *slog.Logger
}

// Service is the key directory.
type Service struct {
	st     Store
	blocks Blocks
	events Events
	opts   Options
	claims *ratelimit.Keyed // per requester; nil = unlimited
	// publishing serialises one device's publishes on this node (striped):
	// the one-time prekey bound is checked against what the device holds,
	// which another publish of the same device must not change meanwhile.
	publishing [32]sync.Mutex
}

// New returns the service. blocks may be nil (nobody blocks anybody);
// events may be nil (no events).
func New(st Store, blocks Blocks, events Events, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxKeyBytes <= 0 {
		opts.MaxKeyBytes = 4096
	}
	if opts.MaxOneTimePrekeys <= 0 {
		opts.MaxOneTimePrekeys = 200
	}
	return &Service{st: st, blocks: blocks, events: events, opts: opts, claims: ratelimit.New(opts.ClaimRate, opts.ClaimBurst)}
}

// SignedPrekey is a medium-term prekey with its signature by the identity
// key. Bytes are standard base64 in JSON.
type SignedPrekey struct {
	ID        uint32 `json:"id"`
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

// OneTimePrekey is a prekey handed out once.
type OneTimePrekey struct {
	ID  uint32 `json:"id"`
	Key []byte `json:"key"`
}

// Upload is what a device publishes (PUT /v1/devices/{device_id}/keys, the
// MQTT publish op).
type Upload struct {
	IdentityKey    []byte          `json:"identity_key"`
	SignedPrekey   *SignedPrekey   `json:"signed_prekey"`
	OneTimePrekeys []OneTimePrekey `json:"one_time_prekeys,omitempty"`
}

// Published answers a publish.
type Published struct {
	DeviceID       string `json:"device_id"`
	OneTimePrekeys int    `json:"one_time_prekeys"` // held after the publish
}

// Device is one device's published keys, without one-time prekeys.
type Device struct {
	DeviceID     string       `json:"device_id"`
	IdentityKey  []byte       `json:"identity_key"`
	SignedPrekey SignedPrekey `json:"signed_prekey"`
	UpdatedAt    string       `json:"updated_at"`
}

// DeviceList answers GET /v1/users/{user_id}/devices.
type DeviceList struct {
	UserID  string   `json:"user_id"`
	Devices []Device `json:"devices"`
}

// Bundle is one device's keys for starting a session with it: one
// one-time prekey claimed for the requester, nil when the device had none
// left (the client then uses the signed prekey alone).
type Bundle struct {
	DeviceID      string         `json:"device_id"`
	IdentityKey   []byte         `json:"identity_key"`
	SignedPrekey  SignedPrekey   `json:"signed_prekey"`
	OneTimePrekey *OneTimePrekey `json:"one_time_prekey"`
}

// Bundles answers GET /v1/users/{user_id}/keys.
type Bundles struct {
	UserID  string   `json:"user_id"`
	Devices []Bundle `json:"devices"`
}

// PrekeysLowEvent tells a user that one of its devices should upload
// one-time prekeys.
type PrekeysLowEvent struct {
	Type      string `json:"type"` // "prekeys_low"
	Device    string `json:"device"`
	Remaining int    `json:"remaining"`
}

// KeysChangedEvent tells that a device of User was added, changed its
// identity key or was removed.
type KeysChangedEvent struct {
	Type   string `json:"type"` // "device_keys_changed"
	User   string `json:"user"`
	Device string `json:"device"`
	Change string `json:"change"` // ChangeAdded | ChangeIdentity | ChangeRemoved
}

// The kinds of KeysChangedEvent.
const (
	ChangeAdded    = "added"
	ChangeIdentity = "identity_changed"
	ChangeRemoved  = "removed"
)

var (
	// errNoSuchUser is the one answer for an unknown, malformed or deleted
	// user id; transports name it in their own words (REST not_found, MQTT
	// unknown_recipient).
	errNoSuchUser = &chat.Error{Code: chat.CodeNotFound, Message: "no such user"}
	errNoKeys     = &chat.Error{Code: chat.CodeNotFound, Message: "this device has published no keys"}
	errDeviceID   = &chat.Error{Code: chat.CodeInvalid, Message: "device id must be 1 to 64 printable ASCII characters without / + #"}
)

// IsNoSuchUser reports whether err is the refusal for an unknown user.
func IsNoSuchUser(err error) bool { return errors.Is(err, errNoSuchUser) }

func invalid(format string, a ...any) error {
	return &chat.Error{Code: chat.CodeInvalid, Message: fmt.Sprintf(format, a...)}
}

func (s *Service) internal(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return &chat.Error{Code: chat.CodeUnavailable, Message: "request cancelled or timed out", Err: err}
	}
	s.opts.Logger.Error("key directory store failure", "op", op, "error", err)
	return &chat.Error{Code: chat.CodeInternal, Message: "storage failure, retry later", Err: fmt.Errorf("%s: %w", op, err)}
}

// validKey checks one key or signature: present and at most MaxKeyBytes.
func (s *Service) validKey(name string, b []byte) error {
	if len(b) == 0 {
		return invalid("%s is required", name)
	}
	if len(b) > s.opts.MaxKeyBytes {
		return invalid("%s is %d bytes, the limit is %d", name, len(b), s.opts.MaxKeyBytes)
	}
	return nil
}

// check validates an upload on its own (sizes, ids, the signature).
func (s *Service) check(up Upload) error {
	if err := s.validKey("identity_key", up.IdentityKey); err != nil {
		return err
	}
	if up.SignedPrekey == nil {
		return invalid("signed_prekey is required")
	}
	if err := s.validKey("signed_prekey.key", up.SignedPrekey.Key); err != nil {
		return err
	}
	if err := s.validKey("signed_prekey.signature", up.SignedPrekey.Signature); err != nil {
		return err
	}
	// An Ed25519-sized identity key is checked; any other scheme (XEdDSA
	// over Curve25519 keys of another encoding, post-quantum hybrids) is
	// stored as given, and its clients verify the signature themselves.
	if len(up.IdentityKey) == ed25519.PublicKeySize &&
		!ed25519.Verify(ed25519.PublicKey(up.IdentityKey), up.SignedPrekey.Key, up.SignedPrekey.Signature) {
		return invalid("signed_prekey.signature does not verify against identity_key")
	}
	if len(up.OneTimePrekeys) > s.opts.MaxOneTimePrekeys {
		return tooManyPrekeys(s.opts.MaxOneTimePrekeys)
	}
	seen := make(map[uint32]bool, len(up.OneTimePrekeys))
	for i, k := range up.OneTimePrekeys {
		if err := s.validKey(fmt.Sprintf("one_time_prekeys[%d].key", i), k.Key); err != nil {
			return err
		}
		if seen[k.ID] {
			return invalid("one_time_prekeys[%d].id %d appears twice", i, k.ID)
		}
		seen[k.ID] = true
	}
	return nil
}

func tooManyPrekeys(max int) error {
	return &chat.Error{Code: chat.CodeQuota, Message: fmt.Sprintf("a device holds at most %d one-time prekeys: upload fewer", max)}
}

// Publish stores the keys of uid's device deviceID. An upload that would
// leave the device more than MaxOneTimePrekeys is refused whole. Adding a
// device or changing its identity key tells everyone who shares a chat with
// uid; a new signed prekey or more one-time prekeys tell nobody.
func (s *Service) Publish(ctx context.Context, uid, deviceID string, up Upload) (Published, error) {
	if !ids.ValidDeviceID(deviceID) {
		return Published{}, errDeviceID
	}
	if err := s.check(up); err != nil {
		return Published{}, err
	}
	mu := &s.publishing[stripe(uid, deviceID)]
	mu.Lock()
	defer mu.Unlock()
	if err := s.checkRoom(ctx, uid, deviceID, up); err != nil {
		return Published{}, err
	}
	k := store.DeviceKeys{
		UserID: uid, DeviceID: deviceID, IdentityKey: up.IdentityKey,
		SignedPrekeyID: up.SignedPrekey.ID, SignedPrekey: up.SignedPrekey.Key, SignedPrekeySig: up.SignedPrekey.Signature,
		UpdatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	otks := make([]store.OneTimePrekey, len(up.OneTimePrekeys))
	for i, o := range up.OneTimePrekeys {
		otks[i] = store.OneTimePrekey{ID: o.ID, Key: o.Key}
	}
	change, remaining, err := s.st.PutDeviceKeys(ctx, k, otks)
	if err != nil {
		return Published{}, s.internal(ctx, "put device keys", err)
	}
	switch change {
	case store.KeyAdded:
		s.announce(uid, deviceID, ChangeAdded)
	case store.KeyIdentityChanged:
		s.announce(uid, deviceID, ChangeIdentity)
	}
	return Published{DeviceID: deviceID, OneTimePrekeys: remaining}, nil
}

// checkRoom refuses an upload whose one-time prekeys would take the device
// past MaxOneTimePrekeys, counting those it holds. Every uploaded id counts
// as new, even one that replaces a held key: the bound errs on the safe
// side by at most the upload's size. With the same identity key the held
// keys stay, and the store tells their number only as the result of a put:
// putting the device's current keys back as they are writes nothing new
// and answers it. With a new identity key the held keys go, so only the
// upload counts (check did that).
func (s *Service) checkRoom(ctx context.Context, uid, deviceID string, up Upload) error {
	if len(up.OneTimePrekeys) == 0 {
		return nil
	}
	have, err := s.st.DeviceKeys(ctx, uid)
	if err != nil {
		return s.internal(ctx, "device keys", err)
	}
	for _, k := range have {
		if k.DeviceID != deviceID || string(k.IdentityKey) != string(up.IdentityKey) {
			continue
		}
		_, held, err := s.st.PutDeviceKeys(ctx, k, nil)
		if err != nil {
			return s.internal(ctx, "count one-time prekeys", err)
		}
		if held+len(up.OneTimePrekeys) > s.opts.MaxOneTimePrekeys {
			return &chat.Error{Code: chat.CodeQuota, Message: fmt.Sprintf(
				"this device holds %d one-time prekeys and may hold at most %d: upload at most %d more",
				held, s.opts.MaxOneTimePrekeys, max(0, s.opts.MaxOneTimePrekeys-held))}
		}
	}
	return nil
}

// Delete removes the keys and one-time prekeys of uid's device deviceID
// and tells everyone who shares a chat with uid.
func (s *Service) Delete(ctx context.Context, uid, deviceID string) error {
	if !ids.ValidDeviceID(deviceID) {
		return errNoKeys // no device has an id Publish refuses
	}
	mu := &s.publishing[stripe(uid, deviceID)]
	mu.Lock()
	defer mu.Unlock()
	err := s.st.DeleteDeviceKeys(ctx, uid, deviceID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNoKeys
	case err != nil:
		return s.internal(ctx, "delete device keys", err)
	}
	s.announce(uid, deviceID, ChangeRemoved)
	return nil
}

// visibleKeys returns uid's devices as requester may see them: none when
// uid blocks requester, which is indistinguishable from a user without
// keys (a block is never revealed). An unknown or deleted uid is refused.
func (s *Service) visibleKeys(ctx context.Context, requester, uid string) ([]store.DeviceKeys, error) {
	if !ids.ValidUserID(uid) {
		return nil, errNoSuchUser
	}
	u, err := s.st.UserByID(ctx, uid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNoSuchUser
	case err != nil:
		return nil, s.internal(ctx, "user", err)
	case u.Deleted():
		return nil, errNoSuchUser
	}
	if requester != uid && s.blocks != nil {
		blocked, err := s.blocks.Blocked(ctx, uid, requester)
		if err != nil {
			return nil, s.internal(ctx, "blocks", err)
		}
		if blocked {
			return nil, nil
		}
	}
	keys, err := s.st.DeviceKeys(ctx, uid)
	if err != nil {
		return nil, s.internal(ctx, "device keys", err)
	}
	return keys, nil
}

// Devices lists uid's devices with their keys for requester, claiming
// nothing.
func (s *Service) Devices(ctx context.Context, requester, uid string) (DeviceList, error) {
	keys, err := s.visibleKeys(ctx, requester, uid)
	if err != nil {
		return DeviceList{}, err
	}
	out := DeviceList{UserID: uid, Devices: make([]Device, len(keys))}
	for i, k := range keys {
		out.Devices[i] = Device{
			DeviceID: k.DeviceID, IdentityKey: k.IdentityKey, SignedPrekey: signedPrekey(k),
			UpdatedAt: k.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		}
	}
	return out, nil
}

// Claim returns a bundle for each of uid's devices (only deviceID's when
// it is not ""), claiming one one-time prekey of each for requester. It
// counts against requester's claim rate, whatever it finds.
func (s *Service) Claim(ctx context.Context, requester, uid, deviceID string) (Bundles, error) {
	if deviceID != "" && !ids.ValidDeviceID(deviceID) {
		return Bundles{}, errDeviceID
	}
	if !s.claims.Allow(requester) {
		if s.opts.Limits != nil {
			s.opts.Limits.ObserveLimitRefusals(LimitKeyClaim, 1)
		}
		return Bundles{}, &chat.Error{
			Code:       chat.CodeRateLimited,
			Message:    fmt.Sprintf("key claims come too fast: at most %d a second (%d at once); retry later", s.opts.ClaimRate, s.opts.ClaimBurst),
			RetryAfter: retryAfter(s.opts.ClaimRate),
		}
	}
	keys, err := s.visibleKeys(ctx, requester, uid)
	if err != nil {
		return Bundles{}, err
	}
	out := Bundles{UserID: uid, Devices: []Bundle{}}
	for _, k := range keys {
		if deviceID != "" && k.DeviceID != deviceID {
			continue
		}
		b := Bundle{DeviceID: k.DeviceID, IdentityKey: k.IdentityKey, SignedPrekey: signedPrekey(k)}
		otk, remaining, err := s.st.ClaimOneTimePrekey(ctx, uid, k.DeviceID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Its owner was told when the last one went.
			s.observeClaim(ClaimNone)
		case err != nil:
			return Bundles{}, s.internal(ctx, "claim one-time prekey", err)
		default:
			s.observeClaim(ClaimKey)
			b.OneTimePrekey = &OneTimePrekey{ID: otk.ID, Key: otk.Key}
			if remaining < s.opts.PrekeysLow || remaining == 0 {
				s.event(uid, PrekeysLowEvent{Type: "prekeys_low", Device: k.DeviceID, Remaining: remaining})
			}
		}
		out.Devices = append(out.Devices, b)
	}
	return out, nil
}

// retryAfter is when one more claim fits at rate per second, rounded up to
// whole seconds by the transports.
func retryAfter(rate int) time.Duration {
	if rate <= 0 {
		return time.Second
	}
	return time.Duration(math.Ceil(float64(time.Second) / float64(rate)))
}

func (s *Service) observeClaim(result string) {
	if s.opts.Metrics != nil {
		s.opts.Metrics.ObservePrekeyClaim(result)
	}
}

func (s *Service) event(uid string, v any) {
	if s.events != nil {
		s.events.Event(uid, v)
	}
}

func signedPrekey(k store.DeviceKeys) SignedPrekey {
	return SignedPrekey{ID: k.SignedPrekeyID, Key: k.SignedPrekey, Signature: k.SignedPrekeySig}
}

// stripe picks the publish lock of a device.
func stripe(uid, deviceID string) int {
	h := uint32(2166136261) // FNV-1a
	for _, s := range [...]string{uid, "/", deviceID} {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint32(s[i])) * 16777619
		}
	}
	return int(h % 32)
}
