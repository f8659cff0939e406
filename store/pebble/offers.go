package pebble

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
)

// An offer is one user's pending decision about something another user
// started: a message request ("rq/{uid}\x00{chat}") or a group invitation
// ("gi/{uid}\x00{group}"). Both hold version, from, created_at, are
// written once (a retry keeps the first) and are listed per user, so one
// implementation serves both aggregates.
type offerKind struct {
	prefix string // key prefix, "rq/" or "gi/"
	name   string // in errors: "request", "invite"
}

const offerV1 = 1

var (
	requestOffers = offerKind{prefix: prefixRequest, name: "request"}
	inviteOffers  = offerKind{prefix: prefixInvite, name: "invite"}
)

// offer is one stored offer of a user: subject is the chat or group.
type offer struct {
	subject, from string
	createdAt     time.Time
}

func (s *Store) putOffer(ctx context.Context, k offerKind, uid string, o offer) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: put %s: %w", k.name, err)
	}
	defer s.mu.RUnlock()
	if err := errors.Join(checkKeyPart(uid), checkKeyPart(o.subject)); err != nil {
		return fmt.Errorf("pebble: put %s: %w", k.name, err)
	}
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	key := pairKey(k.prefix, uid, o.subject)
	switch ok, err := s.exists(key); {
	case err != nil:
		return fmt.Errorf("pebble: put %s: %w", k.name, err)
	case ok:
		return nil
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Set(key, appendTime(appendString([]byte{offerV1}, o.from), o.createdAt), nil); err != nil {
		return fmt.Errorf("pebble: put %s: %w", k.name, err)
	}
	if err := commit(ctx, batch); err != nil {
		return fmt.Errorf("pebble: put %s: %w", k.name, err)
	}
	return nil
}

// deleteOffer reports whether there was an offer to delete.
func (s *Store) deleteOffer(ctx context.Context, k offerKind, uid, subject string) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, fmt.Errorf("pebble: delete %s: %w", k.name, err)
	}
	defer s.mu.RUnlock()
	if checkKeyPart(uid) != nil || checkKeyPart(subject) != nil {
		return false, nil
	}
	s.blocksMu.Lock()
	defer s.blocksMu.Unlock()
	key := pairKey(k.prefix, uid, subject)
	switch ok, err := s.exists(key); {
	case err != nil:
		return false, fmt.Errorf("pebble: delete %s: %w", k.name, err)
	case !ok:
		return false, nil
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Delete(key, nil); err != nil {
		return false, fmt.Errorf("pebble: delete %s: %w", k.name, err)
	}
	if err := commit(ctx, batch); err != nil {
		return false, fmt.Errorf("pebble: delete %s: %w", k.name, err)
	}
	return true, nil
}

// offersOf lists uid's offers of kind k by subject.
func (s *Store) offersOf(ctx context.Context, k offerKind, uid string) ([]offer, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("pebble: %ss: %w", k.name, err)
	}
	defer s.mu.RUnlock()
	var out []offer
	if checkKeyPart(uid) != nil {
		return out, nil
	}
	lower, upper := pairBounds(k.prefix, uid)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebble: %ss of %q: %w", k.name, uid, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		subject, ok := pairSecond(it.Key(), k.prefix, uid)
		if !ok {
			err = fmt.Errorf("bad %s key %q: %w", k.name, it.Key(), errCorrupt)
			break
		}
		d := decoder{b: it.Value()}
		if d.byte() != offerV1 {
			err = fmt.Errorf("%s %q: %w", k.name, subject, errCorrupt)
			break
		}
		o := offer{subject: subject, from: d.string(), createdAt: d.time()}
		if derr := d.finish(); derr != nil {
			err = fmt.Errorf("%s %q: %w", k.name, subject, derr)
			break
		}
		out = append(out, o)
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return nil, fmt.Errorf("pebble: %ss of %q: %w", k.name, uid, err)
	}
	return out, nil
}
