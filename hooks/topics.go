package hooks

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Topic leaves under users/{uid}/.
const (
	LeafInbox  = "inbox"
	LeafEvents = "events"
	LeafSend   = "send"
	// Requests to the server, like send: publish-only for their owner.
	LeafGroups   = "groups"
	LeafSync     = "sync"
	LeafReceipts = "receipts"
	LeafTyping   = "typing"
	LeafKeys     = "keys" // the end-to-end encryption key directory
	// LeafResponses is the root of the subtree users/{uid}/responses/… a
	// client subscribes to and names as the MQTT 5 Response Topic of its
	// requests. Only the server publishes there.
	LeafResponses = "responses"
	// LeafDevices is the root of users/{uid}/devices/{device}/inbox, one
	// device's own inbox of device messages: only the client
	// {uid}/{device} reads it, only the server writes it.
	LeafDevices = "devices"
)

// requestLeaf reports whether leaf is one a client may publish to.
func requestLeaf(leaf string) bool {
	switch leaf {
	case LeafSend, LeafGroups, LeafSync, LeafReceipts, LeafTyping, LeafKeys:
		return true
	}
	return false
}

// inResponses reports whether leaf (a topic or a filter) lies inside
// responses/: "responses/" followed by at least one more level.
func inResponses(leaf string) bool {
	rest, ok := strings.CutPrefix(leaf, LeafResponses+"/")
	return ok && rest != ""
}

// InboxTopic is where uid's devices receive chat messages.
func InboxTopic(uid string) string { return "users/" + uid + "/" + LeafInbox }

// EventsTopic is where uid's devices receive receipts, errors and other events.
func EventsTopic(uid string) string { return "users/" + uid + "/" + LeafEvents }

// DeviceInboxTopic is where device of uid receives its device messages.
func DeviceInboxTopic(uid, device string) string {
	return "users/" + uid + "/" + LeafDevices + "/" + device + "/" + LeafInbox
}

// deviceInboxLeaf returns the device of a leaf devices/{device}/inbox.
func deviceInboxLeaf(leaf string) (device string, ok bool) {
	rest, ok := strings.CutPrefix(leaf, LeafDevices+"/")
	if !ok {
		return "", false
	}
	device, ok = strings.CutSuffix(rest, "/"+LeafInbox)
	return device, ok && device != ""
}

// deviceInboxAccess decides a read of topic (a topic or a filter) when it
// lies in a device inbox (handled = true): only the client whose id is
// {uid}/{device} reads users/{uid}/devices/{device}/inbox, exactly that
// topic, no wildcard, not even the user's other devices.
func deviceInboxAccess(uid, clientID, topic string) (allowed, handled bool) {
	owner, leaf, ok := splitUserTopic(topic)
	if !ok || !strings.HasPrefix(leaf, LeafDevices+"/") {
		return false, false
	}
	device, ok := deviceInboxLeaf(leaf)
	if !ok || uid == "" || owner != uid {
		return false, true
	}
	own, ok := clientDevice(uid, clientID)
	return ok && own == device, true
}

// SendTopic is where uid's devices publish send envelopes.
func SendTopic(uid string) string { return "users/" + uid + "/" + LeafSend }

// PresenceTopic carries uid's retained aggregate presence.
func PresenceTopic(uid string) string { return "presence/" + uid }

// splitUserTopic parses users/{uid}/{leaf}; leaf may itself contain '/'.
func splitUserTopic(topic string) (uid, leaf string, ok bool) {
	rest, found := strings.CutPrefix(topic, "users/")
	if !found {
		return "", "", false
	}
	uid, leaf, found = strings.Cut(rest, "/")
	return uid, leaf, found && uid != ""
}

// reservedNamespace reports whether a topic or filter can reach the users/ or
// presence/ trees, which only authenticated users and the server touch.
func reservedNamespace(topic string) bool {
	return strings.HasPrefix(topic, "users/") || strings.HasPrefix(topic, "presence/") ||
		topic == "users" || topic == "presence"
}

// sharedTopicFilter returns the topic filter of a shared subscription
// ($share/{group}/{filter}), or filter itself when it is not one. mochi
// reads the prefix in any letter case ($SHARE, $sHAre), so this does too:
// otherwise such a filter would pass as a plain one outside the namespace
// while mochi subscribes it to the filter inside.
func sharedTopicFilter(filter string) string {
	if !mqtt.IsSharedFilter(filter) {
		return filter
	}
	parts := strings.SplitN(filter, "/", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

// hasWildcard reports whether a filter contains MQTT wildcards.
func hasWildcard(filter string) bool { return strings.ContainsAny(filter, "+#") }

// readAccess decides whether uid ("" = anonymous) may subscribe to filter or
// receive a message on topic; mochi asks the same question for both. A user
// reads its own inbox, events and responses/… (where MQTT 5 requests with a
// Response Topic are answered), or all of them with users/{uid}/#. The
// answer for presence of another user is left to the caller (it needs the
// store), signalled by askRelation.
func readAccess(uid, filter string) (allowed bool, askRelation string) {
	if uid == "" {
		// Anonymous clients get a plain broker outside the chat namespace:
		// any filter, `#` and `+/…` included, except one that can only
		// match users/ or presence/. What keeps `#` out of the chat
		// namespace is that mochi asks again with the concrete topic before
		// every delivery, live or retained at SUBSCRIBE.
		return !reservedNamespace(sharedTopicFilter(filter)), ""
	}
	if owner, leaf, ok := splitUserTopic(filter); ok {
		// Wildcards inside responses/ cannot reach past the owner's subtree.
		return owner == uid && (leaf == LeafInbox || leaf == LeafEvents || leaf == "#" || inResponses(leaf)), ""
	}
	if other, ok := strings.CutPrefix(filter, "presence/"); ok {
		if other == "" || hasWildcard(other) || strings.Contains(other, "/") {
			return false, ""
		}
		if other == uid {
			return true, ""
		}
		return false, other
	}
	return false, ""
}

// writeAccess decides whether uid ("" = anonymous) may publish to topic:
// only its own request topics (send, groups, sync, receipts, typing, keys).
// Presence, inboxes, events and responses are written only by the server.
func writeAccess(uid, topic string) bool {
	if uid == "" {
		return !reservedNamespace(topic)
	}
	owner, leaf, ok := splitUserTopic(topic)
	return ok && owner == uid && requestLeaf(leaf)
}
