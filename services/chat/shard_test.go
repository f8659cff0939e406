package chat

import (
	"hash/fnv"
	"testing"
)

// ShardOf is a contract with load tools (they aim one message at each
// writer), so it must stay FNV-1a modulo the writer count.
func TestShardOf(t *testing.T) {
	for _, tt := range []struct {
		chat string
		n    int
	}{
		{"d:a:b", 16}, {"g:0123456789abcdefghij", 16}, {"g:x", 1}, {"", 7}, {"d:user1:user2", 3},
	} {
		h := fnv.New32a()
		_, _ = h.Write([]byte(tt.chat))
		want := int(h.Sum32() % uint32(tt.n))
		if got := ShardOf(tt.chat, tt.n); got != want {
			t.Errorf("ShardOf(%q, %d) = %d, want %d", tt.chat, tt.n, got, want)
		}
	}
}
