package e2e

// chatd archive export|import, run as the real binary on the data dirs of
// stopped nodes.

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestArchiveCLI exports a chat from one node's data dir and restores it
// into another's that was copied from the first before the chat had any
// message (a node restored from an earlier backup, with the same accounts):
// afterwards its history shows the messages exactly as the first node did.
func TestArchiveCLI(t *testing.T) {
	cfgA := testConfig(t)
	s, stop := startManual(t, cfgA)
	alice := s.register(t, "alice")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "notes", "members": []string{}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	stop()

	dirB := t.TempDir()
	copyDir(t, cfgA.DataDir, dirB)

	s, stop = startManual(t, cfgA)
	for i := 1; i <= 5; i++ {
		body := map[string]any{"type": "text", "body": map[string]string{"text": fmt.Sprintf("<note> %d & more", i)}}
		if st := s.call(t, "POST", "/v1/chats/"+g.Chat+"/messages", alice.Token, body, map[string]string{"Idempotency-Key": fmt.Sprintf("n-%d", i)}, nil); st != http.StatusCreated {
			t.Fatalf("send %d: %d", i, st)
		}
	}
	if st := s.call(t, "PATCH", "/v1/chats/"+g.Chat+"/messages/2", alice.Token, map[string]any{"body": "second, edited", "cmid": "e-2"}, nil, nil); st != http.StatusOK {
		t.Fatalf("edit: %d", st)
	}
	// The group's creation is its first message, which the copy holds.
	want := fullHistory(t, s, alice.Token, g.Chat)
	if len(want) != 7 {
		t.Fatalf("history before the export holds %d messages, want 7", len(want))
	}

	ddA, ddB := "--data_dir="+cfgA.DataDir, "--data_dir="+dirB
	until := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	// The server holds its data dir: the command says so instead of
	// opening the store under it.
	if r := runChatd(t, nil, "archive", "export", "--chat", g.Chat, "--until", until, ddA); r.code == 0 || !strings.Contains(r.stderr, "in use") {
		t.Fatalf("export with the server running: want a refusal saying the data dir is in use: %v", r)
	}
	stop()

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"archive", "export", "--chat", g.Chat, "--until", "yesterday", ddA}, "RFC 3339"},
		{[]string{"archive", "export", "--chat", "../../etc", "--until", until, ddA}, "not a chat id"},
		{[]string{"archive", "import", ddA}, "chat"},
		{[]string{"archive", "exprot", ddA}, "unknown command"},
	} {
		if r := runChatd(t, nil, bad.args...); r.code == 0 || !strings.Contains(r.stderr, bad.want) {
			t.Errorf("want a failure mentioning %q: %v", bad.want, r)
		}
	}

	r := runChatd(t, nil, "archive", "export", "--chat", g.Chat, "--until", until, ddA)
	var exp struct{ Segments, Messages int }
	if err := json.Unmarshal([]byte(r.stdout), &exp); r.code != 0 || err != nil || exp.Messages != 7 || exp.Segments != 1 {
		t.Fatalf("export: want 7 messages in 1 segment: %v", r)
	}
	manifest := filepath.Join(cfgA.DataDir, "blobs")
	// The fs blob store lives in the data dir; two nodes on S3 would share
	// the bucket instead.
	copyDir(t, manifest, filepath.Join(dirB, "blobs"))

	var imp struct{ Segments, Imported, Skipped int }
	r = runChatd(t, nil, "archive", "import", "--chat", g.Chat, ddB)
	if err := json.Unmarshal([]byte(r.stdout), &imp); r.code != 0 || err != nil || imp.Imported != 6 || imp.Skipped != 1 {
		t.Fatalf("import: want 6 imported and the one already there skipped: %v", r)
	}
	r = runChatd(t, nil, "archive", "import", "--chat", g.Chat, ddB)
	if err := json.Unmarshal([]byte(r.stdout), &imp); r.code != 0 || err != nil || imp.Imported != 0 || imp.Skipped != 7 {
		t.Fatalf("import again: want all 7 skipped: %v", r)
	}

	cfgB := testConfig(t)
	cfgB.DataDir = dirB
	sB, _ := startManual(t, cfgB)
	if got := fullHistory(t, sB, alice.Token, g.Chat); !reflect.DeepEqual(got, want) {
		t.Fatalf("history on the restored node differs\n got %v\nwant %v", got, want)
	}
	// The restored chat goes on where it ended.
	var sent struct{ Seq uint64 }
	if st := sB.call(t, "POST", "/v1/chats/"+g.Chat+"/messages", alice.Token, map[string]any{"type": "text", "body": "after"}, map[string]string{"Idempotency-Key": "after"}, &sent); st != http.StatusCreated || sent.Seq != 8 {
		t.Fatalf("send after the restore: %d seq %d, want 201 seq 8", st, sent.Seq)
	}
}

