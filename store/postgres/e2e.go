package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// putKeyRetries bounds PutDeviceKeys' find-or-insert loop, which only
// repeats when a concurrent DeleteDeviceKeys or first put changed the row
// between two of its statements.
const putKeyRetries = 3

// PutDeviceKeys locks the device's row (inserting it when absent), so the
// identity comparison, the prekey replacement and the count are one step
// against concurrent puts and claims of the device.
func (s *Store) PutDeviceKeys(ctx context.Context, k store.DeviceKeys, otks []store.OneTimePrekey) (store.KeyChange, int, error) {
	ids, keys := prekeyColumns(otks)
	var (
		change    store.KeyChange
		remaining int
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		if change, err = lockOrInsertKeys(ctx, tx, k); err != nil {
			return err
		}
		if change == store.KeyIdentityChanged {
			// The old identity's prekeys are useless to anyone who claims them.
			if _, err := tx.Exec(ctx, `DELETE FROM one_time_prekeys WHERE user_id = $1 AND device_id = $2`,
				k.UserID, k.DeviceID); err != nil {
				return err
			}
		}
		if len(ids) > 0 {
			if _, err := tx.Exec(ctx, `
				INSERT INTO one_time_prekeys (user_id, device_id, prekey_id, key)
				SELECT $1, $2, id, key FROM unnest($3::bigint[], $4::bytea[]) AS o (id, key)
				ON CONFLICT (user_id, device_id, prekey_id) DO UPDATE SET key = excluded.key`,
				k.UserID, k.DeviceID, ids, keys); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM one_time_prekeys WHERE user_id = $1 AND device_id = $2`,
			k.UserID, k.DeviceID).Scan(&remaining)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: put device keys of %q/%q: %w", k.UserID, k.DeviceID, mapErr(ctx, err))
	}
	return change, remaining, nil
}

// lockOrInsertKeys writes k and reports what it changed, holding the row
// lock until the transaction ends. Each statement sees what committed
// before it, so the loop ends once neither a concurrent first put nor a
// delete moves the row in between.
func lockOrInsertKeys(ctx context.Context, tx pgx.Tx, k store.DeviceKeys) (store.KeyChange, error) {
	for range putKeyRetries {
		var old []byte
		err := tx.QueryRow(ctx, `SELECT identity_key FROM device_keys
			WHERE user_id = $1 AND device_id = $2 FOR NO KEY UPDATE`, k.UserID, k.DeviceID).Scan(&old)
		switch {
		case err == nil:
			_, err := tx.Exec(ctx, `UPDATE device_keys SET identity_key = $3, signed_prekey_id = $4,
				signed_prekey = $5, signed_prekey_sig = $6, updated_at = $7
				WHERE user_id = $1 AND device_id = $2`,
				k.UserID, k.DeviceID, nonNil(k.IdentityKey), int64(k.SignedPrekeyID),
				nonNil(k.SignedPrekey), nonNil(k.SignedPrekeySig), ms(k.UpdatedAt))
			if err != nil {
				return 0, err
			}
			if bytes.Equal(old, k.IdentityKey) {
				return store.KeyUnchanged, nil
			}
			return store.KeyIdentityChanged, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return 0, err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO device_keys (user_id, device_id, identity_key,
				signed_prekey_id, signed_prekey, signed_prekey_sig, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, device_id) DO NOTHING`,
			k.UserID, k.DeviceID, nonNil(k.IdentityKey), int64(k.SignedPrekeyID),
			nonNil(k.SignedPrekey), nonNil(k.SignedPrekeySig), ms(k.UpdatedAt))
		if err != nil {
			return 0, err
		}
		if tag.RowsAffected() == 1 {
			return store.KeyAdded, nil
		}
	}
	return 0, fmt.Errorf("device keys changed under %d attempts: %w", putKeyRetries, store.ErrConflict)
}

// prekeyColumns turns otks into unnest arrays, keeping the last key of an
// id given twice: one INSERT ... ON CONFLICT may not touch a row twice.
func prekeyColumns(otks []store.OneTimePrekey) ([]int64, [][]byte) {
	at := make(map[uint32]int, len(otks))
	ids := make([]int64, 0, len(otks))
	keys := make([][]byte, 0, len(otks))
	for _, o := range otks {
		if i, seen := at[o.ID]; seen {
			keys[i] = nonNil(o.Key)
			continue
		}
		at[o.ID] = len(ids)
		ids = append(ids, int64(o.ID))
		keys = append(keys, nonNil(o.Key))
	}
	return ids, keys
}

