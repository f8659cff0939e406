package store

import (
	"context"
	"errors"
	"time"
)

// ErrQuota is returned when a write would take a per-device bound past its
// limit (pending device messages).
var ErrQuota = errors.New("store: quota exceeded")

// DeviceKeys is the public part of one device's end-to-end encryption keys,
// opaque bytes to the server: an identity key, and a signed prekey with
// its signature by the identity key. (UserID, DeviceID) is the key.
type DeviceKeys struct {
	UserID, DeviceID string
	IdentityKey      []byte
	SignedPrekeyID   uint32
	SignedPrekey     []byte
	SignedPrekeySig  []byte
	UpdatedAt        time.Time
}

// OneTimePrekey is a prekey handed out once, to one requester.
type OneTimePrekey struct {
	ID  uint32
	Key []byte
}

// KeyChange tells what PutDeviceKeys changed about a device's identity.
type KeyChange int

const (
	KeyUnchanged       KeyChange = iota // same identity key as before
	KeyAdded                            // the device had no keys
	KeyIdentityChanged                  // the identity key was replaced
)

// KeyDirectory is the device key aggregate that end-to-end encryption
// clients publish to and fetch from.
type KeyDirectory interface {
	// PutDeviceKeys stores k (replacing the device's identity and signed
	// prekey) and adds otks to its one-time prekeys; a one-time prekey id
	// the device already has is replaced. When the identity key changes,
	// every one-time prekey stored before goes (they belong to the old
	// identity) before otks are added. It reports what changed and how
	// many one-time prekeys the device holds afterwards.
	PutDeviceKeys(ctx context.Context, k DeviceKeys, otks []OneTimePrekey) (change KeyChange, remaining int, err error)
	// DeviceKeys lists uid's devices that published keys, by device id.
	DeviceKeys(ctx context.Context, uid string) ([]DeviceKeys, error)
	// ClaimOneTimePrekey removes and returns one one-time prekey of the
	// device (the lowest id), atomically: under concurrent claims, from
	// any number of processes, each key is returned at most once.
	// ErrNotFound when the device has none left; remaining is how many
	// are left after this claim.
	ClaimOneTimePrekey(ctx context.Context, uid, deviceID string) (key OneTimePrekey, remaining int, err error)
	// DeleteDeviceKeys removes the device's keys and one-time prekeys;
	// ErrNotFound when it had none.
	DeleteDeviceKeys(ctx context.Context, uid, deviceID string) error
}

// DeviceMessage is a store-and-forward message addressed to one device
// (end-to-end key exchange travels on these). (ToUser, ToDevice, Seq) is
// the key; Seq starts at 1 per device and only grows, also across
// deletions, so a device tells a new message from one it has seen.
type DeviceMessage struct {
	ToUser, ToDevice string
	Seq              uint64
	From             string
	FromDevice       string // the sending device, "" over REST without one
	CMID             string // with From, the dedupe key within DedupeWindow
	Body             []byte // raw JSON value, opaque to the server
	SentAt           time.Time
}

// DeviceMessages is the per-device mailbox aggregate.
type DeviceMessages interface {
	// PutDeviceMessage stores m with the device's next seq (m.Seq and
	// m.SentAt as given are ignored; SentAt is now). A (From, CMID) stored
	// within DedupeWindow returns the stored message and dup = true,
	// whatever device it went to; the duplicate has every field of the
	// stored message but Body, which is not kept once the message is
	// acknowledged (the sender already has it). ErrQuota when the device already holds
	// maxPending messages (0 = no limit).
	PutDeviceMessage(ctx context.Context, m DeviceMessage, maxPending int) (stored DeviceMessage, dup bool, err error)
	// PendingDeviceMessages returns the device's messages with seq >
	// after, in seq order, at most limit.
	PendingDeviceMessages(ctx context.Context, uid, deviceID string, after uint64, limit int) ([]DeviceMessage, error)
	// AckDeviceMessages deletes the device's messages with seq <= upTo and
	// returns how many it deleted.
	AckDeviceMessages(ctx context.Context, uid, deviceID string, upTo uint64) (int, error)
}