// fullHistory is every message of chat as GET .../messages shows it, every
// field included.
func fullHistory(t *testing.T, s *server, token, chat string) []map[string]any {
	t.Helper()
	var page struct {
		Messages []map[string]any `json:"messages"`
	}
	if st := s.call(t, "GET", "/v1/chats/"+chat+"/messages?limit=100", token, nil, nil, &page); st != http.StatusOK {
		t.Fatalf("history %s: %d", chat, st)
	}
	return page.Messages
}

// copyDir copies the regular files and directories under src into dst,
// keeping their modes; the node owning src must be stopped.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case !info.Mode().IsRegular():
			return nil // the admin socket
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// TestArchiveRoundTrip runs the real binary through the whole cycle on one
// data dir: a chat's history is exported, retention purges every message
// from the live store, and importing the export brings back exactly the
// history there was.
func TestArchiveRoundTrip(t *testing.T) {
	dir := t.TempDir()
	// Groups take their members at once, as in every other test but the
	// invitation one.
	opts := procOpts{args: []string{"--retention.interval=20ms", "--limits.group_invites=auto"}}
	p := startChatdWith(t, "chatd", dir, opts)
	s := p.server()
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "kept", "members": []string{bob.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	var last uint64
	for i, a := range []account{alice, bob, alice, bob} {
		last = s.sendREST(t, a, g.Chat, fmt.Sprintf("<line> %d & \"quoted\"", i))
	}
	if st := s.call(t, "PATCH", "/v1/chats/"+g.Chat+"/messages/"+fmt.Sprint(last), bob.Token, map[string]any{"body": "last, edited", "cmid": "e-last"}, nil, nil); st != http.StatusOK {
		t.Fatalf("edit: %d", st)
	}
	want := fullHistory(t, s, bob.Token, g.Chat)
	if len(want) < 5 {
		t.Fatalf("history before the export holds %d messages, want the creation and 4 sends", len(want))
	}
	// The edit is a message of its own, so the chat ends past the sends.
	for _, m := range want {
		if seq, _ := m["seq"].(float64); uint64(seq) > last {
			last = uint64(seq)
		}
	}
	p.stop(t)

	dd := "--data_dir=" + dir
	r := runChatd(t, nil, "archive", "export", "--chat", g.Chat, "--until", time.Now().Add(time.Minute).UTC().Format(time.RFC3339), dd)
	var exp struct{ Segments, Messages int }
	if err := json.Unmarshal([]byte(r.stdout), &exp); r.code != 0 || err != nil || exp.Messages != len(want) {
		t.Fatalf("export: want %d messages: %v", len(want), r)
	}

	// Retention empties the live store; then the chat goes back to
	// keeping everything, so what is imported stays.
	p = startChatdWith(t, "chatd (purging)", dir, opts)
	s = p.server()
	if st, _ := s.putRetention(t, alice, g.Chat, 1); st != http.StatusOK {
		t.Fatalf("PUT retention: %d", st)
	}
	eventually(t, "every message purged", func() error {
		if h := s.retentionHistory(t, bob, g.Chat); len(h.Messages) != 0 || h.FirstSeq != last+1 {
			return fmt.Errorf("history holds %d messages, first_seq %d; want none, %d", len(h.Messages), h.FirstSeq, last+1)
		}
		return nil
	})
	if st, _ := s.putRetention(t, alice, g.Chat, 0); st != http.StatusOK {
		t.Fatalf("PUT retention back to the default: %d", st)
	}
	p.stop(t)

	r = runChatd(t, nil, "archive", "import", "--chat", g.Chat, dd)
	var imp struct{ Segments, Imported, Skipped int }
	if err := json.Unmarshal([]byte(r.stdout), &imp); r.code != 0 || err != nil || imp.Imported != len(want) || imp.Skipped != 0 {
		t.Fatalf("import: want %d imported, none skipped: %v", len(want), r)
	}

	p = startChatdWith(t, "chatd (restored)", dir, opts)
	s = p.server()
	if got := fullHistory(t, s, bob.Token, g.Chat); !reflect.DeepEqual(got, want) {
		t.Fatalf("history after export, purge and import differs\n got %v\nwant %v", got, want)
	}
	if h := s.retentionHistory(t, bob, g.Chat); h.FirstSeq != 1 {
		t.Fatalf("first_seq after the import: %d, want 1", h.FirstSeq)
	}
	p.stop(t)
}