func (s *Store) DeviceKeys(ctx context.Context, uid string) ([]store.DeviceKeys, error) {
	rows, err := s.pool.Query(ctx, `SELECT device_id, identity_key, signed_prekey_id, signed_prekey,
			signed_prekey_sig, updated_at
		FROM device_keys WHERE user_id = $1 ORDER BY device_id`, uid)
	var out []store.DeviceKeys
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DeviceKeys, error) {
			k := store.DeviceKeys{UserID: uid}
			var id int64
			err := row.Scan(&k.DeviceID, &k.IdentityKey, &id, &k.SignedPrekey, &k.SignedPrekeySig, &k.UpdatedAt)
			k.SignedPrekeyID = uint32(id)
			return k, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: device keys of %q: %w", uid, mapErr(ctx, err))
	}
	if out == nil {
		out = []store.DeviceKeys{}
	}
	return out, nil
}

// ClaimOneTimePrekey deletes the device's lowest prekey with the
// SKIP LOCKED pattern, so two claims, from any nodes, never return the same
// row. It first locks the device's keys row: claims of one device then
// queue for a moment rather than skip each other's rows, which makes the
// remaining count exact and an ErrNotFound mean that none is left, not that
// the last ones were being claimed.
func (s *Store) ClaimOneTimePrekey(ctx context.Context, uid, deviceID string) (store.OneTimePrekey, int, error) {
	var (
		key       store.OneTimePrekey
		remaining int
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM device_keys WHERE user_id = $1 AND device_id = $2
			FOR NO KEY UPDATE`, uid, deviceID).Scan(&one); err != nil {
			return err // ErrNoRows: no keys, so no prekeys either
		}
		var id int64
		if err := tx.QueryRow(ctx, `
			DELETE FROM one_time_prekeys WHERE (user_id, device_id, prekey_id) = (
				SELECT user_id, device_id, prekey_id FROM one_time_prekeys
				WHERE user_id = $1 AND device_id = $2
				ORDER BY prekey_id LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING prekey_id, key`, uid, deviceID).Scan(&id, &key.Key); err != nil {
			return err
		}
		key.ID = uint32(id)
		return tx.QueryRow(ctx, `SELECT count(*) FROM one_time_prekeys WHERE user_id = $1 AND device_id = $2`,
			uid, deviceID).Scan(&remaining)
	})
	if err != nil {
		return store.OneTimePrekey{}, 0, fmt.Errorf("postgres: claim prekey of %q/%q: %w", uid, deviceID, mapErr(ctx, err))
	}
	return key, remaining, nil
}

// DeleteDeviceKeys deletes the keys row; its prekeys go by cascade.
func (s *Store) DeleteDeviceKeys(ctx context.Context, uid, deviceID string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2`, uid, deviceID)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: delete device keys of %q/%q: %w", uid, deviceID, mapErr(ctx, err))
	}
	return nil
}

// errDedupeRace ends a PutDeviceMessage transaction that found no dedupe
// record but could not write its own: a concurrent send of the same
// (sender, cmid) committed first. The retry finds that send's record.
var errDedupeRace = errors.New("device message dedupe record written concurrently")

// putMessageRetries bounds PutDeviceMessage's retries after errDedupeRace;
// one is enough unless the winning transaction rolled back.
const putMessageRetries = 3

// PutDeviceMessage runs in one transaction: the dedupe lookup, then the
// mailbox row's upsert (its row lock serialises the device's sends, so the
// seq is the next one and the pending count is exact), the quota check,
// the message and its dedupe record. A refused send rolls the seq back, so
// seqs stay gap-free.
func (s *Store) PutDeviceMessage(ctx context.Context, m store.DeviceMessage, maxPending int) (store.DeviceMessage, bool, error) {
	var (
		stored store.DeviceMessage
		dup    bool
		err    error
	)
	for range putMessageRetries {
		stored, dup, err = s.putDeviceMessage(ctx, m, maxPending)
		if !errors.Is(err, errDedupeRace) {
			break
		}
	}
	if err != nil {
		return store.DeviceMessage{}, false, fmt.Errorf("postgres: put device message to %q/%q: %w",
			m.ToUser, m.ToDevice, mapErr(ctx, err))
	}
	return stored, dup, nil
}

