package fs_test

import (
	"io"
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

// Readers racing overwrites of one key see one whole version or the other,
// never a mix or a truncated file: the rename is what publishes a version.
func TestConcurrentOverwriteIsAtomic(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	versions := []string{strings.Repeat("a", 64<<10), strings.Repeat("b", 96<<10)}
	if err := s.Put(t.Context(), "k", strings.NewReader(versions[0]), int64(len(versions[0])), "text/plain"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := range 50 {
			v := versions[i%2]
			if err := s.Put(t.Context(), "k", strings.NewReader(v), int64(len(v)), "text/plain"); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for reads := 0; ; reads++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if reads == 0 {
				t.Log("writer finished before any read")
			}
			return
		default:
		}
		rc, _, err := s.Get(t.Context(), "k")
		if err != nil {
			t.Fatalf("Get during overwrites: %v", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != versions[0] && string(b) != versions[1] {
			t.Fatalf("read %d bytes that are neither version", len(b))
		}
	}
}

// Delete prunes emptied directories while another Put may be about to
// rename into one of them; that Put must still land.
func TestPutRacesDirectoryPruning(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, key := range []string{"p/x/y/a", "p/x/y/b"} {
		go func() {
			for range 200 {
				if err := s.Put(t.Context(), key, strings.NewReader("v"), 1, "text/plain"); err != nil {
					errs <- err
					return
				}
				if err := s.Delete(t.Context(), key); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 { // wait for both before failing, so TempDir cleanup races nothing
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
