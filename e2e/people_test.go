package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/ids"
)

// commonPrefix is how many leading characters a and b share.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestRegisteredIDsAreNotSequential: ids of accounts registered one after
// another share no prefix beyond chance and are all distinct, so one id
// tells nothing about the next. xids registered in one second shared their
// first 14 characters.
func TestRegisteredIDsAreNotSequential(t *testing.T) {
	s := startServer(t, nil)
	names := []string{"u00", "u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11"}
	seen := map[string]bool{}
	var prev string
	for _, n := range names {
		id := s.register(t, n).ID
		if !ids.ValidUserID(id) || seen[id] {
			t.Fatalf("registration %s got id %q (valid %v, repeated %v)", n, id, ids.ValidUserID(id), seen[id])
		}
		seen[id] = true
		// Five shared characters (25 bits) happen by chance once in 33
		// million pairs.
		if prev != "" && commonPrefix(prev, id) >= 5 {
			t.Fatalf("consecutive ids %s and %s share a %d-character prefix", prev, id, commonPrefix(prev, id))
		}
		prev = id
	}
}

// TestNoSilentExistenceOracle: requests that change nothing answer the
// same whether or not an id names a user. Adding [candidate, unknown] to
// one's own group, creating a group with them, and resending a used cmid
// to a candidate all gave existing and unknown candidates different
// answers.
func TestNoSilentExistenceOracle(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	unknown := ids.NewUserID() // random: names nobody
	const zero = "00000000000000000000"

	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "own", "members": []string{}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	type answer struct {
		status int
		body   string
	}
	ask := func(method, path string, body any) answer {
		t.Helper()
		h := bearer(alice.Token)
		raw := ""
		if body != nil {
			raw = mustJSON(t, body)
		}
		r := rawHTTP(t, s, method, path, h, raw)
		return answer{r.status, string(r.body)}
	}
	probes := []struct {
		name  string
		probe func(candidate string) answer
	}{
		{"add members", func(c string) answer {
			return ask("POST", "/v1/groups/"+g.GroupID+"/members", map[string]any{"user_ids": []string{c, zero}})
		}},
		{"add members, unknown first", func(c string) answer {
			return ask("POST", "/v1/groups/"+g.GroupID+"/members", map[string]any{"user_ids": []string{zero, c}})
		}},
		{"create group", func(c string) answer {
			return ask("POST", "/v1/groups", map[string]any{"name": "probe", "members": []string{c, zero}})
		}},
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			existing, missing := p.probe(bob.ID), p.probe(unknown)
			if existing != missing {
				t.Fatalf("existing user: %d %s\nunknown user: %d %s", existing.status, existing.body, missing.status, missing.body)
			}
			if existing.status != http.StatusNotFound {
				t.Fatalf("status %d %s, want 404", existing.status, existing.body)
			}
		})
	}
	// The same over MQTT (users/{me}/groups): one refusal for both.
	dev := dialDevice(t, s, "v5", alice, "phone")
	addOverMQTT := func(opID, candidate string) reqEvent {
		t.Helper()
		rc := dev.request(t, "groups", map[string]any{"op_id": opID, "op": "add_members", "group_id": g.GroupID, "user_ids": []string{candidate, zero}})
		dev.wantRC(t, rc, 0x87)
		return dev.event(t, "group_op")
	}
	existingEv, missingEv := addOverMQTT("probe-1", bob.ID), addOverMQTT("probe-2", unknown)
	if existingEv.OK || existingEv.Code != missingEv.Code || existingEv.Message != missingEv.Message || existingEv.ReasonCode != missingEv.ReasonCode {
		t.Fatalf("MQTT add_members: existing user %+v, unknown user %+v", existingEv, missingEv)
	}

	// Nobody was added by the refused requests.
	var after groupView
	if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, alice.Token, nil, nil, &after); st != http.StatusOK || len(after.Members) != 1 {
		t.Fatalf("group after probes: %d %+v", st, after)
	}

	// A cmid already used (here with carol) is refused as reused (409) for
	// any other recipient, existing or not, and delivers nothing.
	send := func(to string) answer {
		t.Helper()
		h := bearer(alice.Token)
		h["Idempotency-Key"] = "used-once"
		r := rawHTTP(t, s, "POST", "/v1/chats/"+directChat(alice.ID, to)+"/messages", h, `{"body":"hi"}`)
		return answer{r.status, string(r.body) + " replayed=" + r.header.Get("Idempotent-Replayed")}
	}
	if a := send(carol.ID); a.status != http.StatusCreated {
		t.Fatalf("first send: %+v", a)
	}
	existing, missing := send(bob.ID), send(unknown)
	if existing != missing || existing.status != http.StatusConflict {
		t.Fatalf("cmid reuse: existing user %+v, unknown user %+v", existing, missing)
	}
	if page := s.history(t, bob, directChat(alice.ID, bob.ID), ""); len(page.Messages) != 0 {
		t.Fatalf("bob received %d messages from a replayed cmid", len(page.Messages))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

type profileBody struct {
	UserID       string `json:"user_id"`
	Username     string `json:"username"`
	DisplayName  string `json:"display_name"`
	About        string `json:"about"`
	Avatar       string `json:"avatar"`
	Discoverable *bool  `json:"discoverable"`
}

// TestFindPeopleByUsername: an exact username answers the id to start a
// chat with; unknown, malformed and non-discoverable names all get the
// same 404; the caller always finds themself.
func TestFindPeopleByUsername(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")

	var found struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
	}
	lookup := func(a account, name string) httpResult {
		t.Helper()
		return rawHTTP(t, s, "GET", "/v1/users?username="+name, bearer(a.Token), "")
	}
	r := lookup(alice, "BoB")
	if r.status != http.StatusOK {
		t.Fatalf("lookup bob: %d %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &found); err != nil || found.UserID != bob.ID || found.Username != "bob" {
		t.Fatalf("lookup bob = %s (%v), want id %s", r.body, err, bob.ID)
	}
	// The id found is enough to talk to bob.
	if st := s.call(t, "POST", "/v1/chats/"+directChat(alice.ID, found.UserID)+"/messages", alice.Token, map[string]string{"body": "found you"}, map[string]string{"Idempotency-Key": "f1"}, nil); st != http.StatusCreated {
		t.Fatalf("send to the id found: %d", st)
	}

	// carol turns discovery off: she is now indistinguishable from nobody.
	off := false
	var me profileBody
	if st := s.call(t, "PATCH", "/v1/me", carol.Token, map[string]any{"discoverable": off}, nil, &me); st != http.StatusOK || me.Discoverable == nil || *me.Discoverable {
		t.Fatalf("PATCH discoverable=false: %d %+v", st, me)
	}
	hidden, unknown, malformed := lookup(alice, "carol"), lookup(alice, "nobody-here"), lookup(alice, "no%20such%20name!")
	for _, r := range []httpResult{hidden, unknown, malformed} {
		if r.status != http.StatusNotFound || string(r.body) != string(unknown.body) {
			t.Fatalf("hidden %d %s / unknown %d %s / malformed %d %s: want one identical 404",
				hidden.status, hidden.body, unknown.status, unknown.body, malformed.status, malformed.body)
		}
	}
	if r := lookup(carol, "carol"); r.status != http.StatusOK {
		t.Fatalf("carol looking herself up: %d %s", r.status, r.body)
	}
	// Turning it back on makes her findable again.
	if st := s.call(t, "PATCH", "/v1/me", carol.Token, map[string]any{"discoverable": true}, nil, nil); st != http.StatusOK {
		t.Fatalf("PATCH discoverable=true: %d", st)
	}
	if r := lookup(alice, "carol"); r.status != http.StatusOK {
		t.Fatalf("lookup carol after re-enabling: %d %s", r.status, r.body)
	}

	// Bad requests are 400, and unauthenticated ones 401.
	for _, path := range []string{"/v1/users", "/v1/users?username=a&username=b", "/v1/users?username=bob&x=1"} {
		if r := rawHTTP(t, s, "GET", path, bearer(alice.Token), ""); r.status != http.StatusBadRequest {
			t.Fatalf("GET %s: %d %s, want 400", path, r.status, r.body)
		}
	}
	if r := rawHTTP(t, s, "GET", "/v1/users?username=bob", nil, ""); r.status != http.StatusUnauthorized {
		t.Fatalf("lookup without a token: %d", r.status)
	}
}

// TestUsernameLookupRateLimited: past limits.lookup_burst a user gets 429
// with Retry-After, counted in mqchat_limit_refusals_total; other users
// keep their own budget.
func TestUsernameLookupRateLimited(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Limits.LookupRate, c.Limits.LookupBurst = 1, 3 })
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	statuses := []int{}
	var limited httpResult
	for range 6 {
		r := rawHTTP(t, s, "GET", "/v1/users?username=nobody-"+alice.ID[:4], bearer(alice.Token), "")
		statuses = append(statuses, r.status)
		if r.status == http.StatusTooManyRequests {
			limited = r
		}
	}
	if statuses[0] != http.StatusNotFound || limited.status != http.StatusTooManyRequests {
		t.Fatalf("statuses %v, want 404s then 429", statuses)
	}
	if limited.header.Get("Retry-After") == "" || !strings.Contains(string(limited.body), "rate_limited") {
		t.Fatalf("429 without Retry-After or code: %v %s", limited.header, limited.body)
	}
	if r := rawHTTP(t, s, "GET", "/v1/users?username=alice", bearer(bob.Token), ""); r.status != http.StatusOK {
		t.Fatalf("bob's lookup while alice is limited: %d %s", r.status, r.body)
	}
	eventually(t, "lookup refusals counted", func() error {
		r := rawHTTP(t, s, "GET", "/metrics", nil, "")
		if !strings.Contains(string(r.body), `mqchat_limit_refusals_total{limit="user_lookup_rate"}`) ||
			strings.Contains(string(r.body), `mqchat_limit_refusals_total{limit="user_lookup_rate"} 0`) {
			return fmt.Errorf("no user_lookup_rate refusals in /metrics")
		}
		return nil
	})
}

