package pebble

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/mqchat/mqchat/store"
)

// Values are a version byte followed by varints and uvarint-length-prefixed
// strings: no reflection, no field names, and a message costs a few bytes
// over its body. Bumping a version lets a later release read both layouts.
const (
	userV1    = 1
	userV2    = 2 // userV1 followed by the account state (disabled, deleted)
	messageV1 = 1
	messageV2 = 2 // messageV1 with a change or a resolved state (encodeRecord)
	refV1     = 1
)

var errCorrupt = errors.New("corrupt value")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// appendTime stores milliseconds: every backend keeps ms precision, so
// pebble must not hand out finer times than Cassandra would.
func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendVarint(b, t.UnixMilli())
}

// encodeMessage leaves out Chat and Seq: they are in the key. A message as
// a sender wrote it, neither a change nor ever changed, is messageV1, the
// layout every message had before changes existed; anything else is
// messageV2 (see encodeRecord).
// The state History resolves (EditedAt, DeletedAt) is not the sender's to
// write and is left out.
func encodeMessage(buf []byte, m *store.Message) []byte {
	if m.Change == nil {
		return encodeV1(buf, m)
	}
	fresh := *m
	fresh.EditedAt, fresh.DeletedAt = time.Time{}, time.Time{}
	return encodeRecord(buf, &fresh, nil)
}

// encodeV1 is the layout of a message neither a change nor changed.
func encodeV1(buf []byte, m *store.Message) []byte {
	buf = append(buf, messageV1)
	buf = binary.AppendUvarint(buf, m.ID)
	buf = appendTime(buf, m.SentAt)
	buf = binary.AppendUvarint(buf, m.ReplyTo)
	buf = appendString(buf, m.From)
	buf = appendString(buf, m.CMID)
	buf = appendString(buf, m.Type)
	// The body runs to the end of the value, saving its length prefix.
	return append(buf, m.Body...)
}

// Flags of a messageV2 value: which optional parts follow it. A value with
// none is written as messageV1, so a messageV2 with none is corrupt.
const (
	msgHasChange  = 1 << 0 // kind, target, emoji
	msgHasEdited  = 1 << 1 // EditedAt
	msgHasDeleted = 1 << 2 // DeletedAt
	msgHasEdits   = 1 << 3 // the seqs of the edits of this message, for a delete to purge
	msgFlagsKnown = msgHasChange | msgHasEdited | msgHasDeleted | msgHasEdits
)

// encodeRecord is encodeMessage with the resolved state AppendMessages
// keeps on a changed message: m.EditedAt, m.DeletedAt and the seqs of the
// edit messages that targeted it.
func encodeRecord(buf []byte, m *store.Message, edits []uint64) []byte {
	var flags byte
	if m.Change != nil {
		flags |= msgHasChange
	}
	if !m.EditedAt.IsZero() {
		flags |= msgHasEdited
	}
	if !m.DeletedAt.IsZero() {
		flags |= msgHasDeleted
	}
	if len(edits) > 0 {
		flags |= msgHasEdits
	}
	if flags == 0 {
		return encodeV1(buf, m)
	}
	buf = append(buf, messageV2)
	buf = binary.AppendUvarint(buf, m.ID)
	buf = appendTime(buf, m.SentAt)
	buf = binary.AppendUvarint(buf, m.ReplyTo)
	buf = appendString(buf, m.From)
	buf = appendString(buf, m.CMID)
	buf = appendString(buf, m.Type)
	buf = append(buf, flags)
	if c := m.Change; c != nil {
		buf = appendString(buf, string(c.Kind))
		buf = binary.AppendUvarint(buf, c.Target)
		buf = appendString(buf, c.Emoji)
	}
	if flags&msgHasEdited != 0 {
		buf = appendTime(buf, m.EditedAt)
	}
	if flags&msgHasDeleted != 0 {
		buf = appendTime(buf, m.DeletedAt)
	}
	if len(edits) > 0 {
		buf = binary.AppendUvarint(buf, uint64(len(edits)))
		for _, seq := range edits {
			buf = binary.AppendUvarint(buf, seq)
		}
	}
	return append(buf, m.Body...)
}

