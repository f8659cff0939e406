package broker

import (
	"log/slog"
	"slices"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// LimitObserver counts refusals by the limit that caused them.
type LimitObserver interface{ ObserveLimitRefusals(limit string, n int) }

// LimitRestoredSubscriptions names, in LimitObserver, the filters dropped
// from sessions restored at start-up.
const LimitRestoredSubscriptions = "restored_subscriptions"

// restoreLimits are the subscription limits a restored session is held to:
// the same as a live session's, so that nothing persisted before a limit
// existed, or was lowered, comes back past it.
type restoreLimits struct {
	maxSubs, maxFilterBytes int // 0 = unlimited
	keepFirst               func(clientID, filter string) bool
	observer                LimitObserver
	log                     *slog.Logger
}

// StoredSubscriptions is what mochi restores at start-up (Server.Serve,
// before any client is accepted). Filters over the limits are dropped and
// deleted from the store, so they are gone for good, not just for this run:
// refused filters an older release stored, filters longer than
// maxFilterBytes, and, per session, everything past maxSubs. A session
// keeps keepFirst's filters first, then the others, each in store order
// (by filter), so a trimmed device still gets its own inbox and events.
func (h *sessionStore) StoredSubscriptions() ([]storage.Subscription, error) {
	subs, err := h.Hook.StoredSubscriptions()
	if err != nil {
		return nil, err
	}
	r := h.restore
	if r.maxSubs <= 0 && r.maxFilterBytes <= 0 {
		return subs, nil
	}
	byClient := make(map[string][]storage.Subscription)
	var order []string
	for _, sub := range subs {
		if _, seen := byClient[sub.Client]; !seen {
			order = append(order, sub.Client)
		}
		byClient[sub.Client] = append(byClient[sub.Client], sub)
	}
	kept := subs[:0]
	dropped := 0
	for _, id := range order {
		keep, drop := r.trim(id, byClient[id])
		kept = append(kept, keep...)
		if len(drop) == 0 {
			continue
		}
		dropped += len(drop)
		pk := packets.Packet{Filters: make(packets.Subscriptions, len(drop))}
		for i, d := range drop {
			pk.Filters[i] = packets.Subscription{Filter: d.Filter}
		}
		// mochi's hook keys a subscription by client id and filter only.
		h.write(func() { h.Hook.OnUnsubscribed(&mqtt.Client{ID: id}, pk) })
		if r.log != nil {
			r.log.Warn("restored session over the subscription limits: filters dropped",
				"client", id, "kept", len(keep), "dropped", len(drop),
				"max_subscriptions", r.maxSubs, "max_filter_bytes", r.maxFilterBytes)
		}
	}
	if dropped > 0 && r.observer != nil {
		r.observer.ObserveLimitRefusals(LimitRestoredSubscriptions, dropped)
	}
	return kept, nil
}

// trim splits one session's stored filters into those it keeps and those
// over the limits.
func (r restoreLimits) trim(clientID string, subs []storage.Subscription) (keep, drop []storage.Subscription) {
	valid := make([]storage.Subscription, 0, len(subs))
	for _, s := range subs {
		if s.Qos >= packets.ErrUnspecifiedError.Code || (r.maxFilterBytes > 0 && len(s.Filter) > r.maxFilterBytes) {
			drop = append(drop, s)
		} else {
			valid = append(valid, s)
		}
	}
	if r.maxSubs <= 0 || len(valid) <= r.maxSubs {
		return valid, drop
	}
	if r.keepFirst != nil {
		slices.SortStableFunc(valid, func(a, b storage.Subscription) int {
			switch fa, fb := r.keepFirst(clientID, a.Filter), r.keepFirst(clientID, b.Filter); {
			case fa && !fb:
				return -1
			case fb && !fa:
				return 1
			}
			return 0
		})
	}
	return valid[:r.maxSubs], append(drop, valid[r.maxSubs:]...)
}
