// Package store defines the storage contract every backend implements: one
// small interface per aggregate, context first, sentinel errors. Backends live
// in sub-packages and prove themselves against store/storetest.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrNotFound is returned when the requested record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict is returned when a write would violate a uniqueness rule.
	ErrConflict = errors.New("store: conflict")
)

// DedupeWindow is how long a (sender, cmid) pair keeps mapping to the message
// it first produced. Backends must stop returning a dedupe record once its
// message's SentAt is older than this, whether or not it was physically removed.
const DedupeWindow = 24 * time.Hour

// User is an account. Username is stored lower-cased and is unique.
type User struct {
	ID           string
	Username     string
	PasswordHash []byte
	CreatedAt    time.Time
	// Disabled accounts cannot log in, refresh or connect (operator's
	// choice, reversible).
	Disabled bool
	// DeletedAt is set on a deleted account's tombstone (see Accounts);
	// zero for a live one.
	DeletedAt time.Time
}

// Active reports whether the account may hold sessions.
func (u User) Active() bool { return !u.Disabled && u.DeletedAt.IsZero() }

// Deleted reports whether u is a deleted account's tombstone.
func (u User) Deleted() bool { return !u.DeletedAt.IsZero() }

// Users is the account aggregate.
type Users interface {
	// CreateUser inserts u; ErrConflict when the id or the username is taken.
	CreateUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id string) (User, error)
	UserByUsername(ctx context.Context, username string) (User, error)
	// UsersByID returns the users among ids, keyed by id; unknown ids are
	// absent. One call per screen instead of one per row (chat titles).
	UsersByID(ctx context.Context, ids []string) (map[string]User, error)
}

// Message is one stored chat message. (Chat, Seq) is its primary key; Seq
// starts at 1 and is gap-free per chat, assigned by the chat's single writer
// before the message reaches the store. Times are kept to the millisecond.
type Message struct {
	Chat    string
	Seq     uint64
	ID      uint64 // time-ordered, unique across nodes
	From    string
	CMID    string // client message id, the dedupe key together with From
	Type    string
	Body    []byte // raw JSON value, opaque to the server
	ReplyTo uint64 // seq in the same chat, 0 when unset
	SentAt  time.Time
	// Change makes this message an edit, a delete or a reaction of an
	// earlier message of the same chat; nil for an ordinary message.
	// AppendMessages applies it to its target in the same atomic write
	// that stores this message.
	Change *Change

	// The resolved state of an ordinary message, filled by History (and
	// LastMessages, without Reactions) and never written by AppendMessages:
	// when it was last edited, when it was deleted (its Body is then
	// empty), and who reacts to it with what, ordered by emoji (bytewise).
	EditedAt  time.Time
	DeletedAt time.Time
	Reactions []Reaction
}

// Deleted reports whether m is a deleted message's tombstone.
func (m Message) Deleted() bool { return !m.DeletedAt.IsZero() }

// ChangeKind names what a change message does to its target.
type ChangeKind string

const (
	// ChangeEdit replaces the target's body with the edit's own Body and
	// sets its EditedAt to the edit's SentAt.
	ChangeEdit ChangeKind = "edit"
	// ChangeDelete purges the target's body and the bodies of every edit
	// of it, clears its reactions and sets its DeletedAt (a tombstone
	// stays: seq, sender, time, type; EditedAt is cleared). Deleting a tombstone changes
	// nothing, and a tombstone ignores later edits and reactions.
	ChangeDelete ChangeKind = "delete"
	// ChangeReact adds (target, Emoji, sender); ChangeUnreact removes it.
	// Both are idempotent.
	ChangeReact   ChangeKind = "react"
	ChangeUnreact ChangeKind = "unreact"
)

// Valid reports whether k is one of the kinds above.
func (k ChangeKind) Valid() bool {
	switch k {
	case ChangeEdit, ChangeDelete, ChangeReact, ChangeUnreact:
		return true
	}
	return false
}

// Change is what a change message does. Target is a seq of the same chat,
// lower than the change message's own (any other is not found); Emoji is
// set for reactions only.
type Change struct {
	Kind   ChangeKind
	Target uint64
	Emoji  string
}

// Reaction is one emoji on a message and the users who chose it, sorted.
type Reaction struct {
	Emoji string
	Users []string
}

// ErrInvalidChange is returned (wrapped) for a change that no backend could
// apply: an unknown kind, a reaction without an emoji, a target that is a
// change itself. It is the caller's bug, not a client's.
var ErrInvalidChange = errors.New("store: invalid change")

