package hooks

import "testing"

func TestOwnFilter(t *testing.T) {
	const uid = "dc28k7tqmd2opp5ut58g"
	tests := []struct {
		clientID, filter string
		want             bool
	}{
		{uid + "/phone", "users/" + uid + "/inbox", true},
		{uid + "/phone", "users/" + uid + "/responses/#", true},
		{uid + "/phone", "users/" + uid + "/#", true},
		{uid + "/phone", "presence/" + uid, false},
		{uid + "/phone", "users/" + uid + "x/inbox", false}, // a longer id with the same prefix
		{uid + "/phone", "users/other/inbox", false},
		{"anonymous", "users/anonymous/inbox", false}, // no user part
		{"/phone", "users//inbox", false},
	}
	for _, tt := range tests {
		if got := OwnFilter(tt.clientID, tt.filter); got != tt.want {
			t.Errorf("OwnFilter(%q, %q) = %v, want %v", tt.clientID, tt.filter, got, tt.want)
		}
	}
}
