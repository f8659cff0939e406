// Package compose joins two backends into one store.Store: a relational
// one for users, sessions, groups and devices, and a message one for the message
// log, dedupe records and chat lists with cursors (Cassandra's share in
// DESIGN.md §8).
//
// No store operation spans the two halves: every Store method belongs to
// one aggregate, and aggregates never share a write. The group service
// writes a membership (relational) and then the members' chat-list entries
// (messages side) in separate calls, exactly as it does on a single
// embedded store, so composing backends weakens nothing it relies on.
package compose

import (
	"context"
	"errors"

	"github.com/mqchat/mqchat/store"
)

// Relational is the half that holds accounts (with their profiles and
// sessions), groups, devices, consent (block lists, privacy settings,
// message requests, group invitations) and end-to-end encryption (device
// keys, device mailboxes) and attachment metadata.
type Relational interface {
	store.Users
	store.Groups
	store.Devices
	store.Profiles
	store.Sessions
	store.Passwords
	store.Accounts
	store.Blocks
	store.PrivacySettings
	store.DirectRequests
	store.GroupInvites
	store.KeyDirectory
	store.DeviceMessages
	store.ChatRetention
	store.Attachments
	Ping(ctx context.Context) error
	Close() error
}

// MessageLog is the half that holds messages, dedupe records and cursors.
type MessageLog interface {
	store.Messages
	store.Dedupe
	store.Cursors
	Ping(ctx context.Context) error
	Close() error
}

// Store routes each aggregate to its half.
type Store struct {
	Relational
	MessageLog
}

var _ store.Store = (*Store)(nil)

// New composes rel and msgs; when both are the same backend, use it
// directly instead.
func New(rel Relational, msgs MessageLog) *Store {
	return &Store{Relational: rel, MessageLog: msgs}
}

// Ping fails when either half fails.
func (s *Store) Ping(ctx context.Context) error {
	return errors.Join(s.Relational.Ping(ctx), s.MessageLog.Ping(ctx))
}

// Close closes both halves, messages first: it is the half a draining
// node writes to last.
func (s *Store) Close() error {
	return errors.Join(s.MessageLog.Close(), s.Relational.Close())
}
