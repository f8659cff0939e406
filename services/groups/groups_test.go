package groups

import (
	"testing"

	"github.com/mqchat/mqchat/internal/ids"
)

func TestDeriveID(t *testing.T) {
	const alice, bob = "aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"
	a1 := DeriveID(alice, "op-1")
	if !ids.ValidUserID(a1) {
		t.Fatalf("DeriveID = %q, not shaped like an id", a1)
	}
	if again := DeriveID(alice, "op-1"); again != a1 {
		t.Fatalf("DeriveID not deterministic: %q then %q", a1, again)
	}
	seen := map[string]string{a1: "alice op-1"}
	for name, id := range map[string]string{
		"alice op-2": DeriveID(alice, "op-2"),
		"bob op-1":   DeriveID(bob, "op-1"),
		// The separator keeps (actor, opID) pairs apart.
		"alice+o p-1": DeriveID(alice+"o", "p-1"),
	} {
		if other, dup := seen[id]; dup {
			t.Fatalf("%s and %s derive the same id %q", name, other, id)
		}
		seen[id] = name
	}
}
