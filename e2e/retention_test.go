package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/config"
)

type retentionView struct {
	Seconds          int64 `json:"seconds"`
	EffectiveSeconds int64 `json:"effective_seconds"`
}

type retentionPage struct {
	Messages []inboxMsg `json:"messages"`
	Next     *uint64    `json:"next"`
	FirstSeq uint64     `json:"first_seq"`
}

type retentionSummary struct {
	Chat     string `json:"chat"`
	LastSeq  uint64 `json:"last_seq"`
	FirstSeq uint64 `json:"first_seq"`
	Unread   uint64 `json:"unread"`
}

func (s *server) putRetention(t *testing.T, a account, chat string, seconds int64) (int, retentionView) {
	t.Helper()
	var v retentionView
	st := s.call(t, "PUT", "/v1/chats/"+chat+"/retention", a.Token, map[string]int64{"seconds": seconds}, nil, &v)
	return st, v
}

func (s *server) sendREST(t *testing.T, a account, chat, body string) uint64 {
	t.Helper()
	var res struct {
		Seq uint64 `json:"seq"`
	}
	if st := s.call(t, "POST", "/v1/chats/"+chat+"/messages", a.Token, map[string]any{"type": "text", "body": body},
		map[string]string{"Idempotency-Key": fmt.Sprintf("rt-%d", time.Now().UnixNano())}, &res); st != http.StatusCreated {
		t.Fatalf("send to %s: status %d", chat, st)
	}
	return res.Seq
}

func (s *server) retentionHistory(t *testing.T, a account, chat string) retentionPage {
	t.Helper()
	var p retentionPage
	if st := s.call(t, "GET", "/v1/chats/"+chat+"/messages?after=0", a.Token, nil, nil, &p); st != http.StatusOK {
		t.Fatalf("history %s: status %d", chat, st)
	}
	return p
}

func (s *server) summaryOf(t *testing.T, a account, chat string) retentionSummary {
	t.Helper()
	var list struct {
		Chats []retentionSummary `json:"chats"`
	}
	if st := s.call(t, "GET", "/v1/chats", a.Token, nil, nil, &list); st != http.StatusOK {
		t.Fatalf("chat list: status %d", st)
	}
	for _, c := range list.Chats {
		if c.Chat == chat {
			return c
		}
	}
	t.Fatalf("chat %s not in %s's list", chat, a.Username)
	return retentionSummary{}
}

// TestRetentionGroup: a group's owner sets a short retention; expired
// messages leave history, the chat list and history report the first seq
// still stored, newer messages stay, and seqs go on after a purge that
// emptied the chat. A plain member may read the setting but not change it.
func TestRetentionGroup(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Retention.Interval = 20 * time.Millisecond })
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	var g struct {
		Chat string `json:"chat"`
	}
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "short", "members": []string{bob.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	if st, _ := s.putRetention(t, bob, g.Chat, 1); st != http.StatusForbidden {
		t.Fatalf("plain member PUT retention: %d, want 403", st)
	}
	var v retentionView
	if st := s.call(t, "GET", "/v1/chats/"+g.Chat+"/retention", bob.Token, nil, nil, &v); st != http.StatusOK || v != (retentionView{}) {
		t.Fatalf("member GET retention = %d %+v, want 200 and nothing set", st, v)
	}
	const period = 2
	if st, v := s.putRetention(t, alice, g.Chat, period); st != http.StatusOK || v != (retentionView{period, period}) {
		t.Fatalf("owner PUT retention = %d %+v", st, v)
	}

	s.sendREST(t, alice, g.Chat, "old one")
	last := s.sendREST(t, bob, g.Chat, "old two")
	eventually(t, "every message purged", func() error {
		if p := s.retentionHistory(t, alice, g.Chat); len(p.Messages) != 0 || p.FirstSeq != last+1 {
			return fmt.Errorf("history holds %d messages, first_seq %d; want none, %d", len(p.Messages), p.FirstSeq, last+1)
		}
		return nil
	})
	if sum := s.summaryOf(t, bob, g.Chat); sum.LastSeq != last || sum.FirstSeq != last+1 || sum.Unread != 0 {
		t.Fatalf("emptied chat in the list: %+v, want last_seq %d, first_seq %d, unread 0", sum, last, last+1)
	}

	// A message sent now is kept (for the period) and continues the seqs.
	fresh := s.sendREST(t, alice, g.Chat, "fresh")
	if fresh != last+1 {
		t.Fatalf("seq after the purge = %d, want %d", fresh, last+1)
	}
	p := s.retentionHistory(t, bob, g.Chat)
	if len(p.Messages) != 1 || p.Messages[0].Seq != fresh || p.FirstSeq != fresh || p.Next != nil {
		t.Fatalf("history after a fresh send: %+v, want only seq %d, first_seq %d", p, fresh, fresh)
	}
	if sum := s.summaryOf(t, bob, g.Chat); sum.LastSeq != fresh || sum.FirstSeq != fresh || sum.Unread != 1 {
		t.Fatalf("chat list after a fresh send: %+v, want last %d, first %d, unread 1", sum, fresh, fresh)
	}
	eventually(t, "the fresh message purged in turn", func() error {
		if p := s.retentionHistory(t, bob, g.Chat); len(p.Messages) != 0 || p.FirstSeq != fresh+1 {
			return fmt.Errorf("history holds %d messages, first_seq %d", len(p.Messages), p.FirstSeq)
		}
		return nil
	})
}

