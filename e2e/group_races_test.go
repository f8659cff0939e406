package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/mqchat/mqchat/internal/config"
)

// raceHTTP sends every request at once over its own connection and
// returns the statuses in order; it reports transport failures with
// t.Errorf, which is safe off the test goroutine.
func raceHTTP(t *testing.T, s *server, method string, paths []string, token string, bodies []any) []int {
	t.Helper()
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		statuses = make([]int, len(paths))
	)
	for i := range paths {
		raw, err := json.Marshal(bodies[i])
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			req, err := http.NewRequest(method, s.base+paths[i], bytes.NewReader(raw))
			if err != nil {
				t.Errorf("%s %s: %v", method, paths[i], err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			// A fresh transport per request: no request waits for another's
			// connection, so they reach the server together.
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			<-start
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("%s %s: %v", method, paths[i], err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	return statuses
}

// TestGroupLimitsHoldUnderConcurrentRequests: many adds racing at a group
// that has room for only some of them never take it past
// max_group_members, and two owner hand-overs racing leave exactly one
// owner. Each race is repeated because a lost update needs an unlucky
// interleaving to show.
func TestGroupLimitsHoldUnderConcurrentRequests(t *testing.T) {
	const limit, adders = 5, 20
	s := startServer(t, func(c *config.Config) { c.Limits.MaxGroupMembers = limit })
	owner := s.register(t, "owner")
	users := make([]account, adders)
	for i := range users {
		users[i] = s.register(t, fmt.Sprintf("user%02d", i))
	}

	t.Run("Adds", func(t *testing.T) {
		for trial := range 5 {
			var g groupView
			if st := s.call(t, "POST", "/v1/groups", owner.Token, map[string]any{"name": fmt.Sprintf("race %d", trial)}, nil, &g); st != http.StatusCreated {
				t.Fatalf("create group: %d", st)
			}
			paths, bodies := make([]string, adders), make([]any, adders)
			for i, u := range users {
				paths[i] = "/v1/groups/" + g.GroupID + "/members"
				bodies[i] = map[string]any{"user_ids": []string{u.ID}}
			}
			statuses := raceHTTP(t, s, "POST", paths, owner.Token, bodies)
			ok, full := 0, 0
			for i, st := range statuses {
				switch st {
				case http.StatusOK:
					ok++
				case http.StatusConflict:
					full++
				default:
					t.Fatalf("trial %d: add %d: status %d, want 200 or 409", trial, i, st)
				}
			}
			if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, owner.Token, nil, nil, &g); st != http.StatusOK {
				t.Fatalf("get group: %d", st)
			}
			if len(g.Members) != limit || ok != limit-1 || full != adders-(limit-1) {
				t.Fatalf("trial %d: %d racing adds with max_group_members %d: %d added, %d refused, %d members; want %d, %d, %d",
					trial, adders, limit, ok, full, len(g.Members), limit-1, adders-limit+1, limit)
			}
			// Every accepted add, and only those, is recorded in the chat.
			page := s.history(t, owner, g.Chat, "?limit=100")
			if added := countSystem(t, page, "members_added"); added != limit-1 {
				t.Fatalf("trial %d: %d members_added records, want %d", trial, added, limit-1)
			}
		}
	})

	t.Run("OwnerTransfers", func(t *testing.T) {
		a, b := users[0], users[1]
		for trial := range 20 {
			var g groupView
			if st := s.call(t, "POST", "/v1/groups", owner.Token, map[string]any{"name": fmt.Sprintf("hand-over %d", trial), "members": []string{a.ID, b.ID}}, nil, &g); st != http.StatusCreated {
				t.Fatalf("create group: %d", st)
			}
			base := "/v1/groups/" + g.GroupID + "/members/"
			statuses := raceHTTP(t, s, "PATCH", []string{base + a.ID, base + b.ID}, owner.Token,
				[]any{map[string]string{"role": "owner"}, map[string]string{"role": "owner"}})
			if st := s.call(t, "GET", "/v1/groups/"+g.GroupID, a.Token, nil, nil, &g); st != http.StatusOK {
				t.Fatalf("get group: %d", st)
			}
			owners := 0
			for _, m := range g.Members {
				if m.Role == "owner" {
					owners++
				}
			}
			won := 0
			for _, st := range statuses {
				if st == http.StatusOK {
					won++
				} else if st != http.StatusForbidden {
					t.Fatalf("trial %d: hand-over status %d, want 200 or 403", trial, st)
				}
			}
			if owners != 1 || won != 1 {
				t.Fatalf("trial %d: two racing hand-overs: statuses %v, %d owners in %+v; want one 200 and one owner", trial, statuses, owners, g.Members)
			}
		}
	})
}

func countSystem(t *testing.T, page historyPage, op string) int {
	t.Helper()
	n := 0
	for _, m := range page.Messages {
		if m.Type != "system" {
			continue
		}
		var body struct {
			Op string `json:"op"`
		}
		if err := json.Unmarshal(m.Body, &body); err != nil {
			t.Fatalf("system message body %s: %v", m.Body, err)
		}
		if body.Op == op {
			n++
		}
	}
	return n
}