func (s *Store) putDeviceMessage(ctx context.Context, m store.DeviceMessage, maxPending int) (store.DeviceMessage, bool, error) {
	now := ms(s.now())
	// timestamptz keeps microseconds; see AppendMessages.
	cutoff := now.Add(-store.DedupeWindow).Truncate(time.Microsecond)
	m.SentAt = now
	dup := false
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if m.CMID != "" {
			prev := store.DeviceMessage{From: m.From, CMID: m.CMID}
			var seq int64
			err := tx.QueryRow(ctx, `SELECT user_id, device_id, seq, from_device, sent_at
				FROM device_message_dedupe WHERE sender = $1 AND cmid = $2 AND sent_at >= $3`,
				m.From, []byte(m.CMID), cutoff).Scan(&prev.ToUser, &prev.ToDevice, &seq, &prev.FromDevice, &prev.SentAt)
			switch {
			case err == nil:
				prev.Seq = uint64(seq)
				m, dup = prev, true
				return nil
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
		}
		var seq int64
		if err := tx.QueryRow(ctx, `INSERT INTO device_mailboxes (user_id, device_id, last_seq) VALUES ($1, $2, 1)
			ON CONFLICT (user_id, device_id) DO UPDATE SET last_seq = device_mailboxes.last_seq + 1
			RETURNING last_seq`, m.ToUser, m.ToDevice).Scan(&seq); err != nil {
			return err
		}
		m.Seq = uint64(seq)
		if maxPending > 0 {
			// A fresh snapshot, taken under the mailbox lock: every send
			// before this one is counted.
			var pending int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM device_messages
				WHERE user_id = $1 AND device_id = $2 LIMIT $3) AS p`,
				m.ToUser, m.ToDevice, maxPending).Scan(&pending); err != nil {
				return err
			}
			if pending >= maxPending {
				return fmt.Errorf("%d pending: %w", pending, store.ErrQuota)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO device_messages
			(user_id, device_id, seq, sender, from_device, cmid, body, sent_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			m.ToUser, m.ToDevice, seq, m.From, m.FromDevice, []byte(m.CMID), nonNil(m.Body), m.SentAt); err != nil {
			return err
		}
		if m.CMID == "" {
			return nil
		}
		tag, err := tx.Exec(ctx, `INSERT INTO device_message_dedupe
				(sender, cmid, user_id, device_id, seq, from_device, sent_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (sender, cmid) DO UPDATE SET user_id = excluded.user_id,
				device_id = excluded.device_id, seq = excluded.seq,
				from_device = excluded.from_device, sent_at = excluded.sent_at
			WHERE device_message_dedupe.sent_at < $8`,
			m.From, []byte(m.CMID), m.ToUser, m.ToDevice, seq, m.FromDevice, m.SentAt, cutoff)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errDedupeRace
		}
		return nil
	})
	if err != nil {
		return store.DeviceMessage{}, false, err
	}
	if dup {
		m.Body = nil
	}
	return m, dup, nil
}

func (s *Store) PendingDeviceMessages(ctx context.Context, uid, deviceID string, after uint64, limit int) ([]store.DeviceMessage, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: pending device messages of %q/%q: limit %d, want > 0", uid, deviceID, limit)
	}
	if after >= math.MaxInt64 {
		return []store.DeviceMessage{}, ctx.Err()
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, sender, from_device, cmid, body, sent_at FROM device_messages
		WHERE user_id = $1 AND device_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
		uid, deviceID, int64(after), limit)
	var out []store.DeviceMessage
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DeviceMessage, error) {
			m := store.DeviceMessage{ToUser: uid, ToDevice: deviceID}
			var seq int64
			var cmid []byte
			err := row.Scan(&seq, &m.From, &m.FromDevice, &cmid, &m.Body, &m.SentAt)
			m.Seq, m.CMID = uint64(seq), string(cmid)
			return m, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: pending device messages of %q/%q: %w", uid, deviceID, mapErr(ctx, err))
	}
	if out == nil {
		out = []store.DeviceMessage{}
	}
	return out, nil
}

// AckDeviceMessages needs no mailbox lock: the pending count is counted,
// not kept, and the mailbox's last seq is untouched.
func (s *Store) AckDeviceMessages(ctx context.Context, uid, deviceID string, upTo uint64) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM device_messages WHERE user_id = $1 AND device_id = $2 AND seq <= $3`,
		uid, deviceID, clampSeq(upTo))
	if err != nil {
		return 0, fmt.Errorf("postgres: ack device messages of %q/%q: %w", uid, deviceID, mapErr(ctx, err))
	}
	return int(tag.RowsAffected()), nil
}
