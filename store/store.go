// Package store defines the storage contract every backend implements: one
// small interface per aggregate, context first, sentinel errors. Backends live
// in sub-packages and prove themselves against store/storetest.
package store

import (
	"context"
	"errors"
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
}

// Users is the account aggregate.
type Users interface {
	// CreateUser inserts u; ErrConflict when the id or the username is taken.
	CreateUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id string) (User, error)
	UserByUsername(ctx context.Context, username string) (User, error)
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
	AppendMessages(ctx context.Context, msgs []Message) error
	// LastSeq is the highest stored seq of chat, 0 when the chat is empty.
	LastSeq(ctx context.Context, chat string) (uint64, error)
	// History returns a page of chat's messages as described by HistoryQuery.
	History(ctx context.Context, chat string, q HistoryQuery) ([]Message, error)
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
	// Ping reports whether the backend can serve requests (readiness).
	Ping(ctx context.Context) error
	Close() error
}
