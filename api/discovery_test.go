package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDiscovery(t *testing.T) {
	light := DiscoveryNode{ID: "n1", MQTT: "n1:1883", Connections: 0}
	heavy := DiscoveryNode{ID: "n2", MQTT: "n2:1883", Connections: 900}
	tests := []struct {
		name     string
		nodes    []DiscoveryNode
		status   int
		allowed  map[string]bool
		minLight int // of 200 answers, at least this many name the light node
	}{
		{"no live node", nil, http.StatusServiceUnavailable, nil, 0},
		{"one node", []DiscoveryNode{light}, http.StatusOK, map[string]bool{"n1": true}, 200},
		// Two picks land on the heavy node a quarter of the time at most.
		{"less loaded of two", []DiscoveryNode{light, heavy}, http.StatusOK, map[string]bool{"n1": true, "n2": true}, 120},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := New(Options{Discovery: func() []DiscoveryNode { return tc.nodes }})
			lights := 0
			for range 200 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/discovery", nil))
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
				}
				if tc.status != http.StatusOK {
					return
				}
				var body struct {
					Node  DiscoveryNode   `json:"node"`
					Nodes []DiscoveryNode `json:"nodes"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatal(err)
				}
				if !tc.allowed[body.Node.ID] || len(body.Nodes) != len(tc.nodes) {
					t.Fatalf("answer %+v", body)
				}
				if body.Node.ID == light.ID {
					lights++
				}
			}
			if lights < tc.minLight {
				t.Fatalf("light node named %d times of 200, want at least %d", lights, tc.minLight)
			}
		})
	}
}
