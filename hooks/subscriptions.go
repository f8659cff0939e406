package hooks

import (
	"fmt"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/services/chat"
)

// refusedFilter replaces a filter refused for a limit. mochi's
// processSubscribe has no way for a hook to refuse one filter with a code
// of its choosing, but it refuses an invalid filter (0x8F, 0x80 for 3.1.1)
// without subscribing it, storing it or asking the ACL; OnSubscribed then
// turns that 0x8F into 0x97 for MQTT 5. '#' anywhere but last is invalid.
const refusedFilter = "#/refused"

// OnSubscribe refuses the filters past the limits: those beyond
// MaxFiltersPerSubscribe in this SUBSCRIBE, those longer than
// MaxTopicBytes, and new ones once the session holds MaxSubscriptions.
// A filter the session already holds replaces its subscription and takes
// no new place. Filters the ACL will refuse still take a place here (the
// ACL runs later, in mochi), so a SUBSCRIBE mixing allowed and refused
// filters at the very edge of the limit may be refused one more.
//
// It runs on the client's read goroutine, which is the only one changing
// the client's subscriptions, so the count cannot move meanwhile.
func (h *Limits) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	held := cl.State.Subscriptions.Len()
	adding := make(map[string]bool)
	var refused []int
	why := make(map[string]int) // limit → filters refused for it
	for i, sub := range pk.Filters {
		limit := h.filterLimit(cl, i, sub.Filter, &held, adding)
		if limit == "" {
			continue
		}
		refused = append(refused, i)
		why[limit]++
	}
	if len(refused) == 0 {
		return pk
	}
	first := pk.Filters[refused[0]].Filter
	pk.Filters = slices.Clone(pk.Filters) // the caller's packet stays as read
	for _, i := range refused {
		pk.Filters[i].Filter = refusedFilter
	}
	h.refused.Store(cl, refused)

	var reasons []string
	for _, limit := range []string{LimitSubscriptions, LimitSubscribeFilters, LimitTopicBytes} {
		n := why[limit]
		if n == 0 {
			continue
		}
		h.count(limit, n)
		switch limit {
		case LimitSubscriptions:
			reasons = append(reasons, fmt.Sprintf("a session holds at most %d subscriptions", h.opts.MaxSubscriptions))
		case LimitSubscribeFilters:
			reasons = append(reasons, fmt.Sprintf("one SUBSCRIBE may carry at most %d filters", h.opts.MaxFiltersPerSubscribe))
		case LimitTopicBytes:
			reasons = append(reasons, fmt.Sprintf("a filter may have at most %d bytes", h.opts.MaxTopicBytes))
		}
	}
	msg := fmt.Sprintf("%s of %d refused: %s", plural(len(refused), "filter", "filters"), len(pk.Filters), strings.Join(reasons, "; "))
	h.tell(cl, string(chat.CodeQuota), packets.ErrQuotaExceeded, first, msg)
	return pk
}

// filterLimit names the limit that refuses the i-th filter, or "".
func (h *Limits) filterLimit(cl *mqtt.Client, i int, filter string, held *int, adding map[string]bool) string {
	o := h.opts
	switch {
	case o.MaxFiltersPerSubscribe > 0 && i >= o.MaxFiltersPerSubscribe:
		return LimitSubscribeFilters
	case o.MaxTopicBytes > 0 && len(filter) > o.MaxTopicBytes:
		return LimitTopicBytes
	case o.MaxSubscriptions <= 0 || !mqtt.IsValidFilter(filter, false):
		return "" // mochi refuses invalid filters itself
	}
	if _, ok := cl.State.Subscriptions.Get(filter); ok || adding[filter] {
		return ""
	}
	if *held >= o.MaxSubscriptions {
		return LimitSubscriptions
	}
	*held++
	adding[filter] = true
	return ""
}

// OnSubscribed gives MQTT 5 clients 0x97 Quota exceeded for the filters
// OnSubscribe refused. In mochi v2.7.9 reasonCodes is the slice the SUBACK
// is about to carry (processSubscribe builds the SUBACK around it, calls
// this hook, then writes it), so the codes are changed in place; the
// session store, an earlier hook, has already left these filters out as
// refused. e2e/clientlimits_test.go pins the behaviour.
func (h *Limits) OnSubscribed(cl *mqtt.Client, _ packets.Packet, reasonCodes []byte) {
	v, ok := h.refused.LoadAndDelete(cl)
	if !ok || cl.Properties.ProtocolVersion < 5 {
		return
	}
	for _, i := range v.([]int) {
		if i < len(reasonCodes) && reasonCodes[i] == packets.ErrTopicFilterInvalid.Code {
			reasonCodes[i] = packets.ErrQuotaExceeded.Code
		}
	}
}
