package hooks

import "testing"

func TestReadAccess(t *testing.T) {
	const me, other = "aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"
	tests := []struct {
		uid, filter string
		allowed     bool
		relation    string
	}{
		{me, "users/" + me + "/inbox", true, ""},
		{me, "users/" + me + "/events", true, ""},
		{me, "users/" + me + "/#", true, ""},
		{me, "users/" + me + "/send", false, ""},
		{me, "users/" + me + "/groups", false, ""},
		{me, "users/" + me + "/sync", false, ""},
		{me, "users/" + me + "/receipts", false, ""},
		{me, "users/" + me + "/typing", false, ""},
		{me, "users/" + me + "/+", false, ""},
		{me, "users/" + me + "/responses/#", true, ""},
		{me, "users/" + me + "/responses/+", true, ""},
		{me, "users/" + me + "/responses/sync-1", true, ""},
		{me, "users/" + me + "/responses/a/b", true, ""},
		{me, "users/" + me + "/responses", false, ""},
		{me, "users/" + me + "/responses/", false, ""},
		{me, "users/" + me + "/responsesx/1", false, ""},
		{me, "users/" + other + "/responses/#", false, ""},
		{me, "users/" + other + "/responses/x", false, ""},
		{me, "users/+/responses/#", false, ""},
		{"", "users/" + me + "/responses/x", false, ""},
		{me, "users/" + other + "/inbox", false, ""},
		{me, "users/" + other + "/#", false, ""},
		{me, "users/+/inbox", false, ""},
		{me, "users/#", false, ""},
		{me, "users/+/#", false, ""},
		{me, "#", false, ""},
		{me, "+/" + me + "/inbox", false, ""},
		{me, "$SYS/#", false, ""},
		{me, "$share/g/users/" + me + "/inbox", false, ""},
		{me, "presence/" + me, true, ""},
		{me, "presence/" + other, false, other},
		{me, "presence/+", false, ""},
		{me, "presence/#", false, ""},
		{me, "presence/" + other + "/x", false, ""},
		{me, "chat/room", false, ""},
		{"", "chat/room", true, ""},
		// Anonymous filters may start with wildcards; each delivery is
		// checked again with its concrete topic.
		{"", "#", true, ""},
		{"", "+/#", true, ""},
		{"", "+/+", true, ""},
		{"", "+/x/inbox", true, ""},
		{"", "+", true, ""},
		{"", "$SYS/#", true, ""},
		{"", "$share/g/#", true, ""},
		{"", "$share/g/plain/+", true, ""},
		{"", "plain/#", true, ""},
		{"", "plain/+/x", true, ""},
		{"", "usersx/1", true, ""},
		{"", "presences", true, ""},
		// Filters (and so topics) only the chat namespace can match.
		{"", "users/" + me + "/inbox", false, ""},
		{"", "presence/" + me, false, ""},
		{"", "users/#", false, ""},
		{"", "users/+/inbox", false, ""},
		{"", "users", false, ""},
		{"", "presence", false, ""},
		{"", "presence/+", false, ""},
		{"", "presence/#", false, ""},
		{"", "$share/g/users/#", false, ""},
		{"", "$share/g/presence/+", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.uid+"|"+tc.filter, func(t *testing.T) {
			allowed, rel := readAccess(tc.uid, tc.filter)
			if allowed != tc.allowed || rel != tc.relation {
				t.Fatalf("readAccess(%q, %q) = %v, %q; want %v, %q", tc.uid, tc.filter, allowed, rel, tc.allowed, tc.relation)
			}
		})
	}
}

func TestWriteAccess(t *testing.T) {
	const me, other = "aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"
	tests := []struct {
		uid, topic string
		want       bool
	}{
		{me, "users/" + me + "/send", true},
		{me, "users/" + me + "/groups", true},
		{me, "users/" + me + "/sync", true},
		{me, "users/" + me + "/receipts", true},
		{me, "users/" + me + "/typing", true},
		{me, "users/" + me + "/inbox", false},
		{me, "users/" + me + "/events", false},
		{me, "users/" + me + "/responses/x", false},
		{me, "users/" + me + "/send/x", false},
		{me, "users/" + me + "/typing/x", false},
		{me, "users/" + me + "/Typing", false},
		{me, "users/" + me + "/", false},
		{me, "users/" + me, false},
		{me, "users//send", false},
		{me, "users/" + other + "/send", false},
		{me, "users/" + other + "/groups", false},
		{me, "users/" + other + "/sync", false},
		{me, "users/" + other + "/receipts", false},
		{me, "users/" + other + "/typing", false},
		{me, "users/" + other + "/inbox", false},
		{me, "x/users/" + me + "/send", false},
		{me, "presence/" + me, false},
		{me, "chat/room", false},
		{"", "chat/room", true},
		{"", "users/" + me + "/send", false},
		{"", "users/" + me + "/typing", false},
		{"", "presence/" + me, false},
	}
	for _, tc := range tests {
		if got := writeAccess(tc.uid, tc.topic); got != tc.want {
			t.Errorf("writeAccess(%q, %q) = %v, want %v", tc.uid, tc.topic, got, tc.want)
		}
	}
}

func TestDeviceInboxAccess(t *testing.T) {
	const me, other = "aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"
	phone := DeviceInboxTopic(me, "phone")
	tests := []struct {
		uid, client, topic string
		allowed, handled   bool
	}{
		{me, me + "/phone", phone, true, true},
		{me, me + "/laptop", phone, false, true},      // another device of the same user
		{other, other + "/phone", phone, false, true}, // another user
		{other, me + "/phone", phone, false, true},    // a client id that is not the user's
		{"", "phone", phone, false, true},             // anonymous
		{me, me + "/phone", "users/" + me + "/devices/+/inbox", false, true},
		{me, me + "/phone", "users/" + me + "/devices/#", false, true},
		{me, me + "/phone", "users/" + me + "/devices/phone/#", false, true},
		{me, me + "/phone", "users/" + me + "/devices/phone", false, true},
		{me, me + "/phone", "users/" + me + "/devices//inbox", false, true},
		{me, me + "/phone", "users/" + me + "/devices/phone/inbox/x", false, true},
		{me, me + "/+", "users/" + me + "/devices/+/inbox", false, true},
		{me, me + "/phone", "users/" + me + "/inbox", false, false}, // not a device inbox: readAccess decides
		{me, me + "/phone", "users/" + me + "/#", false, false},
		{me, me + "/phone", "presence/" + me, false, false},
	}
	for _, tc := range tests {
		allowed, handled := deviceInboxAccess(tc.uid, tc.client, tc.topic)
		if allowed != tc.allowed || handled != tc.handled {
			t.Errorf("deviceInboxAccess(%q, %q, %q) = %v, %v; want %v, %v", tc.uid, tc.client, tc.topic, allowed, handled, tc.allowed, tc.handled)
		}
	}
}
