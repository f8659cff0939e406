// Package pebble is the embedded store.Store backend: a single-node
// CockroachDB Pebble LSM in a local directory, with every write that the
// contract calls durable committed with pebble.Sync.
//
// # Key layout
//
// All keys live in one keyspace, separated by a short prefix ending in
// '/', none of which is a prefix of another:
//
//	u/id/{id}                         -> user (codec.go)
//	u/name/{username}                 -> id
//	m/{chat}\x00{seq, 8-byte BE}      -> message without Chat and Seq
//	mr/{chat}\x00{seq, 8-byte BE}{emoji}\x00{user} -> empty; one reaction
//	d/{sender}\x00{cmid}              -> dedupe ref (chat, seq, id, sentAt)
//	x/{sentAt ms, 8-byte BE}/{sender}\x00{cmid} -> empty; expiry index
//	g/{groupID}                       -> group without ID (name, createdBy, createdAt)
//	gm/{groupID}\x00{uid}             -> membership (role, joinedAt)
//	ug/{uid}\x00{groupID}             -> the same membership, indexed by user
//	c/{uid}\x00{chat}                 -> chat state (delivered, read, left, updatedAt)
//	ek/{uid}\x00{device}              -> device keys (identity, signed prekey, signature, updatedAt)
//	eo/{uid}\x00{device}\x00{id, 4-byte BE}  -> one-time prekey
//	es/{uid}\x00{device}              -> device mailbox (last seq, pending count)
//	em/{uid}\x00{device}\x00{seq, 8-byte BE} -> device message without its addressing
//	ed/{sender}\x00{cmid}             -> device-message dedupe record
//	ex/{sentAt ms, 8-byte BE}/{sender}\x00{cmid} -> empty; its expiry index
//
// Chat ids and sender ids never contain '\x00' (AppendMessages rejects them),
// so "m/{chat}\x00" is a prefix owned by exactly one chat and a bounded
// iterator over it walks that chat in seq order; the big-endian seq makes
// byte order equal numeric order. The same holds for the sender part of the
// dedupe key, which lets the cmid contain any byte.
//
// A change message (an edit, a delete, a reaction) is stored under m/ like
// any message, and in the same batch its target's value is rewritten with
// the change applied (codec.go, messageV2: the new body, EditedAt,
// DeletedAt and the seqs of the target's edits, so a delete can purge their
// bodies too) or a reaction key is set or deleted; a delete drops the
// target's mr/ range. These read-modify-writes hold the chat's change lock
// from the read to the commit.
//
// The x/ index orders dedupe records by SentAt so the sweeper can delete the
// expired ones without scanning d/. It is only an index: LookupDedupe checks
// SentAt itself, so a record that is expired but not yet swept is already
// invisible, as store.DedupeWindow requires.
//
// Group, user and chat ids never contain '\x00' either (every write rejects
// them), so the same argument makes "gm/{groupID}\x00" a group's members in
// user id order, "ug/{uid}\x00" a user's groups in group id order (GroupsOf
// pages by starting just past "ug/{uid}\x00{after}") and "c/{uid}\x00" a
// user's chat list in chat id order. The two membership indexes are only
// ever written together, in one batch, under the group's lock; DeleteGroup
// removes g/, the group's gm/ range and the matching ug/ keys in one batch.
// A chat state is read, merged and written back under the user's lock, so
// concurrent cursor moves never lose one another.
//
// The e2e keys (e2e.go) follow the same pattern one level deeper: user and
// device ids never contain '\x00', so "eo/{uid}\x00{device}\x00" is one
// device's prekeys in id order (a claim takes the first) and
// "em/{uid}\x00{device}\x00" its mailbox in seq order, while
// "eo/{uid}\x00" covers every device of a user (an account deletion drops
// it whole). The mailbox record es/ keeps the last seq after every message
// is acknowledged, so seqs never repeat.
//
// Times are stored with millisecond precision, like the other backends.
package pebble
