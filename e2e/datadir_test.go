package e2e

import (
	"bytes"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestDataDirIsPrivate: the real binary, handed a data dir that already
// exists world-readable with a world-readable file in it (systemd's
// StateDirectory= default, an old install), makes the dir and everything
// in it private to its user before serving, and everything it writes while
// serving (the store's WAL holding message plaintext, MQTT sessions, the
// JWT secret) is private too.
func TestDataDirIsPrivate(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "chatd")
	if err := os.MkdirAll(filepath.Join(dataDir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{"leftover.txt", "old/notes"}
	for _, p := range leftovers {
		if err := os.WriteFile(filepath.Join(dataDir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{".", "old", "old/notes", "leftover.txt"} {
		mode := fs.FileMode(0o644)
		if p == "." || p == "old" {
			mode = 0o755
		}
		if err := os.Chmod(filepath.Join(dataDir, p), mode); err != nil {
			t.Fatal(err)
		}
	}

	p := startChatd(t, "chatd", dataDir)
	s := p.server()
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	const secret = "meet-at-the-old-mill-7f3a"
	if st := s.call(t, "POST", "/v1/chats/"+directChat(alice.ID, bob.ID)+"/messages", alice.Token,
		map[string]any{"body": secret}, map[string]string{"Idempotency-Key": "m1"}, nil); st != http.StatusCreated {
		t.Fatalf("send: %d", st)
	}
	a5 := dialV5(t, tcpConn(t, p.mqttAddr), alice, "phone") // an MQTT session on disk
	a5.subscribe(t, "users/"+alice.ID+"/#")

	// Checked while serving: files Pebble creates as it goes count too.
	plaintextSeen := false
	var checked int
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		checked++
		perm := info.Mode().Perm()
		switch {
		case info.IsDir() && perm != 0o700:
			t.Errorf("%s: directory mode %v, want 0700", path, perm)
		case info.Mode().IsRegular() && perm != 0o600:
			t.Errorf("%s: file mode %v, want 0600", path, perm)
		case perm&0o077 != 0:
			t.Errorf("%s: mode %v, readable by others", path, info.Mode())
		}
		if info.Mode().IsRegular() && !plaintextSeen {
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			plaintextSeen = bytes.Contains(raw, []byte(secret))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// On the embedded store the WAL holds the message as sent: that is
	// what the modes protect. (On PostgreSQL messages live in the database.)
	if backend(t) == nil && !plaintextSeen {
		t.Fatalf("message plaintext not found in the data dir's %d entries: the check above may not cover the store", checked)
	}
	p.stop(t)
}
