package pebble

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// The end-to-end keys are laid out in doc.go. Every write of one device
// happens under its e2eDeviceLocks stripe, so a claim's read of the lowest
// prekey and its delete are one step (Pebble is one process's store: an
// in-process lock is enough to hand each key out once), and so are a put's
// read of the mailbox and its write of seq+1.

// deviceKey is "{prefix}{uid}\x00{device}".
func deviceKey(prefix, uid, deviceID string) []byte { return pairKey(prefix, uid, deviceID) }

// deviceItemBounds returns [lower, upper) covering every
// "{prefix}{uid}\x00{device}\x00..." key; device ids never contain sep.
func deviceItemBounds(prefix, uid, deviceID string) (lower, upper []byte) {
	k := pairKey(prefix, uid, deviceID)
	lower = append(k, sep)
	upper = append(k[:len(k):len(k)], sep+1)
	return lower, upper
}

func prekeyKey(uid, deviceID string, id uint32) []byte {
	lower, _ := deviceItemBounds(prefixPrekey, uid, deviceID)
	return binary.BigEndian.AppendUint32(lower, id)
}

func deviceMsgKey(uid, deviceID string, seq uint64) []byte {
	lower, _ := deviceItemBounds(prefixDeviceMsg, uid, deviceID)
	return binary.BigEndian.AppendUint64(lower, seq)
}

// checkDevice rejects ids that could alias another device's keys.
func checkDevice(uid, deviceID string) error {
	return errors.Join(checkKeyPart(uid), checkKeyPart(deviceID))
}

func (s *Store) PutDeviceKeys(ctx context.Context, k store.DeviceKeys, otks []store.OneTimePrekey) (store.KeyChange, int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, 0, fmt.Errorf("pebble: put device keys: %w", err)
	}
	defer s.mu.RUnlock()
	if err := checkDevice(k.UserID, k.DeviceID); err != nil {
		return 0, 0, fmt.Errorf("pebble: put device keys: %w", err)
	}
	mu := s.e2eDeviceLocks.of(k.UserID + "\x00" + k.DeviceID)
	mu.Lock()
	defer mu.Unlock()

	key := deviceKey(prefixDeviceKeys, k.UserID, k.DeviceID)
	change := store.KeyAdded
	old, err := s.get(key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return 0, 0, fmt.Errorf("pebble: put device keys: %w", err)
	default:
		prev, err := decodeDeviceKeys(k.UserID, k.DeviceID, old)
		if err != nil {
			return 0, 0, fmt.Errorf("pebble: put device keys of %q/%q: %w", k.UserID, k.DeviceID, err)
		}
		change = store.KeyUnchanged
		if !bytes.Equal(prev.IdentityKey, k.IdentityKey) {
			change = store.KeyIdentityChanged
		}
	}

	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(key, encodeDeviceKeys(&k), nil); err != nil {
		return 0, 0, fmt.Errorf("pebble: put device keys: %w", err)
	}
	if change == store.KeyIdentityChanged {
		// The old identity's prekeys are useless to anyone who claims them.
		lo, hi := deviceItemBounds(prefixPrekey, k.UserID, k.DeviceID)
		if err := b.DeleteRange(lo, hi, nil); err != nil {
			return 0, 0, fmt.Errorf("pebble: put device keys: %w", err)
		}
	}
	// A repeated id within otks: the last one wins, as it would in turn.
	for _, o := range otks {
		if err := b.Set(prekeyKey(k.UserID, k.DeviceID, o.ID), o.Key, nil); err != nil {
			return 0, 0, fmt.Errorf("pebble: put device keys: %w", err)
		}
	}
	if err := commit(ctx, b); err != nil {
		return 0, 0, fmt.Errorf("pebble: put device keys: %w", err)
	}
	// Still under the device's lock: nothing has claimed or added since.
	n, err := s.countPrekeys(ctx, k.UserID, k.DeviceID)
	if err != nil {
		return 0, 0, fmt.Errorf("pebble: put device keys: %w", err)
	}
	return change, n, nil
}

