package presence

import (
	"testing"
	"time"
)

// FuzzRestore covers the retained presence/{uid} payloads read back at
// startup: whatever bytes the retained store holds, every user who may see
// this presence gets an aggregate the service itself could have published,
// and a user shown online goes offline when no device comes back.
func FuzzRestore(f *testing.F) {
	for _, s := range []string{
		`{"status":"online","devices":2}`, `{"status":"offline","devices":0}`,
		`{"status":"offline","last_seen":"2025-01-01T00:00:00Z","devices":0}`,
		`{"status":"online","devices":-3}`, `{"status":"online","devices":0}`, `{"status":"offline","devices":7}`,
		`{"status":"offline","last_seen":"yesterday","devices":0}`, `{"status":"online","last_seen":"2025-01-01T00:00:00Z","devices":1}`,
		`{"status":"away"}`, `offline`, ``, `null`, `{"status":"online","devices":9223372036854775807}`,
		`{"status":"online","devices":1.5}`, `{"status":"offline","last_seen":"2025-01-01T00:00:00+25:00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		s, clk, rec, _ := setup(t)
		s.Restore("u", payload)
		v := s.View("u")
		wantAggregate(t, payload, v)
		for _, p := range rec.take() {
			wantAggregate(t, payload, p)
		}
		if users, devices := s.Stats(); devices != 0 || users != 0 && v.Status != StatusOnline || users > 1 {
			t.Fatalf("%q: stats %d users, %d devices", payload, users, devices)
		}
		restart := clk.Now()
		clk.advance(grace)
		if v := s.View("u"); v.Status != StatusOffline {
			t.Fatalf("%q: still %+v after the grace period", payload, v)
		} else if users, _ := s.Stats(); users != 0 {
			t.Fatalf("%q: %d users online after the grace period", payload, users)
		}
		for _, p := range rec.take() {
			wantAggregate(t, payload, p)
			if p.LastSeen != restart.UTC().Format(time.RFC3339) {
				t.Fatalf("%q: went offline with last_seen %q, want the restart", payload, p.LastSeen)
			}
		}
	})
}

// wantAggregate fails unless v is an aggregate the service publishes.
func wantAggregate(t *testing.T, payload []byte, v View) {
	t.Helper()
	ok := v.Status == StatusOnline && v.Devices >= 1 && v.LastSeen == "" ||
		v.Status == StatusOffline && v.Devices == 0
	if v.Status == StatusOffline && v.LastSeen != "" {
		_, err := time.Parse(time.RFC3339, v.LastSeen)
		ok = ok && err == nil
	}
	if !ok {
		t.Fatalf("restored %q: shows %+v", payload, v)
	}
}
