package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

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
	// Nobody was added by the refused requests.
	var after groupView
	if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, alice.Token, nil, nil, &after); st != http.StatusOK || len(after.Members) != 1 {
		t.Fatalf("group after probes: %d %+v", st, after)
	}

	// A cmid already used (here with carol) answers "replayed" for any
	// recipient, existing or not, and delivers nothing.
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
	if existing != missing || existing.status != http.StatusCreated {
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