// countPrekeys counts the device's one-time prekeys; there are at most
// limits.max_one_time_prekeys of them.
func (s *Store) countPrekeys(ctx context.Context, uid, deviceID string) (int, error) {
	lo, hi := deviceItemBounds(prefixPrekey, uid, deviceID)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n, it.Close()
}

// DeviceKeys scans uid's ek/ range, which is in device id order.
func (s *Store) DeviceKeys(ctx context.Context, uid string) ([]store.DeviceKeys, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: device keys: %w", err)
	}
	defer s.mu.RUnlock()
	out := []store.DeviceKeys{}
	if checkKeyPart(uid) != nil {
		return out, nil
	}
	lower, upper := pairBounds(prefixDeviceKeys, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: device keys of %q: %w", uid, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		id, ok := pairSecond(it.Key(), prefixDeviceKeys, uid)
		if !ok {
			err = fmt.Errorf("bad device keys key %q: %w", it.Key(), errCorrupt)
			break
		}
		k, derr := decodeDeviceKeys(uid, id, it.Value())
		if derr != nil {
			err = fmt.Errorf("device %q: %w", id, derr)
			break
		}
		out = append(out, k)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: device keys of %q: %w", uid, err)
	}
	return out, nil
}

// ClaimOneTimePrekey reads the device's lowest prekey and deletes it under
// the device's lock, with an fsync: a claim forgotten in a crash would hand
// the same key out again.
func (s *Store) ClaimOneTimePrekey(ctx context.Context, uid, deviceID string) (store.OneTimePrekey, int, error) {
	if err := s.begin(ctx); err != nil {
		return store.OneTimePrekey{}, 0, fmt.Errorf("pebble: claim prekey: %w", err)
	}
	defer s.mu.RUnlock()
	if checkDevice(uid, deviceID) != nil {
		return store.OneTimePrekey{}, 0, fmt.Errorf("pebble: claim prekey: %w", store.ErrNotFound)
	}
	mu := s.e2eDeviceLocks.of(uid + "\x00" + deviceID)
	mu.Lock()
	defer mu.Unlock()

	lo, hi := deviceItemBounds(prefixPrekey, uid, deviceID)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return store.OneTimePrekey{}, 0, fmt.Errorf("pebble: claim prekey: %w", err)
	}
	var (
		key    store.OneTimePrekey
		keyAt  []byte
		others int
	)
	for ok := it.First(); ok; ok = it.Next() {
		if keyAt != nil {
			others++
			continue
		}
		k := it.Key()
		if len(k) != len(lo)+4 {
			err = fmt.Errorf("bad prekey key %q: %w", k, errCorrupt)
			break
		}
		keyAt = append([]byte(nil), k...)
		key = store.OneTimePrekey{ID: binary.BigEndian.Uint32(k[len(lo):]), Key: append([]byte(nil), it.Value()...)}
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return store.OneTimePrekey{}, 0, fmt.Errorf("pebble: claim prekey of %q/%q: %w", uid, deviceID, err)
	}
	if keyAt == nil {
		return store.OneTimePrekey{}, 0, fmt.Errorf("pebble: claim prekey of %q/%q: %w", uid, deviceID, store.ErrNotFound)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(keyAt, nil); err != nil {
		return store.OneTimePrekey{}, 0, fmt.Errorf("pebble: claim prekey: %w", err)
	}
	if err := commit(ctx, b); err != nil {
		return store.OneTimePrekey{}, 0, fmt.Errorf("pebble: claim prekey: %w", err)
	}
	return key, others, nil
}

