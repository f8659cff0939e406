package pebble

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/mqchat/mqchat/store"
)

// A device is "dv/{uid}\x00{device}" → platform, token, updated_at, and its
// token is indexed as "dt/{token}" → "{uid}\x00{device}" so a token moving to
// another owner can be taken off the previous one.

// PutDevice holds devicesMu for the read-check-write: a token move touches
// two users' rows, so per-user stripes would not serialise it.
func (s *Store) PutDevice(ctx context.Context, d store.Device) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put device: %w", err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(d.UserID), checkKeyPart(d.DeviceID)); err != nil {
		return fmt.Errorf("pebble: put device: %w", err)
	}
	s.devicesMu.Lock()
	defer s.devicesMu.Unlock()

	b := s.db.NewBatch()
	defer b.Close()
	key := pairKey(prefixDevice, d.UserID, d.DeviceID)
	old, err := s.deviceAt(key, d.UserID, d.DeviceID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("pebble: put device: %w", err)
	case old.PushToken != "" && old.PushToken != d.PushToken:
		if err := b.Delete(deviceTokenKey(old.PushToken), nil); err != nil {
			return fmt.Errorf("pebble: put device: %w", err)
		}
	}
	if d.PushToken != "" {
		owner, err := s.get(deviceTokenKey(d.PushToken))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("pebble: put device: %w", err)
		case string(owner) != string(pairKey("", d.UserID, d.DeviceID)):
			// The token's previous device is gone from FCM's point of view.
			if err := b.Delete(append([]byte(prefixDevice), owner...), nil); err != nil {
				return fmt.Errorf("pebble: put device: %w", err)
			}
		}
		if err := b.Set(deviceTokenKey(d.PushToken), pairKey("", d.UserID, d.DeviceID), nil); err != nil {
			return fmt.Errorf("pebble: put device: %w", err)
		}
	}
	if err := b.Set(key, encodeDevice(&d), nil); err != nil {
		return fmt.Errorf("pebble: put device: %w", err)
	}
	if err := commit(ctx, b); err != nil {
		return fmt.Errorf("pebble: put device: %w", err)
	}
	return nil
}

func (s *Store) DeleteDevice(ctx context.Context, uid, deviceID string) error {
	_, err := s.deleteDevice(ctx, uid, deviceID, func(store.Device) bool { return true })
	if err != nil {
		return fmt.Errorf("pebble: delete device: %w", err)
	}
	return nil
}

func (s *Store) DeletePushToken(ctx context.Context, uid, deviceID, token string) (bool, error) {
	removed, err := s.deleteDevice(ctx, uid, deviceID, func(d store.Device) bool { return d.PushToken == token })
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pebble: delete push token: %w", err)
	}
	return removed, nil
}

// deleteDevice removes the device when match approves of it; ErrNotFound
// when there is no such device.
func (s *Store) deleteDevice(ctx context.Context, uid, deviceID string, match func(store.Device) bool) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	if checkKeyPart(uid) != nil || checkKeyPart(deviceID) != nil {
		return false, store.ErrNotFound
	}
	s.devicesMu.Lock()
	defer s.devicesMu.Unlock()
	key := pairKey(prefixDevice, uid, deviceID)
	d, err := s.deviceAt(key, uid, deviceID)
	if err != nil {
		return false, err
	}
	if !match(d) {
		return false, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(key, nil); err != nil {
		return false, err
	}
	if d.PushToken != "" {
		if err := b.Delete(deviceTokenKey(d.PushToken), nil); err != nil {
			return false, err
		}
	}
	if err := commit(ctx, b); err != nil {
		return false, err
	}
	return true, nil
}

// Devices scans uid's dv/ range, which is in device id order.
func (s *Store) Devices(ctx context.Context, uid string) ([]store.Device, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: devices: %w", err)
	}
	defer s.mu.RUnlock()
	out := []store.Device{}
	if checkKeyPart(uid) != nil {
		return out, nil
	}
	lower, upper := pairBounds(prefixDevice, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: devices of %q: %w", uid, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		id, ok := pairSecond(it.Key(), prefixDevice, uid)
		if !ok {
			err = fmt.Errorf("bad device key %q: %w", it.Key(), errCorrupt)
			break
		}
		d, derr := decodeDevice(uid, id, it.Value())
		if derr != nil {
			err = fmt.Errorf("device %q: %w", id, derr)
			break
		}
		out = append(out, d)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: devices of %q: %w", uid, err)
	}
	return out, nil
}

func (s *Store) deviceAt(key []byte, uid, deviceID string) (store.Device, error) {
	v, err := s.get(key)
	if err != nil {
		return store.Device{}, err
	}
	return decodeDevice(uid, deviceID, v)
}

func deviceTokenKey(token string) []byte {
	return append([]byte(prefixDeviceToken), token...)
}
