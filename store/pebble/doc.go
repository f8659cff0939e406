// Package pebble is the embedded store.Store backend: a single-node
// CockroachDB Pebble LSM in a local directory, with every write that the
// contract calls durable committed with pebble.Sync.
//
// # Key layout
//
// All keys live in one keyspace, separated by a one-letter prefix:
//
//	u/id/{id}                         -> user (codec.go)
//	u/name/{username}                 -> id
//	m/{chat}\x00{seq, 8-byte BE}      -> message without Chat and Seq
//	d/{sender}\x00{cmid}              -> dedupe ref (chat, seq, id, sentAt)
//	x/{sentAt ms, 8-byte BE}/{sender}\x00{cmid} -> empty; expiry index
//
// Chat ids and sender ids never contain '\x00' (AppendMessages rejects them),
// so "m/{chat}\x00" is a prefix owned by exactly one chat and a bounded
// iterator over it walks that chat in seq order; the big-endian seq makes
// byte order equal numeric order. The same holds for the sender part of the
// dedupe key, which lets the cmid contain any byte.
//
// The x/ index orders dedupe records by SentAt so the sweeper can delete the
// expired ones without scanning d/. It is only an index: LookupDedupe checks
// SentAt itself, so a record that is expired but not yet swept is already
// invisible, as store.DedupeWindow requires.
//
// Times are stored with millisecond precision, like the other backends.
package pebble