func (s *Store) DeleteDeviceKeys(ctx context.Context, uid, deviceID string) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: delete device keys: %w", err)
	}
	defer s.mu.RUnlock()
	if checkDevice(uid, deviceID) != nil {
		return fmt.Errorf("pebble: delete device keys: %w", store.ErrNotFound)
	}
	mu := s.e2eDeviceLocks.of(uid + "\x00" + deviceID)
	mu.Lock()
	defer mu.Unlock()

	key := deviceKey(prefixDeviceKeys, uid, deviceID)
	ok, err := s.exists(key)
	if err == nil && !ok {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("pebble: delete device keys of %q/%q: %w", uid, deviceID, err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	lo, hi := deviceItemBounds(prefixPrekey, uid, deviceID)
	err = errors.Join(b.Delete(key, nil), b.DeleteRange(lo, hi, nil))
	if err == nil {
		err = commit(ctx, b)
	}
	if err != nil {
		return fmt.Errorf("pebble: delete device keys of %q/%q: %w", uid, deviceID, err)
	}
	return nil
}

// PutDeviceMessage holds the sender's stripe (when the message has a cmid)
// and then the device's across the dedupe check, the quota check, the seq
// assignment and the commit, so two sends of one (From, CMID), to any
// devices, store one message, and two sends to one device get two
// consecutive seqs. dedupeMu is held shared as in AppendMessages, so the
// sweeper cannot delete a record between its check and its replacement.
func (s *Store) PutDeviceMessage(ctx context.Context, m store.DeviceMessage, maxPending int) (store.DeviceMessage, bool, error) {
	if err := s.begin(ctx); err != nil {
		return store.DeviceMessage{}, false, fmt.Errorf("pebble: put device message: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkDevice(m.ToUser, m.ToDevice), checkKeyPart(m.From)); err != nil {
		return store.DeviceMessage{}, false, fmt.Errorf("pebble: put device message: %w", err)
	}
	if m.CMID != "" {
		mu := s.e2eSenderLocks.of(m.From)
		mu.Lock()
		defer mu.Unlock()
	}
	mu := s.e2eDeviceLocks.of(m.ToUser + "\x00" + m.ToDevice)
	mu.Lock()
	defer mu.Unlock()
	s.dedupeMu.RLock()
	defer s.dedupeMu.RUnlock()

	now := s.now().Truncate(time.Millisecond)
	cutoff := now.Add(-store.DedupeWindow)
	if m.CMID != "" {
		prev, err := s.liveDeviceRef(m.From, m.CMID, cutoff)
		switch {
		case err == nil:
			return prev, true, nil
		case errors.Is(err, errCorrupt):
			s.log.Warn("replacing corrupt device dedupe record", "sender", m.From, "cmid", m.CMID, "err", err)
		case !errors.Is(err, store.ErrNotFound):
			return store.DeviceMessage{}, false, fmt.Errorf("pebble: put device message: %w", err)
		}
	}
	boxKey := deviceKey(prefixMailbox, m.ToUser, m.ToDevice)
	box, err := s.mailbox(boxKey)
	if err != nil {
		return store.DeviceMessage{}, false, fmt.Errorf("pebble: put device message to %q/%q: %w", m.ToUser, m.ToDevice, err)
	}
	if maxPending > 0 && box.pending >= uint64(maxPending) {
		return store.DeviceMessage{}, false, fmt.Errorf("pebble: put device message to %q/%q: %d pending: %w",
			m.ToUser, m.ToDevice, box.pending, store.ErrQuota)
	}
	box.lastSeq++
	box.pending++
	m.Seq, m.SentAt = box.lastSeq, now

	b := s.db.NewBatch()
	defer b.Close()
	err = errors.Join(
		b.Set(deviceMsgKey(m.ToUser, m.ToDevice, m.Seq), encodeDeviceMessage(&m), nil),
		b.Set(boxKey, encodeMailbox(box), nil),
	)
	if m.CMID != "" {
		err = errors.Join(err,
			b.Set(deviceDedupe.key(m.From, m.CMID), encodeDeviceRef(&m), nil),
			b.Set(deviceDedupe.expiryKey(m.SentAt, m.From, m.CMID), nil, nil),
		)
	}
	if err == nil {
		err = commit(ctx, b)
	}
	if err != nil {
		return store.DeviceMessage{}, false, fmt.Errorf("pebble: put device message: %w", err)
	}
	return m, false, nil
}

// liveDeviceRef returns the message a device dedupe record describes
// (without its Body), or store.ErrNotFound when there is none or its
// message is older than cutoff.
func (s *Store) liveDeviceRef(sender, cmid string, cutoff time.Time) (store.DeviceMessage, error) {
	k := deviceDedupe.key(sender, cmid)
	v, err := s.get(k)
	if err != nil {
		return store.DeviceMessage{}, err
	}
	m, err := decodeDeviceRef(v)
	if err != nil {
		return store.DeviceMessage{}, fmt.Errorf("device dedupe record %q: %w", k, err)
	}
	if m.SentAt.Before(cutoff) {
		return store.DeviceMessage{}, store.ErrNotFound
	}
	m.From, m.CMID = sender, cmid
	return m, nil
}

func (s *Store) PendingDeviceMessages(ctx context.Context, uid, deviceID string, after uint64, limit int) ([]store.DeviceMessage, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: pending device messages: %w", err)
	}
	defer s.mu.RUnlock()
	if limit <= 0 {
		return nil, fmt.Errorf("pebble: pending device messages: limit %d, want > 0", limit)
	}
	out := []store.DeviceMessage{}
	if checkDevice(uid, deviceID) != nil || after == math.MaxUint64 {
		return out, nil
	}
	lo, hi := deviceItemBounds(prefixDeviceMsg, uid, deviceID)
	prefixLen := len(lo)
	lo = binary.BigEndian.AppendUint64(lo, after+1)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("pebble: pending device messages: %w", err)
	}
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != prefixLen+8 {
			err = fmt.Errorf("bad device message key %q: %w", k, errCorrupt)
			break
		}
		m := store.DeviceMessage{ToUser: uid, ToDevice: deviceID, Seq: binary.BigEndian.Uint64(k[prefixLen:])}
		if derr := decodeDeviceMessage(it.Value(), &m); derr != nil {
			err = fmt.Errorf("seq %d: %w", m.Seq, derr)
			break
		}
		out = append(out, m)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: pending device messages of %q/%q: %w", uid, deviceID, err)
	}
	return out, nil
}