func decodeMessage(v []byte, m *store.Message) error {
	_, err := decodeRecord(v, m)
	return err
}

// decodeRecord is decodeMessage that also returns the seqs of the edits of
// m (see encodeRecord).
func decodeRecord(v []byte, m *store.Message) (edits []uint64, err error) {
	d := decoder{b: v}
	version := d.byte()
	if version != messageV1 && version != messageV2 {
		return nil, errCorrupt
	}
	m.ID = d.uvarint()
	m.SentAt = d.time()
	m.ReplyTo = d.uvarint()
	m.From = d.string()
	m.CMID = d.string()
	m.Type = d.string()
	m.Change, m.EditedAt, m.DeletedAt = nil, time.Time{}, time.Time{}
	if version == messageV2 {
		flags := d.byte()
		if d.err == nil && (flags == 0 || flags&^msgFlagsKnown != 0) {
			d.fail()
		}
		if flags&msgHasChange != 0 {
			c := &store.Change{Kind: store.ChangeKind(d.string()), Target: d.uvarint(), Emoji: d.string()}
			m.Change = c
		}
		if flags&msgHasEdited != 0 {
			m.EditedAt = d.time()
		}
		if flags&msgHasDeleted != 0 {
			m.DeletedAt = d.time()
		}
		if flags&msgHasEdits != 0 {
			n := d.uvarint()
			// Each seq takes at least a byte: a count beyond the rest of
			// the value is corrupt, and must not size an allocation.
			if n == 0 || n > uint64(len(d.b)) {
				d.fail()
			} else {
				edits = make([]uint64, n)
				for i := range edits {
					edits[i] = d.uvarint()
				}
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	// v belongs to the iterator; the caller keeps the message.
	m.Body = append([]byte(nil), d.b...)
	return edits, nil
}

// A user whose account is active is written as userV1, the layout every
// record had before accounts could be disabled or deleted; one with state
// as userV2, the same fields followed by a non-zero flags byte and, for a
// deleted account, DeletedAt. The state is never optional within a layout,
// so a torn or padded record stays detectably corrupt.
func encodeUser(u *store.User) []byte {
	flags := userFlags(u)
	b := make([]byte, 0, 1+len(u.ID)+len(u.Username)+len(u.PasswordHash)+26)
	if flags == 0 {
		b = append(b, userV1)
	} else {
		b = append(b, userV2)
	}
	b = appendString(b, u.ID)
	b = appendString(b, u.Username)
	b = appendBytes(b, u.PasswordHash)
	b = appendTime(b, u.CreatedAt)
	if flags == 0 {
		return b
	}
	b = append(b, flags)
	if flags&userDeleted != 0 {
		b = appendTime(b, u.DeletedAt)
	}
	return b
}

func decodeUser(v []byte) (store.User, error) {
	d := decoder{b: v}
	version := d.byte()
	if version != userV1 && version != userV2 {
		return store.User{}, errCorrupt
	}
	u := store.User{
		ID:           d.string(),
		Username:     d.string(),
		PasswordHash: d.bytes(),
		CreatedAt:    d.time(),
	}
	if version == userV2 {
		flags := d.byte()
		if flags == 0 || flags&^(userDisabled|userDeleted) != 0 {
			d.fail()
		}
		u.Disabled = flags&userDisabled != 0
		if flags&userDeleted != 0 {
			u.DeletedAt = d.time()
		}
	}
	return u, d.finish()
}

const (
	userDisabled = 1 << 0
	userDeleted  = 1 << 1
)

func userFlags(u *store.User) byte {
	var flags byte
	if u.Disabled {
		flags |= userDisabled
	}
	if !u.DeletedAt.IsZero() {
		flags |= userDeleted
	}
	return flags
}

func encodeRef(buf []byte, r store.MessageRef) []byte {
	buf = append(buf, refV1)
	buf = appendString(buf, r.Chat)
	buf = binary.AppendUvarint(buf, r.Seq)
	buf = binary.AppendUvarint(buf, r.ID)
	return appendTime(buf, r.SentAt)
}

func decodeRef(v []byte) (store.MessageRef, error) {
	d := decoder{b: v}
	if d.byte() != refV1 {
		return store.MessageRef{}, errCorrupt
	}
	r := store.MessageRef{
		Chat:   d.string(),
		Seq:    d.uvarint(),
		ID:     d.uvarint(),
		SentAt: d.time(),
	}
	return r, d.finish()
}

// decoder reads sequentially and remembers the first error, so decode
// functions read like the encoders and check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) time() time.Time {
	ms := d.varint()
	if d.err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (d *decoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) string() string { return string(d.raw()) }

func (d *decoder) bytes() []byte {
	p := d.raw()
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

// finish rejects trailing bytes, which would mean a layout mismatch.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return d.err
}

const (
	groupV1     = 1
	memberV1    = 1
	chatStateV1 = 1
	deviceV1    = 1

	// chatStateLeft is the flags bit of ChatState.Left.
	chatStateLeft = 1 << 0
)

// encodeGroup leaves out ID: it is in the key.
func encodeGroup(g *store.Group) []byte {
	b := make([]byte, 0, 1+len(g.Name)+len(g.CreatedBy)+16)
	b = append(b, groupV1)
	b = appendString(b, g.Name)
	b = appendString(b, g.CreatedBy)
	return appendTime(b, g.CreatedAt)
}

func decodeGroup(id string, v []byte) (store.Group, error) {
	d := decoder{b: v}
	if d.byte() != groupV1 {
		return store.Group{}, errCorrupt
	}
	g := store.Group{
		ID:        id,
		Name:      d.string(),
		CreatedBy: d.string(),
		CreatedAt: d.time(),
	}
	return g, d.finish()
}

// encodeMember is the value of both membership indexes; the group and user
// ids are in the keys.
func encodeMember(buf []byte, m *store.Member) []byte {
	buf = append(buf, memberV1)
	buf = appendString(buf, string(m.Role))
	return appendTime(buf, m.JoinedAt)
}

func decodeMember(groupID, uid string, v []byte) (store.Member, error) {
	d := decoder{b: v}
	if d.byte() != memberV1 {
		return store.Member{}, errCorrupt
	}
	m := store.Member{
		GroupID:  groupID,
		UserID:   uid,
		Role:     store.Role(d.string()),
		JoinedAt: d.time(),
	}
	return m, d.finish()
}

// encodeChatState leaves out UserID and Chat: they are in the key.
func encodeChatState(st *store.ChatState) []byte {
	b := make([]byte, 0, 1+10+10+1+10)
	b = append(b, chatStateV1)
	b = binary.AppendUvarint(b, st.DeliveredSeq)
	b = binary.AppendUvarint(b, st.ReadSeq)
	var flags byte
	if st.Left {
		flags |= chatStateLeft
	}
	b = append(b, flags)
	return appendTime(b, st.UpdatedAt)
}

func decodeChatState(uid, chat string, v []byte) (store.ChatState, error) {
	d := decoder{b: v}
	if d.byte() != chatStateV1 {
		return store.ChatState{}, errCorrupt
	}
	st := store.ChatState{
		UserID:       uid,
		Chat:         chat,
		DeliveredSeq: d.uvarint(),
		ReadSeq:      d.uvarint(),
	}
	flags := d.byte()
	if flags&^chatStateLeft != 0 {
		d.fail()
	}
	st.Left = flags&chatStateLeft != 0
	st.UpdatedAt = d.time()
	return st, d.finish()
}

// encodeDevice leaves out UserID and DeviceID: they are in the key.
func encodeDevice(d *store.Device) []byte {
	b := make([]byte, 0, 1+len(d.Platform)+len(d.PushToken)+16)
	b = append(b, deviceV1)
	b = appendString(b, string(d.Platform))
	b = appendString(b, d.PushToken)
	return appendTime(b, d.UpdatedAt)
}

func decodeDevice(uid, deviceID string, v []byte) (store.Device, error) {
	d := decoder{b: v}
	if d.byte() != deviceV1 {
		return store.Device{}, errCorrupt
	}
	dev := store.Device{
		UserID:    uid,
		DeviceID:  deviceID,
		Platform:  store.Platform(d.string()),
		PushToken: d.string(),
		UpdatedAt: d.time(),
	}
	return dev, d.finish()
}

const (
	deviceKeysV1 = 1
	mailboxV1    = 1
	deviceMsgV1  = 1
	deviceRefV1  = 1
)

// encodeDeviceKeys leaves out UserID and DeviceID: they are in the key.
func encodeDeviceKeys(k *store.DeviceKeys) []byte {
	b := make([]byte, 0, 1+len(k.IdentityKey)+len(k.SignedPrekey)+len(k.SignedPrekeySig)+32)
	b = append(b, deviceKeysV1)
	b = appendBytes(b, k.IdentityKey)
	b = binary.AppendUvarint(b, uint64(k.SignedPrekeyID))
	b = appendBytes(b, k.SignedPrekey)
	b = appendBytes(b, k.SignedPrekeySig)
	return appendTime(b, k.UpdatedAt)
}

func decodeDeviceKeys(uid, deviceID string, v []byte) (store.DeviceKeys, error) {
	d := decoder{b: v}
	if d.byte() != deviceKeysV1 {
		return store.DeviceKeys{}, errCorrupt
	}
	k := store.DeviceKeys{UserID: uid, DeviceID: deviceID, IdentityKey: d.bytes()}
	id := d.uvarint()
	if id > 1<<32-1 {
		d.fail()
	}
	k.SignedPrekeyID = uint32(id)
	k.SignedPrekey = d.bytes()
	k.SignedPrekeySig = d.bytes()
	k.UpdatedAt = d.time()
	return k, d.finish()
}

func encodeMailbox(m mailboxState) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64)
	b = append(b, mailboxV1)
	b = binary.AppendUvarint(b, m.lastSeq)
	return binary.AppendUvarint(b, m.pending)
}

func decodeMailbox(v []byte) (mailboxState, error) {
	d := decoder{b: v}
	if d.byte() != mailboxV1 {
		return mailboxState{}, errCorrupt
	}
	m := mailboxState{lastSeq: d.uvarint(), pending: d.uvarint()}
	return m, d.finish()
}

// encodeDeviceMessage leaves out ToUser, ToDevice and Seq: they are in the
// key. The body runs to the end of the value, as in encodeMessage.
func encodeDeviceMessage(m *store.DeviceMessage) []byte {
	b := make([]byte, 0, 1+len(m.From)+len(m.FromDevice)+len(m.CMID)+len(m.Body)+16)
	b = append(b, deviceMsgV1)
	b = appendString(b, m.From)
	b = appendString(b, m.FromDevice)
	b = appendString(b, m.CMID)
	b = appendTime(b, m.SentAt)
	return append(b, m.Body...)
}

func decodeDeviceMessage(v []byte, m *store.DeviceMessage) error {
	d := decoder{b: v}
	if d.byte() != deviceMsgV1 {
		return errCorrupt
	}
	m.From = d.string()
	m.FromDevice = d.string()
	m.CMID = d.string()
	m.SentAt = d.time()
	if d.err != nil {
		return d.err
	}
	// v belongs to the iterator; the caller keeps the message.
	m.Body = append([]byte(nil), d.b...)
	return nil
}

// encodeDeviceRef is a device dedupe record: where the message went, its
// seq and time, without From and CMID (they are in the key) or the body.
func encodeDeviceRef(m *store.DeviceMessage) []byte {
	b := make([]byte, 0, 1+len(m.ToUser)+len(m.ToDevice)+len(m.FromDevice)+24)
	b = append(b, deviceRefV1)
	b = appendString(b, m.ToUser)
	b = appendString(b, m.ToDevice)
	b = binary.AppendUvarint(b, m.Seq)
	b = appendString(b, m.FromDevice)
	return appendTime(b, m.SentAt)
}

func decodeDeviceRef(v []byte) (store.DeviceMessage, error) {
	d := decoder{b: v}
	if d.byte() != deviceRefV1 {
		return store.DeviceMessage{}, errCorrupt
	}
	m := store.DeviceMessage{
		ToUser:     d.string(),
		ToDevice:   d.string(),
		Seq:        d.uvarint(),
		FromDevice: d.string(),
		SentAt:     d.time(),
	}
	return m, d.finish()
}