// TestProfileVisibility: a profile is editable by its user and readable by
// them and by users sharing a 1:1 chat or a group; a stranger gets the
// same 404 as for an id that names nobody. Bad fields are refused whole.
func TestProfileVisibility(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol, dave, eve := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol"), s.register(t, "dave"), s.register(t, "eve")

	patch := map[string]any{"display_name": "  Alice Ünal  ", "about": "Likes trains 🚆", "avatar": "https://cdn.example.org/a.png"}
	var me profileBody
	if st := s.call(t, "PATCH", "/v1/me", alice.Token, patch, nil, &me); st != http.StatusOK {
		t.Fatalf("PATCH /v1/me: %d", st)
	}
	want := profileBody{UserID: alice.ID, Username: "alice", DisplayName: "Alice Ünal", About: "Likes trains 🚆", Avatar: "https://cdn.example.org/a.png"}
	me.Discoverable = nil
	if me != want {
		t.Fatalf("PATCH answer %+v, want %+v", me, want)
	}
	// A partial patch keeps the other fields.
	if st := s.call(t, "PATCH", "/v1/me", alice.Token, map[string]any{"about": ""}, nil, &me); st != http.StatusOK {
		t.Fatalf("PATCH about: %d", st)
	}
	want.About = ""
	var got profileBody
	if st := s.call(t, "GET", "/v1/me", alice.Token, nil, nil, &got); st != http.StatusOK || got.Discoverable == nil || !*got.Discoverable {
		t.Fatalf("GET /v1/me: %d %+v", st, got)
	}
	got.Discoverable = nil
	if got != want {
		t.Fatalf("GET /v1/me = %+v, want %+v", got, want)
	}

	// Refused patches change nothing.
	for _, bad := range []struct {
		name string
		body string
	}{
		{"control character", `{"display_name":"a\u0007b","about":"kept?"}`},
		{"newline in name", `{"display_name":"a\nb"}`},
		{"too long", mustJSON(t, map[string]any{"display_name": strings.Repeat("é", 65)})},
		{"avatar too long", mustJSON(t, map[string]any{"avatar": "https://x/" + strings.Repeat("a", 510)})},
		{"invalid UTF-8", "{\"about\":\"\xff\xfe\"}"},
		{"unknown field", `{"nickname":"al"}`},
		{"wrong type", `{"discoverable":"no"}`},
	} {
		t.Run(bad.name, func(t *testing.T) {
			r := rawHTTP(t, s, "PATCH", "/v1/me", bearer(alice.Token), bad.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("PATCH %s: %d %s, want 400", bad.body, r.status, r.body)
			}
		})
	}

	// bob shares a 1:1 chat with alice, carol a group; dave nothing.
	if st := s.call(t, "POST", "/v1/chats/"+directChat(bob.ID, alice.ID)+"/messages", bob.Token, map[string]string{"body": "hi"}, map[string]string{"Idempotency-Key": "p1"}, nil); st != http.StatusCreated {
		t.Fatalf("bob's message: %d", st)
	}
	// A first message from someone alice shares nothing with is a request
	// until she accepts it.
	if st := s.call(t, "POST", "/v1/chats/"+directChat(bob.ID, alice.ID)+"/accept", alice.Token, nil, nil, nil); st != http.StatusNoContent {
		t.Fatalf("alice accepts bob's request: %d", st)
	}
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "g", "members": []string{carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	for _, reader := range []account{alice, bob, carol} {
		eventually(t, reader.Username+" reads alice's profile", func() error {
			var p profileBody
			if st := s.call(t, "GET", "/v1/users/"+alice.ID, reader.Token, nil, nil, &p); st != http.StatusOK {
				return fmt.Errorf("status %d", st)
			}
			if p.Discoverable != nil || p != want {
				return fmt.Errorf("profile %+v, want %+v", p, want)
			}
			return nil
		})
	}
	stranger := rawHTTP(t, s, "GET", "/v1/users/"+alice.ID, bearer(dave.Token), "")
	nobody := rawHTTP(t, s, "GET", "/v1/users/"+ids.NewUserID(), bearer(dave.Token), "")
	malformed := rawHTTP(t, s, "GET", "/v1/users/not-an-id", bearer(dave.Token), "")
	for _, r := range []httpResult{stranger, nobody, malformed} {
		if r.status != http.StatusNotFound || string(r.body) != string(nobody.body) {
			t.Fatalf("stranger %d %s / unknown id %d %s / malformed %d %s: want one identical 404",
				stranger.status, stranger.body, nobody.status, nobody.body, malformed.status, malformed.body)
		}
	}
	// Leaving the group ends carol's view; eve, added and removed, too.
	if st := s.call(t, "DELETE", "/v1/groups/"+g.GroupID+"/members/"+carol.ID, carol.Token, nil, nil, nil); st != http.StatusNoContent && st != http.StatusOK {
		t.Fatalf("carol leaves: %d", st)
	}
	eventually(t, "carol loses alice's profile", func() error {
		if r := rawHTTP(t, s, "GET", "/v1/users/"+alice.ID, bearer(carol.Token), ""); r.status != http.StatusNotFound {
			return fmt.Errorf("status %d", r.status)
		}
		return nil
	})
	if r := rawHTTP(t, s, "GET", "/v1/users/"+alice.ID, bearer(eve.Token), ""); r.status != http.StatusNotFound {
		t.Fatalf("eve (no shared chat): %d", r.status)
	}
}
