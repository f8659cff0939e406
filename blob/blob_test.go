package blob_test

import (
	"errors"
	"testing"

	"github.com/mqchat/mqchat/blob"
)

func TestValidKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"attachments/01HZX", true},
		{"attachments/01HZX.thumb", true},
		{"archive/chat-1/1-100.jsonl.gz", true},
		{"a", true},
		{"..a/b..", true}, // dots inside a segment are harmless
		{"", false},
		{"/abs", false},
		{"trailing/", false},
		{"a//b", false},
		{".", false},
		{"..", false},
		{"a/../b", false},
		{"a/./b", false},
		{"a/..", false},
		{`a\b`, false},
		{"a\x00b", false},
		{string(make([]byte, 1025)), false},
	}
	for _, tt := range tests {
		if err := blob.ValidKey(tt.key); (err == nil) != tt.ok {
			t.Errorf("ValidKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
		}
	}
}

func TestClampRange(t *testing.T) {
	tests := []struct {
		size, offset, length, want int64
		err                        bool
	}{
		{10, 0, -1, 10, false},
		{10, 2, 3, 3, false},
		{10, 8, 5, 2, false},
		{10, 10, -1, 0, false},
		{10, 10, 1, 0, false},
		{0, 0, -1, 0, false},
		{10, 11, -1, 0, true},
		{10, -1, 1, 0, true},
		{10, 0, -2, 0, true},
	}
	for _, tt := range tests {
		got, err := blob.ClampRange(tt.size, tt.offset, tt.length)
		if tt.err {
			if !errors.Is(err, blob.ErrInvalidRange) {
				t.Errorf("ClampRange(%d, %d, %d) = %d, %v; want ErrInvalidRange", tt.size, tt.offset, tt.length, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ClampRange(%d, %d, %d) = %d, %v; want %d", tt.size, tt.offset, tt.length, got, err, tt.want)
		}
	}
}
