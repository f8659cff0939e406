package visibility

import (
	"context"
	"sync"
	"testing"

	"github.com/mqchat/mqchat/internal/ids"
)

// hiding is a Consent that hides the (viewer, target) pairs it holds.
type hiding struct {
	mu     sync.Mutex
	hidden map[[2]string]bool
}

func (h *hiding) PresenceHidden(_ context.Context, viewer, target string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hidden[[2]string{viewer, target}], nil
}

func (h *hiding) set(viewer, target string, v bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hidden[[2]string{viewer, target}] = v
}

// Consent can only say no, is asked before the cache and so takes effect
// at once without invalidation, is one-way, and never hides a user from
// themself; Related ignores it.
func TestConsentGate(t *testing.T) {
	f := newFixture(t, 0)
	h := &hiding{hidden: map[[2]string]bool{}}
	f.idx = New(f.st, Options{Metrics: f.m, Consent: h})
	a, b, stranger := ids.NewUserID(), ids.NewUserID(), ids.NewUserID()
	f.group(a, b)
	ask := func(step, viewer, target string, want bool) {
		t.Helper()
		if got, err := f.idx.SharesChat(f.ctx, viewer, target); err != nil || got != want {
			t.Fatalf("%s: SharesChat(%s, %s) = %v, %v; want %v", step, viewer, target, got, err, want)
		}
	}
	ask("shared group", a, b, true) // cached from here on
	h.set(a, b, true)
	ask("hidden", a, b, false)
	ask("the other way", b, a, true)
	if ok, err := f.idx.Related(f.ctx, a, b); err != nil || !ok {
		t.Fatalf("Related while hidden = %v, %v; want true", ok, err)
	}
	h.set(a, b, false)
	ask("shown again", a, b, true)
	h.set(stranger, a, false)
	ask("no shared chat", stranger, a, false)
	h.set(a, a, true)
	ask("oneself", a, a, true)
}