// CheckChange returns ErrInvalidChange (wrapped) when m carries a change
// that is malformed as such, and ErrNotFound when its target is not below
// m's own seq; nil for an ordinary message.
func CheckChange(m *Message) error {
	c := m.Change
	if c == nil {
		return nil
	}
	switch {
	case !c.Kind.Valid():
		return fmt.Errorf("%w: chat %q seq %d: kind %q", ErrInvalidChange, m.Chat, m.Seq, c.Kind)
	case c.Target == 0 || c.Target >= m.Seq:
		// Not yet written, so not there to change.
		return fmt.Errorf("%w: chat %q seq %d: target %d", ErrNotFound, m.Chat, m.Seq, c.Target)
	case (c.Kind == ChangeReact || c.Kind == ChangeUnreact) != (c.Emoji != ""):
		return fmt.Errorf("%w: chat %q seq %d: %s with emoji %q", ErrInvalidChange, m.Chat, m.Seq, c.Kind, c.Emoji)
	}
	return nil
}

// HasChanges reports whether any message of msgs carries a change, which
// is what sends a batch down a backend's slower path.
func HasChanges(msgs []Message) bool {
	for i := range msgs {
		if msgs[i].Change != nil {
			return true
		}
	}
	return false
}

// MessageRef is what a dedupe record points at.
type MessageRef struct {
	Chat   string
	Seq    uint64
	ID     uint64
	SentAt time.Time
}

// HistoryQuery selects a page of one chat's messages. With After set the page
// holds the oldest messages with seq > After; otherwise it holds the newest
// messages with seq < Before (Before 0 = no upper bound). Results are always
// returned in ascending seq order. Limit must be > 0. Because seqs are
// gap-free from 1, the oldest page of a chat is Before = Limit+1.
type HistoryQuery struct {
	After  uint64
	Before uint64
	Limit  int
}

// Messages is the message log aggregate.
type Messages interface {
	// AppendMessages durably stores msgs together with a dedupe record for
	// each (From, CMID) before it returns: after a nil return the messages
	// survive a crash. The caller is the single writer of every chat in msgs
	// and hands them over in seq order; a batch may span several chats.
	// Each message's Change is applied to its target in the same atomic
	// write; a target that is neither stored nor earlier in the batch fails
	// the whole batch with ErrNotFound, and nothing is stored.
	AppendMessages(ctx context.Context, msgs []Message) error
	// LastSeq is the highest stored seq of chat, 0 when the chat is empty.
	LastSeq(ctx context.Context, chat string) (uint64, error)
	// History returns a page of chat's messages as described by
	// HistoryQuery, change messages included (with their Change), and
	// ordinary ones in their resolved state (EditedAt, DeletedAt with the
	// body purged, Reactions).
	History(ctx context.Context, chat string, q HistoryQuery) ([]Message, error)
	// LastMessages returns the newest message of each of chats, keyed by
	// chat; chats without messages are absent. It serves a chat list in one
	// call however many chats it shows. Edits and deletes are resolved as
	// in History; Reactions are left empty.
	LastMessages(ctx context.Context, chats []string) (map[string]Message, error)
	Purger
}

// Dedupe holds the records that make sends idempotent. They are written by
// Messages.AppendMessages in the same atomic write as their messages (a
// crash must never keep one without the other), so this aggregate only reads.
type Dedupe interface {
	// LookupDedupe returns the message first stored for (sender, cmid), or
	// ErrNotFound when there is none within DedupeWindow of now.
	LookupDedupe(ctx context.Context, sender, cmid string) (MessageRef, error)
}

// Store is everything a backend provides.
type Store interface {
	Users
	Messages
	Dedupe
	Groups
	Cursors
	Devices
	Profiles
	Sessions
	Passwords
	Accounts
	Blocks
	PrivacySettings
	DirectRequests
	GroupInvites
	KeyDirectory
	DeviceMessages
	ChatRetention
	Attachments
	// Ping reports whether the backend can serve requests (readiness).
	Ping(ctx context.Context) error
	Close() error
}

// Role is a group member's role.
type Role string

const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Group is a group chat's identity; its messages live in the chat "g:{ID}".
type Group struct {
	ID        string
	Name      string
	CreatedBy string
	CreatedAt time.Time
}

// Member is one user's membership of one group.
type Member struct {
	GroupID  string
	UserID   string
	Role     Role
	JoinedAt time.Time
}

// Groups is the group and membership aggregate.
type Groups interface {
	// CreateGroup stores g with its first members in one atomic write;
	// ErrConflict when a group with g.ID exists.
	CreateGroup(ctx context.Context, g Group, members []Member) error
	Group(ctx context.Context, id string) (Group, error)
	// GroupsByID returns the groups among ids, keyed by id; unknown ids are
	// absent.
	GroupsByID(ctx context.Context, ids []string) (map[string]Group, error)
	// RenameGroup changes the name; ErrNotFound for an unknown group.
	RenameGroup(ctx context.Context, id, name string) error
	// DeleteGroup removes the group and every membership in one atomic
	// write; the chat's messages stay. ErrNotFound for an unknown group.
	DeleteGroup(ctx context.Context, id string) error
	// PutMembers adds members or replaces their role and join time, in one
	// atomic write; ErrNotFound for an unknown group.
	PutMembers(ctx context.Context, groupID string, members []Member) error
	// RemoveMembers removes memberships in one atomic write; user ids that
	// are not members are ignored.
	RemoveMembers(ctx context.Context, groupID string, userIDs []string) error
	// Member returns one membership, ErrNotFound when uid is not a member.
	Member(ctx context.Context, groupID, uid string) (Member, error)
	// Members lists a group's members ordered by user id (empty for an
	// unknown group).
	Members(ctx context.Context, groupID string) ([]Member, error)
	// MembersOfGroups is Members for several groups in one call, keyed by
	// group id; groups without members are absent.
	MembersOfGroups(ctx context.Context, groupIDs []string) (map[string][]Member, error)
	// GroupsOf lists uid's memberships ordered by group id, starting after
	// the group id `after` ("" = from the start), at most limit (> 0).
	GroupsOf(ctx context.Context, uid, after string, limit int) ([]Member, error)
	MemberUpdater
}