// TestRetentionDirect: in a 1:1 chat each member sets their own side and
// the shorter one applies to both; an outsider sees no such chat.
func TestRetentionDirect(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Retention.Interval = 20 * time.Millisecond })
	alice, bob, eve := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "eve")
	chat := directChat(alice.ID, bob.ID)
	old := s.sendREST(t, alice, chat, "hello")

	if st, v := s.putRetention(t, alice, chat, 3600); st != http.StatusOK || v != (retentionView{3600, 3600}) {
		t.Fatalf("alice PUT = %d %+v", st, v)
	}
	if st, v := s.putRetention(t, bob, chat, 1); st != http.StatusOK || v != (retentionView{1, 1}) {
		t.Fatalf("bob PUT = %d %+v, want his 1s in force", st, v)
	}
	var v retentionView
	if st := s.call(t, "GET", "/v1/chats/"+chat+"/retention", alice.Token, nil, nil, &v); st != http.StatusOK || v != (retentionView{3600, 1}) {
		t.Fatalf("alice GET = %d %+v, want her 3600s and bob's shorter 1s in force", st, v)
	}
	if st, _ := s.putRetention(t, eve, chat, 1); st != http.StatusNotFound {
		t.Fatalf("outsider PUT = %d, want 404", st)
	}
	eventually(t, "the shorter side's period applied", func() error {
		if p := s.retentionHistory(t, alice, chat); len(p.Messages) != 0 || p.FirstSeq != old+1 {
			return fmt.Errorf("history holds %d messages, first_seq %d", len(p.Messages), p.FirstSeq)
		}
		return nil
	})
}

// TestRetentionArchived: with archive.enabled the purger writes what it
// purges to the blob store first, and history below the live range reads
// it back: the chat's messages stay readable while the live store drops
// them.
func TestRetentionArchived(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Retention.Interval = 20 * time.Millisecond
		c.Archive.Enabled = true
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	var g struct {
		Chat string `json:"chat"`
	}
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "archived", "user_ids": []string{bob.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	if st, _ := s.putRetention(t, alice, g.Chat, 1); st != http.StatusOK {
		t.Fatalf("PUT retention: %d", st)
	}
	bodies := []string{"first words", "second words", "third words"}
	var last uint64
	for _, b := range bodies {
		last = s.sendREST(t, alice, g.Chat, b)
	}
	eventually(t, "the messages purged from the live store", func() error {
		if sum := s.summaryOf(t, bob, g.Chat); sum.FirstSeq != last+1 {
			return fmt.Errorf("chat list first_seq %d, want %d", sum.FirstSeq, last+1)
		}
		return nil
	})
	p := s.retentionHistory(t, bob, g.Chat)
	var got []string
	for _, m := range p.Messages {
		var text string
		if json.Unmarshal(m.Body, &text) == nil {
			got = append(got, text)
		}
	}
	if !slices.Equal(got, bodies) {
		t.Fatalf("history after the purge read %q, want the archived %q", got, bodies)
	}
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, "blobs")); err != nil {
		t.Fatalf("no blob store in the data dir: %v", err)
	}
}

