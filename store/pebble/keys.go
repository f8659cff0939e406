package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"time"
)

const (
	prefixUserID   = "u/id/"
	prefixUserName = "u/name/"
	prefixMessage  = "m/"
	prefixReaction = "mr/"
	prefixDedupe   = "d/"
	prefixExpiry   = "x/"

	prefixGroup       = "g/"
	prefixGroupMember = "gm/"
	prefixUserGroup   = "ug/"
	prefixCursor      = "c/"
	prefixDevice      = "dv/"
	prefixDeviceToken = "dt/"

	// End-to-end encryption (e2e.go).
	prefixDeviceKeys   = "ek/"
	prefixPrekey       = "eo/"
	prefixMailbox      = "es/"
	prefixDeviceMsg    = "em/"
	prefixDeviceDedupe = "ed/"
	prefixDeviceExpiry = "ex/"

	// sep ends the variable-length part of a key; it sorts before every other
	// byte, so a shorter chat id never interleaves with a longer one.
	sep = '\x00'
)

var errBadID = errors.New("id contains NUL byte")

func checkKeyPart(s string) error {
	if strings.IndexByte(s, sep) >= 0 {
		return errBadID
	}
	return nil
}

func userIDKey(id string) []byte {
	return append([]byte(prefixUserID), id...)
}

func userNameKey(username string) []byte {
	return append([]byte(prefixUserName), username...)
}

// chatBounds returns [lower, upper) covering every message of chat.
func chatBounds(chat string) (lower, upper []byte) {
	lower = make([]byte, 0, len(prefixMessage)+len(chat)+1)
	lower = append(lower, prefixMessage...)
	lower = append(lower, chat...)
	upper = append(append([]byte(nil), lower...), sep+1)
	lower = append(lower, sep)
	return lower, upper
}

// messageKey is appended to buf so AppendMessages can reuse one buffer per
// chat; pebble copies keys into the batch.
func messageKey(buf []byte, chat string, seq uint64) []byte {
	buf = append(buf, prefixMessage...)
	buf = append(buf, chat...)
	buf = append(buf, sep)
	return binary.BigEndian.AppendUint64(buf, seq)
}