// AckDeviceMessages counts and deletes the acknowledged range and lowers
// the mailbox's pending count in one batch, without an fsync: an ack lost
// in a crash only delivers those messages again, which clients expect.
func (s *Store) AckDeviceMessages(ctx context.Context, uid, deviceID string, upTo uint64) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, fmt.Errorf("pebble: ack device messages: %w", err)
	}
	defer s.mu.RUnlock()
	if checkDevice(uid, deviceID) != nil || upTo == 0 {
		return 0, nil
	}
	mu := s.e2eDeviceLocks.of(uid + "\x00" + deviceID)
	mu.Lock()
	defer mu.Unlock()

	lo, hi := deviceItemBounds(prefixDeviceMsg, uid, deviceID)
	if upTo < math.MaxUint64 {
		hi = deviceMsgKey(uid, deviceID, upTo+1)
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, fmt.Errorf("pebble: ack device messages: %w", err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("pebble: ack device messages: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	boxKey := deviceKey(prefixMailbox, uid, deviceID)
	box, err := s.mailbox(boxKey)
	if err != nil {
		return 0, fmt.Errorf("pebble: ack device messages of %q/%q: %w", uid, deviceID, err)
	}
	box.pending -= min(box.pending, uint64(n))
	b := s.db.NewBatch()
	defer b.Close()
	err = errors.Join(b.DeleteRange(lo, hi, nil), b.Set(boxKey, encodeMailbox(box), nil))
	if err == nil {
		err = commitLazy(ctx, b)
	}
	if err != nil {
		return 0, fmt.Errorf("pebble: ack device messages: %w", err)
	}
	return n, nil
}

// mailboxState is a device's seq counter and how many messages wait.
type mailboxState struct{ lastSeq, pending uint64 }

// mailbox reads the device's mailbox; a device never written to has the
// zero one.
func (s *Store) mailbox(k []byte) (mailboxState, error) {
	v, err := s.get(k)
	if errors.Is(err, store.ErrNotFound) {
		return mailboxState{}, nil
	}
	if err != nil {
		return mailboxState{}, err
	}
	return decodeMailbox(v)
}
