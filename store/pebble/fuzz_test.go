package pebble

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

// The values in a Pebble store are written by this package, but they are
// read back from disk, where a torn write, a bad sector or an older layout
// can leave any bytes. These targets hold every decoder to: never panic,
// refuse with errCorrupt, and agree with its encoder.

// codec is one value layout: decode bytes, re-encode what was decoded.
type codec struct {
	name   string
	decode func(v []byte) (any, error)
	encode func(x any) []byte
	exact  bool // finish() refuses trailing bytes (the message body runs to the end instead)
}

var codecs = []codec{
	{"message", func(v []byte) (any, error) {
		var r fuzzRecord
		var err error
		r.edits, err = decodeRecord(v, &r.m)
		return r, err
	}, func(x any) []byte { r := x.(fuzzRecord); return encodeRecord(nil, &r.m, r.edits) }, false},
	{"user", func(v []byte) (any, error) { return decodeUser(v) },
		func(x any) []byte { u := x.(store.User); return encodeUser(&u) }, true},
	{"ref", func(v []byte) (any, error) { return decodeRef(v) },
		func(x any) []byte { return encodeRef(nil, x.(store.MessageRef)) }, true},
	{"group", func(v []byte) (any, error) { return decodeGroup("g", v) },
		func(x any) []byte { g := x.(store.Group); return encodeGroup(&g) }, true},
	{"member", func(v []byte) (any, error) { return decodeMember("g", "u", v) },
		func(x any) []byte { m := x.(store.Member); return encodeMember(nil, &m) }, true},
	{"chat state", func(v []byte) (any, error) { return decodeChatState("u", "c", v) },
		func(x any) []byte { st := x.(store.ChatState); return encodeChatState(&st) }, true},
	{"device", func(v []byte) (any, error) { return decodeDevice("u", "d", v) },
		func(x any) []byte { d := x.(store.Device); return encodeDevice(&d) }, true},
	{"profile", func(v []byte) (any, error) { return decodeProfile("u", v) },
		func(x any) []byte { p := x.(store.Profile); return encodeProfile(&p) }, true},
	{"device keys", func(v []byte) (any, error) { return decodeDeviceKeys("u", "d", v) },
		func(x any) []byte { k := x.(store.DeviceKeys); return encodeDeviceKeys(&k) }, true},
	{"mailbox", func(v []byte) (any, error) { return decodeMailbox(v) },
		func(x any) []byte { return encodeMailbox(x.(mailboxState)) }, true},
	{"device message", func(v []byte) (any, error) {
		m := store.DeviceMessage{ToUser: "u", ToDevice: "d", Seq: 1}
		err := decodeDeviceMessage(v, &m)
		return m, err
	}, func(x any) []byte { m := x.(store.DeviceMessage); return encodeDeviceMessage(&m) }, false},
	{"device ref", func(v []byte) (any, error) { return decodeDeviceRef(v) },
		func(x any) []byte { m := x.(store.DeviceMessage); return encodeDeviceRef(&m) }, true},
}

// fuzzRecord is a message value with what it holds beyond the message.
type fuzzRecord struct {
	m     store.Message
	edits []uint64
}