// seqKey is a message key given its chat prefix (from chatBounds).
func seqKey(chatPrefix []byte, seq uint64) []byte {
	k := make([]byte, 0, len(chatPrefix)+8)
	k = append(k, chatPrefix...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// seqFromKey extracts the seq of a message key; the last 8 bytes are always
// the seq whatever the chat id.
func seqFromKey(k []byte) (uint64, bool) {
	if len(k) < len(prefixMessage)+1+8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// reactionKey is "mr/{chat}\x00{seq, 8-byte BE}{emoji}\x00{user}": one chat's
// reactions in seq order, then by emoji and user, so one bounded iterator
// serves a history page and one range a deleted message's reactions.
func reactionKey(chat string, seq uint64, emoji, user string) []byte {
	k := reactionSeqKey(chat, seq)
	k = append(k, emoji...)
	k = append(k, sep)
	return append(k, user...)
}

// reactionSeqKey is the prefix of every reaction to (chat, seq); the one
// of seq+1 bounds them.
func reactionSeqKey(chat string, seq uint64) []byte {
	k := make([]byte, 0, len(prefixReaction)+len(chat)+1+8+16)
	k = append(k, prefixReaction...)
	k = append(k, chat...)
	k = append(k, sep)
	return binary.BigEndian.AppendUint64(k, seq)
}

// parseReactionKey splits a key inside chat's reaction range.
func parseReactionKey(k []byte, chat string) (seq uint64, emoji, user string, ok bool) {
	head := len(prefixReaction) + len(chat) + 1
	if len(k) < head+8 {
		return 0, "", "", false
	}
	seq = binary.BigEndian.Uint64(k[head : head+8])
	rest := k[head+8:]
	i := bytes.IndexByte(rest, sep)
	if i < 0 {
		return 0, "", "", false
	}
	return seq, string(rest[:i]), string(rest[i+1:]), true
}

// dedupeSpace is one family of dedupe records with its expiry index: chat
// messages' ("d/", "x/") and device messages' ("ed/", "ex/"). The two never
// share a key, so a cmid reused across them names two messages.
type dedupeSpace struct{ record, expiry string }

var (
	chatDedupe   = dedupeSpace{record: prefixDedupe, expiry: prefixExpiry}
	deviceDedupe = dedupeSpace{record: prefixDeviceDedupe, expiry: prefixDeviceExpiry}
)

func (sp dedupeSpace) key(sender, cmid string) []byte {
	k := make([]byte, 0, len(sp.record)+len(sender)+1+len(cmid))
	k = append(k, sp.record...)
	k = append(k, sender...)
	k = append(k, sep)
	return append(k, cmid...)
}

// expiryKey is "{expiry}{ms}/{sender}\x00{cmid}"; the tail is the record
// key without its prefix, so the sweeper recovers the record key from the
// index key alone.
func (sp dedupeSpace) expiryKey(sentAt time.Time, sender, cmid string) []byte {
	k := make([]byte, 0, len(sp.expiry)+9+len(sender)+1+len(cmid))
	k = append(k, sp.expiry...)
	k = binary.BigEndian.AppendUint64(k, expiryMillis(sentAt))
	k = append(k, '/')
	k = append(k, sender...)
	k = append(k, sep)
	return append(k, cmid...)
}

// expiryUpper bounds the index entries with SentAt strictly before t (in ms).
func (sp dedupeSpace) expiryUpper(t time.Time) []byte {
	k := make([]byte, 0, len(sp.expiry)+8)
	k = append(k, sp.expiry...)
	return binary.BigEndian.AppendUint64(k, expiryMillis(t))
}

// recordFromExpiry maps an index key back to the record key it indexes.
func (sp dedupeSpace) recordFromExpiry(k []byte) ([]byte, bool) {
	head := len(sp.expiry) + 9
	if len(k) < head+1 {
		return nil, false
	}
	out := make([]byte, 0, len(sp.record)+len(k)-head)
	out = append(out, sp.record...)
	return append(out, k[head:]...), true
}

func dedupeKey(sender, cmid string) []byte { return chatDedupe.key(sender, cmid) }

func expiryKey(sentAt time.Time, sender, cmid string) []byte {
	return chatDedupe.expiryKey(sentAt, sender, cmid)
}

func expiryUpper(t time.Time) []byte { return chatDedupe.expiryUpper(t) }

func dedupeKeyFromExpiry(k []byte) ([]byte, bool) { return chatDedupe.recordFromExpiry(k) }

// expiryMillis clamps pre-1970 times to 0: they are long expired and a
// negative value would otherwise wrap to the far end of the index.
func expiryMillis(t time.Time) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms)
}

func groupKey(id string) []byte {
	return append([]byte(prefixGroup), id...)
}

// pairKey is "{prefix}{a}\x00{b}": the layout of the membership indexes and
// the cursor entries. a never contains sep, so every key of one a sorts
// together, ordered by b.
func pairKey(prefix, a, b string) []byte {
	k := make([]byte, 0, len(prefix)+len(a)+1+len(b))
	k = append(k, prefix...)
	k = append(k, a...)
	k = append(k, sep)
	return append(k, b...)
}

// pairBounds returns [lower, upper) covering every pairKey(prefix, a, _).
func pairBounds(prefix, a string) (lower, upper []byte) {
	lower = pairKey(prefix, a, "")
	upper = append(lower[:len(lower)-1:len(lower)-1], sep+1)
	return lower, upper
}

// pairSecond returns the b of a key inside pairBounds(prefix, a).
func pairSecond(k []byte, prefix, a string) (string, bool) {
	head := len(prefix) + len(a) + 1
	if len(k) < head {
		return "", false
	}
	return string(k[head:]), true
}