// MemberChange is what one UpdateMembers writes: memberships to add or
// replace, then user ids to remove.
type MemberChange struct {
	Put    []Member
	Remove []string
}

// MemberUpdater changes a group's membership as a function of its current
// members, so that rules over the whole group (a member limit, exactly one
// owner) hold however many requests race, on every node.
type MemberUpdater interface {
	// UpdateMembers reads groupID's members (ordered by user id) and writes
	// the change decide returns, as one isolated atomic step: no other
	// membership write, rename or delete of the group lands between the
	// read and the write. When decide returns an error nothing is written
	// and that error is returned (wrapped). ErrNotFound for an unknown
	// group. decide may run more than once; it must not have side effects.
	UpdateMembers(ctx context.Context, groupID string, decide func(members []Member) (MemberChange, error)) error
}

// ChatState is one user's view of one chat: its place in the user's chat
// list and how far the user has received and read it.
type ChatState struct {
	UserID       string
	Chat         string
	DeliveredSeq uint64
	ReadSeq      uint64
	// Left is set when the user left or was removed from a group chat; the
	// state is kept so a device syncing later learns that it left.
	Left bool
	// UpdatedAt is the last change to this state (join, leave, a cursor
	// moving); chat lists use it to answer "what changed since".
	UpdatedAt time.Time
}

// Cursors is the per-user chat list with delivered and read cursors.
// Backends need not make cursor writes durable on their own (they move
// constantly; the embedded store does not fsync them): a machine crash may
// undo the latest moves, which the next receipt repeats, but a chat joined
// before a message is durable whenever that message is.
type Cursors interface {
	// JoinChat puts chat in uid's list, or takes it back after a leave,
	// keeping existing cursors; it is idempotent.
	JoinChat(ctx context.Context, uid, chat string, at time.Time) error
	// LeaveChat marks chat as left in uid's list; ErrNotFound when it was
	// never in it.
	LeaveChat(ctx context.Context, uid, chat string, at time.Time) error
	// AdvanceCursors raises uid's delivered and read cursors of chat to the
	// given values; a cursor never moves backwards and 0 leaves it as it is.
	// It returns the resulting state and whether anything changed;
	// ErrNotFound when chat is not in uid's list.
	AdvanceCursors(ctx context.Context, uid, chat string, delivered, read uint64, at time.Time) (ChatState, bool, error)
	// ChatState returns one entry, ErrNotFound when absent.
	ChatState(ctx context.Context, uid, chat string) (ChatState, error)
	// ChatStates lists every entry of uid's list (left ones included),
	// ordered by chat id.
	ChatStates(ctx context.Context, uid string) ([]ChatState, error)
}

// Platform is the kind of app a device runs; it picks the push payload shape.
type Platform string

const (
	PlatformAndroid Platform = "android"
	PlatformIOS     Platform = "ios"
	PlatformWeb     Platform = "web"
)

// Device is one of a user's devices with its push token. DeviceID is the one
// in the device's MQTT client id ("{uid}:{device_id}").
type Device struct {
	UserID    string
	DeviceID  string
	Platform  Platform
	PushToken string
	UpdatedAt time.Time
}

// Devices is the per-user device and push-token aggregate.
type Devices interface {
	// PutDevice registers or replaces (d.UserID, d.DeviceID). A push token
	// belongs to one device only: registering it again under another user or
	// device removes it from the previous one in the same atomic write, so a
	// phone that changes account never receives the old account's pushes.
	PutDevice(ctx context.Context, d Device) error
	// DeleteDevice removes one device; ErrNotFound when it is not registered.
	DeleteDevice(ctx context.Context, uid, deviceID string) error
	// Devices lists uid's devices ordered by device id.
	Devices(ctx context.Context, uid string) ([]Device, error)
	// DeletePushToken removes uid's device deviceID only while it still
	// carries token (the push provider reported that token dead; a device
	// that re-registered meanwhile keeps its new token). It reports whether
	// a device was removed.
	DeletePushToken(ctx context.Context, uid, deviceID, token string) (bool, error)
}