// sample values of every layout, for seeds.
func sampleValues() [][]byte {
	at := time.Date(2026, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	return [][]byte{
		encodeMessage(nil, &store.Message{ID: 1 << 40, From: "aaaaaaaaaaaaaaaaaaaa", CMID: "c-1", Type: "text", Body: []byte(`"hi"`), ReplyTo: 3, SentAt: at}),
		encodeRecord(nil, &store.Message{ID: 1 << 40, From: "aaaaaaaaaaaaaaaaaaaa", CMID: "c-2", Type: "edit", Body: []byte(`"hey"`),
			SentAt: at, Change: &store.Change{Kind: store.ChangeEdit, Target: 1}, EditedAt: at, DeletedAt: at}, []uint64{2, 3}),
		encodeUser(&store.User{ID: "aaaaaaaaaaaaaaaaaaaa", Username: "alice", PasswordHash: []byte("$2a$04$hash"), CreatedAt: at}),
		encodeRef(nil, store.MessageRef{Chat: "d:a:b", Seq: 9, ID: 77, SentAt: at}),
		encodeGroup(&store.Group{Name: "trip", CreatedBy: "aaaaaaaaaaaaaaaaaaaa", CreatedAt: at}),
		encodeMember(nil, &store.Member{Role: store.RoleAdmin, JoinedAt: at}),
		encodeChatState(&store.ChatState{DeliveredSeq: 5, ReadSeq: 4, Left: true, UpdatedAt: at}),
		encodeDevice(&store.Device{Platform: store.PlatformIOS, PushToken: "tok", UpdatedAt: at}),
		encodeProfile(&store.Profile{DisplayName: "Ann", About: "hi", Avatar: "https://x/a.png", Discoverable: true, UpdatedAt: at}),
		encodeDeviceKeys(&store.DeviceKeys{IdentityKey: []byte("ik"), SignedPrekeyID: 1 << 31, SignedPrekey: []byte("spk"), SignedPrekeySig: []byte("sig"), UpdatedAt: at}),
		encodeMailbox(mailboxState{lastSeq: 300, pending: 2}),
		encodeDeviceMessage(&store.DeviceMessage{From: "aaaaaaaaaaaaaaaaaaaa", FromDevice: "phone", CMID: "c-1", Body: []byte(`"ct"`), SentAt: at}),
		encodeDeviceRef(&store.DeviceMessage{ToUser: "bbbbbbbbbbbbbbbbbbbb", ToDevice: "laptop", Seq: 7, FromDevice: "phone", SentAt: at}),
	}
}

func FuzzDecodeValue(f *testing.F) {
	for i, v := range sampleValues() {
		i = max(i-1, 0) // the first two are both messages
		f.Add(uint8(i), v)
		f.Add(uint8(i), v[:len(v)-1])
		f.Add(uint8(i), append(v, 0))
	}
	f.Add(uint8(0), []byte{messageV1})
	tombstone := encodeUser(&store.User{ID: "aaaaaaaaaaaaaaaaaaaa", Username: "alice", CreatedAt: time.UnixMilli(1), Disabled: true, DeletedAt: time.UnixMilli(2)})
	f.Add(uint8(1), tombstone)
	f.Add(uint8(1), tombstone[:len(tombstone)-1])
	f.Add(uint8(1), []byte{userV1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add(uint8(5), []byte{chatStateV1, 0, 0, 2, 0})
	f.Add(uint8(2), []byte{})
	f.Fuzz(func(t *testing.T, kind uint8, v []byte) {
		c := codecs[int(kind)%len(codecs)]
		x, err := c.decode(v)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("%s %q: error %v, want errCorrupt", c.name, v, err)
			}
			return
		}
		// What decodes re-encodes canonically (never longer: varints come
		// back minimal) and decodes to the same value.
		enc := c.encode(x)
		if len(enc) > len(v) {
			t.Fatalf("%s %q decoded to %+v, which encodes longer: %q", c.name, v, x, enc)
		}
		y, err := c.decode(enc)
		if err != nil || !reflect.DeepEqual(normalize(x), normalize(y)) {
			t.Fatalf("%s %q: decoded %+v, re-encoded %q, decoded again %+v, %v", c.name, v, x, enc, y, err)
		}
	})
}

// normalize makes decoded values comparable: an empty byte slice and nil
// mean the same.
func normalize(x any) any {
	switch v := x.(type) {
	case store.User:
		if len(v.PasswordHash) == 0 {
			v.PasswordHash = nil
		}
		return v
	case store.Message:
		if len(v.Body) == 0 {
			v.Body = nil
		}
		return v
	case fuzzRecord:
		v.m = normalize(v.m).(store.Message)
		return v
	case store.DeviceMessage:
		if len(v.Body) == 0 {
			v.Body = nil
		}
		return v
	case store.DeviceKeys:
		for _, p := range []*[]byte{&v.IdentityKey, &v.SignedPrekey, &v.SignedPrekeySig} {
			if len(*p) == 0 {
				*p = nil
			}
		}
		return v
	}
	return x
}

func FuzzEncodeRoundTrip(f *testing.F) {
	f.Add("aaaaaaaaaaaaaaaaaaaa", "c-1", "text", []byte(`"hi"`), uint64(7), uint64(1<<63), int64(1_778_000_000_123), true)
	f.Add("", "", "", []byte{}, uint64(0), uint64(0), int64(-1), false)
	f.Add("a\x00b", "\xff", strings.Repeat("t", 300), []byte{0, 1, 2}, uint64(1<<64-1), uint64(1), int64(-1<<63), true)
	f.Add("x", "y", "z", []byte(nil), uint64(1), uint64(2), int64(1<<63-1), false)
	f.Fuzz(func(t *testing.T, s1, s2, s3 string, b []byte, n1, n2 uint64, ms int64, flag bool) {
		at := time.UnixMilli(ms)
		values := []any{
			fuzzRecord{m: store.Message{ID: n1, From: s1, CMID: s2, Type: s3, Body: b, ReplyTo: n2, SentAt: at,
				Change: fuzzChange(flag, s3, n2, s1), EditedAt: deletedAt(n2, at), DeletedAt: deletedAt(n1, at)},
				edits: fuzzEdits(n1, n2)},
			store.User{ID: s1, Username: s2, PasswordHash: b, CreatedAt: at, Disabled: flag, DeletedAt: deletedAt(n1, at)},
			store.MessageRef{Chat: s1, Seq: n1, ID: n2, SentAt: at},
			store.Group{ID: "g", Name: s1, CreatedBy: s2, CreatedAt: at},
			store.Member{GroupID: "g", UserID: "u", Role: store.Role(s1), JoinedAt: at},
			store.ChatState{UserID: "u", Chat: "c", DeliveredSeq: n1, ReadSeq: n2, Left: flag, UpdatedAt: at},
			store.Device{UserID: "u", DeviceID: "d", Platform: store.Platform(s1), PushToken: s2, UpdatedAt: at},
			store.Profile{UserID: "u", DisplayName: s1, About: s2, Avatar: s3, Discoverable: flag, UpdatedAt: at},
			store.DeviceKeys{UserID: "u", DeviceID: "d", IdentityKey: b, SignedPrekeyID: uint32(n1),
				SignedPrekey: []byte(s1), SignedPrekeySig: []byte(s2), UpdatedAt: at},
			mailboxState{lastSeq: n1, pending: n2},
			store.DeviceMessage{ToUser: "u", ToDevice: "d", Seq: 1, From: s1, FromDevice: s2, CMID: s3, Body: b, SentAt: at},
			store.DeviceMessage{ToUser: s1, ToDevice: s2, Seq: n1, FromDevice: s3, SentAt: at},
		}
		for i, c := range codecs {
			enc := c.encode(values[i])
			got, err := c.decode(enc)
			if err != nil {
				t.Fatalf("%s %+v: decode of its encoding: %v", c.name, values[i], err)
			}
			if want := utcValue(values[i]); !reflect.DeepEqual(normalize(got), normalize(want)) {
				t.Fatalf("%s: encoded %+v, decoded %+v", c.name, want, got)
			}
			if !c.exact {
				continue
			}
			// A torn write (any prefix) or a stray byte is corrupt.
			for n := range len(enc) {
				if _, err := c.decode(enc[:n]); !errors.Is(err, errCorrupt) {
					t.Fatalf("%s: %d of %d bytes decoded (%v)", c.name, n, len(enc), err)
				}
			}
			if _, err := c.decode(append(bytes.Clone(enc), 0)); !errors.Is(err, errCorrupt) {
				t.Fatalf("%s: a trailing byte decoded (%v)", c.name, err)
			}
		}
	})
}

// fuzzChange makes every other fuzzed message a change.
func fuzzChange(flag bool, kind string, target uint64, emoji string) *store.Change {
	if !flag {
		return nil
	}
	return &store.Change{Kind: store.ChangeKind(kind), Target: target, Emoji: emoji}
}

// fuzzEdits gives some fuzzed messages a list of edits.
func fuzzEdits(n1, n2 uint64) []uint64 {
	if n1%3 != 0 {
		return nil
	}
	return []uint64{n1, n2}
}

// deletedAt makes every other fuzzed user a deleted account's tombstone.
func deletedAt(n uint64, at time.Time) time.Time {
	if n%2 == 1 {
		return at
	}
	return time.Time{}
}

// utcValue is v with its time as decoders return it: milliseconds, UTC.
func utcValue(v any) any {
	ms := func(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }
	switch x := v.(type) {
	case fuzzRecord:
		x.m.SentAt = ms(x.m.SentAt)
		for _, p := range []*time.Time{&x.m.EditedAt, &x.m.DeletedAt} {
			if !p.IsZero() {
				*p = ms(*p)
			}
		}
		return x
	case store.User:
		x.CreatedAt = ms(x.CreatedAt)
		if !x.DeletedAt.IsZero() {
			x.DeletedAt = ms(x.DeletedAt)
		}
		return x
	case store.MessageRef:
		x.SentAt = ms(x.SentAt)
		return x
	case store.Group:
		x.CreatedAt = ms(x.CreatedAt)
		return x
	case store.Member:
		x.JoinedAt = ms(x.JoinedAt)
		return x
	case store.ChatState:
		x.UpdatedAt = ms(x.UpdatedAt)
		return x
	case store.Device:
		x.UpdatedAt = ms(x.UpdatedAt)
		return x
	case store.Profile:
		x.UpdatedAt = ms(x.UpdatedAt)
		return x
	case store.DeviceKeys:
		x.UpdatedAt = ms(x.UpdatedAt)
		return x
	case store.DeviceMessage:
		x.SentAt = ms(x.SentAt)
		return x
	}
	return v
}

// FuzzKeys covers the key layouts, whose variable parts (chat ids, user
// ids, cmids, device ids) come from clients: each key reads back what made
// it, and one chat's or one user's range never holds another's keys.
func FuzzKeys(f *testing.F) {
	f.Add("d:a:b", "d:a:bc", "aaaaaaaaaaaaaaaaaaaa", "c-1", uint64(1), int64(1_778_000_000_000))
	f.Add("g:x", "g:x\x00", "u", "", uint64(1<<64-1), int64(-5))
	f.Add("", "\x00", "a\x00b", "\xff", uint64(0), int64(1<<63-1))
	f.Add("a", "a\x01", "b", "c\x00d", uint64(256), int64(0))
	f.Fuzz(func(t *testing.T, chat, other, sender string, cmid string, seq uint64, ms int64) {
		clean := checkKeyPart(chat) == nil && checkKeyPart(other) == nil
		if (checkKeyPart(chat) == nil) != !strings.Contains(chat, "\x00") {
			t.Fatalf("checkKeyPart(%q) = %v", chat, checkKeyPart(chat))
		}
		k := messageKey(nil, chat, seq)
		if got, ok := seqFromKey(k); !ok || got != seq {
			t.Fatalf("seqFromKey(messageKey(%q, %d)) = %d, %v", chat, seq, got, ok)
		}
		lower, upper := chatBounds(chat)
		if !bytes.Equal(seqKey(lower, seq), k) {
			t.Fatalf("seqKey and messageKey differ for %q %d", chat, seq)
		}
		if checkKeyPart(chat) == nil && (bytes.Compare(k, lower) < 0 || bytes.Compare(k, upper) >= 0) {
			t.Fatalf("messageKey(%q, %d) outside its chat's bounds", chat, seq)
		}
		if ko := messageKey(nil, other, seq); clean && other != chat && bytes.Compare(ko, lower) >= 0 && bytes.Compare(ko, upper) < 0 {
			t.Fatalf("a message of %q lies in the range of %q", other, chat)
		}

		// Pair keys: memberships and cursors.
		pk := pairKey(prefixCursor, sender, chat)
		if b, ok := pairSecond(pk, prefixCursor, sender); !ok || b != chat {
			t.Fatalf("pairSecond(pairKey(%q, %q)) = %q, %v", sender, chat, b, ok)
		}
		plo, pup := pairBounds(prefixCursor, sender)
		if checkKeyPart(sender) == nil && (bytes.Compare(pk, plo) < 0 || bytes.Compare(pk, pup) >= 0) {
			t.Fatalf("pairKey(%q, %q) outside its bounds", sender, chat)
		}
		if checkKeyPart(sender) == nil && checkKeyPart(other) == nil && other != sender {
			if ko := pairKey(prefixCursor, other, chat); bytes.Compare(ko, plo) >= 0 && bytes.Compare(ko, pup) < 0 {
				t.Fatalf("a cursor of %q lies in the range of %q", other, sender)
			}
		}

		// The expiry index leads back to its dedupe record.
		at := time.UnixMilli(ms)
		ek := expiryKey(at, sender, cmid)
		if dk, ok := dedupeKeyFromExpiry(ek); !ok || !bytes.Equal(dk, dedupeKey(sender, cmid)) {
			t.Fatalf("dedupeKeyFromExpiry(expiryKey(%q, %q)) = %q, %v", sender, cmid, dk, ok)
		}
		if bytes.Compare(ek, expiryUpper(at.Add(time.Millisecond))) >= 0 && ms >= 0 && ms < 1<<63-1 {
			t.Fatalf("expiryKey at %d ms is not below the bound of the next ms", ms)
		}
		xk := deviceDedupe.expiryKey(at, sender, cmid)
		if dk, ok := deviceDedupe.recordFromExpiry(xk); !ok || !bytes.Equal(dk, deviceDedupe.key(sender, cmid)) {
			t.Fatalf("device recordFromExpiry(expiryKey(%q, %q)) = %q, %v", sender, cmid, dk, ok)
		}
		if bytes.HasPrefix(dedupeKey(sender, cmid), []byte(prefixDeviceDedupe)) ||
			bytes.HasPrefix(deviceDedupe.key(sender, cmid), []byte(prefixDedupe)) {
			t.Fatal("chat and device dedupe records share a key space")
		}

		// Device items (prekeys, device messages) of user sender, device
		// chat: inside that device's bounds, outside every other device's
		// and inside the user's, which an account deletion drops.
		if checkKeyPart(sender) != nil || !clean {
			return
		}
		dlo, dup := deviceItemBounds(prefixDeviceMsg, sender, chat)
		ulo, uup := pairBounds(prefixDeviceMsg, sender)
		dm := deviceMsgKey(sender, chat, seq)
		pk4 := prekeyKey(sender, chat, uint32(seq))
		plo4, pup4 := deviceItemBounds(prefixPrekey, sender, chat)
		inside := func(k, lo, up []byte) bool { return bytes.Compare(k, lo) >= 0 && bytes.Compare(k, up) < 0 }
		if !inside(dm, dlo, dup) || !inside(dm, ulo, uup) || !inside(pk4, plo4, pup4) {
			t.Fatalf("device item of %q/%q outside its bounds", sender, chat)
		}
		if other != chat && (inside(deviceMsgKey(sender, other, seq), dlo, dup) ||
			inside(prekeyKey(sender, other, uint32(seq)), plo4, pup4)) {
			t.Fatalf("an item of device %q lies in the range of device %q", other, chat)
		}
		if other != sender && inside(deviceMsgKey(other, chat, seq), ulo, uup) {
			t.Fatalf("a device message of user %q lies in the range of user %q", other, sender)
		}
	})
}
