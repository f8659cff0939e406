package fs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/blob/blobtest"
	"github.com/mqchat/mqchat/blob/fs"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := fs.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// A crash mid-Put leaves a temp file and no object; reopening clears it.
func TestOpenRemovesStaleTemps(t *testing.T) {
	root := t.TempDir()
	s, err := fs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "a/b", strings.NewReader("kept"), 4, "text/plain"); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(root, "tmp", "put-123")
	if err := os.WriteFile(stale, []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = fs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file still there: %v", err)
	}
	if info, err := s.Stat(t.Context(), "a/b"); err != nil || info.Size != 4 {
		t.Errorf("object after reopen: %+v %v", info, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
		t.Errorf("tmp holds %d entries", len(ents))
	}
}