// TestRetentionAttachments: a group's image message past its retention
// period goes, and so does its attachment (the download answers 404 and
// the blob store no longer holds its objects), while an image message
// within the period keeps both; on every blob backend.
func TestRetentionAttachments(t *testing.T) { onBlobBackends(t, testRetentionAttachments) }

func testRetentionAttachments(t *testing.T, onBackend func(*config.Config)) {
	s := startServer(t, func(c *config.Config) {
		onBackend(c)
		c.Retention.Interval = 20 * time.Millisecond
	})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "ephemeral", "members": []string{bob.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	const period = 4 * time.Second
	if st, _ := s.putRetention(t, alice, g.Chat, int64(period/time.Second)); st != http.StatusOK {
		t.Fatalf("PUT retention: %d", st)
	}
	sendImage := func(cmid string) (attachmentMeta, uint64, time.Time) {
		meta := uploadRaw(t, s, alice, testPNG(t, 32, 32, cmid), "image/png").attachment(t)
		var res struct{ Seq uint64 }
		sent := time.Now()
		if st := s.call(t, "POST", "/v1/chats/"+g.Chat+"/messages", alice.Token,
			map[string]any{"type": "image", "body": map[string]string{"attachment": meta.ID}},
			map[string]string{"Idempotency-Key": cmid}, &res); st != http.StatusCreated {
			t.Fatalf("send %s: %d", cmid, st)
		}
		return meta, res.Seq, sent
	}
	old, _, oldSent := sendImage("old")
	// The second message must be younger by a good part of the period, so
	// that it is still within it when the first one expires: this wait is
	// the test's input (two ages), not a synchronisation.
	time.Sleep(time.Until(oldSent.Add(period / 2)))
	fresh, freshSeq, _ := sendImage("fresh")
	if n := countBlobs(t, s.cfg, "attachments/"+old.ID); n != 2 {
		t.Fatalf("objects of the old upload before the purge: %d, want 2", n)
	}

	eventually(t, "the old message and its attachment purged", func() error {
		if p := s.retentionHistory(t, bob, g.Chat); p.FirstSeq != freshSeq {
			return fmt.Errorf("first_seq %d, want %d", p.FirstSeq, freshSeq)
		}
		if r := rawHTTP(t, s, "GET", "/v1/attachments/"+old.ID, bearer(bob.Token), ""); r.status != http.StatusNotFound {
			return fmt.Errorf("old attachment: status %d", r.status)
		}
		if n := countBlobs(t, s.cfg, "attachments/"+old.ID); n != 0 {
			return fmt.Errorf("%d objects of the old upload left", n)
		}
		return nil
	})
	// Within the period: untouched.
	p := s.retentionHistory(t, bob, g.Chat)
	if len(p.Messages) != 1 || p.Messages[0].Seq != freshSeq || p.FirstSeq != freshSeq {
		t.Fatalf("history after the purge: %+v, want only seq %d", p, freshSeq)
	}
	r := rawHTTP(t, s, "GET", "/v1/attachments/"+fresh.ID, bearer(bob.Token), "")
	if r.status != http.StatusOK || sha256Hex(r.body) != fresh.SHA256 {
		t.Fatalf("the fresh attachment: status %d, sha256 %s, want %s", r.status, sha256Hex(r.body), fresh.SHA256)
	}
	if n := countBlobs(t, s.cfg, "attachments/"+fresh.ID); n != 2 {
		t.Fatalf("objects of the fresh upload: %d, want 2", n)
	}
	if sum := s.summaryOf(t, bob, g.Chat); sum.FirstSeq != freshSeq {
		t.Fatalf("chat list first_seq %d, want %d", sum.FirstSeq, freshSeq)
	}
}
