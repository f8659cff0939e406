package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/store"
)

// putRetries bounds retries of a PutDevice that lost a race for its token
// to a concurrent PutDevice: the retry then moves the token from the winner.
const putRetries = 3

// PutDevice takes the token off any other device and upserts this one in
// one transaction. The partial unique index on push_token makes two
// concurrent registrations of one token collide rather than both keep it.
func (s *Store) PutDevice(ctx context.Context, d store.Device) error {
	var err error
	for range putRetries {
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			if d.PushToken != "" {
				// The token's previous device is dead to the push provider.
				if _, err := tx.Exec(ctx, `DELETE FROM devices WHERE push_token = $1
					AND (user_id, device_id) <> ($2, $3)`, d.PushToken, d.UserID, d.DeviceID); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `
				INSERT INTO devices (user_id, device_id, platform, push_token, updated_at)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (user_id, device_id) DO UPDATE SET platform = excluded.platform,
					push_token = excluded.push_token, updated_at = excluded.updated_at`,
				d.UserID, d.DeviceID, string(d.Platform), d.PushToken, ms(d.UpdatedAt))
			return err
		})
		if err = mapErr(ctx, err); !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("postgres: put device %q of %q: %w", d.DeviceID, d.UserID, err)
	}
	return nil
}

func (s *Store) DeleteDevice(ctx context.Context, uid, deviceID string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = $2`, uid, deviceID)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: delete device %q of %q: %w", deviceID, uid, mapErr(ctx, err))
	}
	return nil
}

func (s *Store) DeletePushToken(ctx context.Context, uid, deviceID, token string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = $2 AND push_token = $3`,
		uid, deviceID, token)
	if err != nil {
		return false, fmt.Errorf("postgres: delete push token of %q/%q: %w", uid, deviceID, mapErr(ctx, err))
	}
	return tag.RowsAffected() > 0, nil
}

func (s *Store) Devices(ctx context.Context, uid string) ([]store.Device, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, device_id, platform, push_token, updated_at
		FROM devices WHERE user_id = $1 ORDER BY device_id`, uid)
	var out []store.Device
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Device, error) {
			var d store.Device
			err := row.Scan(&d.UserID, &d.DeviceID, &d.Platform, &d.PushToken, &d.UpdatedAt)
			return d, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: devices of %q: %w", uid, mapErr(ctx, err))
	}
	if out == nil {
		out = []store.Device{}
	}
	return out, nil
}
