package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestBackupUnderLoadRestores: senders pipeline messages while `chatd
// backup` runs against the serving process; the backup is restored into a
// fresh data dir and a server started on it has every message acknowledged
// before the backup began, the attachment blob uploaded before it, accepts
// the old tokens (the JWT secret came along) and continues the seqs.
func TestBackupUnderLoadRestores(t *testing.T) {
	const (
		devices   = 2
		perDevice = 4 // concurrent publishers on each connection
		before    = 200
	)
	dataDir := t.TempDir()
	p := startChatd(t, "chatd", dataDir)
	s := p.server()
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	chat := directChat(alice.ID, bob.ID)
	sendTopic := "users/" + alice.ID + "/send"

	blobData := []byte("a file that must survive the backup\n")
	att := uploadRaw(t, s, alice, blobData, "text/plain").attachment(t)
	first := dialV5(t, tcpConn(t, p.mqttAddr), alice, "first")
	if rc, err := first.publish(t, sendTopic, attachmentEnvelope(bob.ID, "with-file", "file", att.ID)); err != nil || rc != 0 {
		t.Fatalf("send the attachment: reason 0x%02x, %v", rc, err)
	}

	var (
		mu       sync.Mutex
		ackedAt  = map[string]time.Time{"with-file": time.Now()}
		refused  []string
		ackCount atomic.Int64
		// ackTick is signalled (never blocking a sender) after each ack, so
		// waitAcks wakes on progress rather than on a timer.
		ackTick = make(chan struct{}, 1)
	)
	sendCtx, stopSending := context.WithCancel(context.Background())
	defer stopSending()
	var wg sync.WaitGroup
	for d := range devices {
		c := dialV5(t, tcpConn(t, p.mqttAddr), alice, fmt.Sprintf("dev%d", d))
		for g := range perDevice {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; sendCtx.Err() == nil; i++ {
					cmid := fmt.Sprintf("d%d-g%d-%d", d, g, i)
					ctx, cancel := context.WithTimeout(sendCtx, waitTimeout)
					resp, err := c.c.Publish(ctx, &paho.Publish{Topic: sendTopic, QoS: 1, Payload: envelope(bob.ID, cmid, cmid)})
					cancel()
					if err != nil || resp == nil {
						return
					}
					at := time.Now()
					mu.Lock()
					if resp.ReasonCode != 0 {
						refused = append(refused, fmt.Sprintf("%s: reason 0x%02x", cmid, resp.ReasonCode))
					} else {
						ackedAt[cmid] = at
					}
					mu.Unlock()
					ackCount.Add(1)
					select {
					case ackTick <- struct{}{}:
					default:
					}
				}
			}()
		}
	}
	waitAcks := func(n int64, what string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for ackCount.Load() < n {
			select {
			case <-ackTick:
			case <-timeout:
				t.Fatalf("%s: only %d sends acknowledged after 30s", what, ackCount.Load())
			}
		}
	}
	waitAcks(before, "before the backup")

	backupDir := filepath.Join(t.TempDir(), "backup")
	backupStart := time.Now()
	r := runChatd(t, nil, "backup", "--to", backupDir, "--data_dir="+dataDir)
	if r.code != 0 {
		t.Fatalf("backup while serving: %v", r)
	}
	if strings.Contains(r.stderr, "directly") {
		t.Fatalf("backup did not go through the running server: %v", r)
	}
	var man struct {
		Store     bool `json:"store"`
		BlobFiles int  `json:"blob_files"`
		JWTSecret bool `json:"jwt_secret"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &man); err != nil || !man.Store || man.BlobFiles == 0 || !man.JWTSecret {
		t.Fatalf("backup manifest %q (%v): want the store, blob files and the JWT secret", r.stdout, err)
	}
	// The server kept serving: sends are acknowledged after the backup too.
	waitAcks(ackCount.Load()+50, "after the backup")
	stopSending()
	wg.Wait()
	p.stop(t)
	mu.Lock()
	defer mu.Unlock()
	if len(refused) > 0 {
		t.Fatalf("valid sends were refused: %v", refused)
	}

	// A backup refuses a non-empty target, and so does a restore.
	if r := runChatd(t, nil, "backup", "--to", backupDir, "--data_dir="+dataDir); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("backup into a non-empty dir: %v", r)
	}
	if r := runChatd(t, nil, "restore", "--from", backupDir, "--data_dir", dataDir); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("restore over the old data dir: %v", r)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	if r := runChatd(t, nil, "restore", "--from", backupDir, "--data_dir", restored); r.code != 0 {
		t.Fatalf("restore: %v", r)
	}
	if _, err := os.Stat(filepath.Join(restored, "store")); err != nil {
		t.Fatalf("restored data dir has no store: %v", err)
	}

	p2 := startChatd(t, "chatd (restored)", restored)
	s2 := p2.server()
	var msgs []inboxMsg
	page := s2.history(t, bob, chat, "?after=0&limit=200")
	for pages := 1; ; pages++ {
		msgs = append(msgs, page.Messages...)
		if page.Next == nil {
			break
		}
		if pages > len(ackedAt)/200+2 {
			t.Fatalf("history paging does not end: %d pages", pages)
		}
		page = s2.history(t, bob, chat, fmt.Sprintf("?after=%d&limit=200", *page.Next))
	}
	seen := make(map[string]bool, len(msgs))
	for i, m := range msgs {
		if want := uint64(i + 1); m.Seq != want {
			t.Fatalf("restored history position %d holds seq %d, want %d", i, m.Seq, want)
		}
		seen[m.CMID] = true
	}
	var lost []string
	beforeBackup := 0
	for cmid, at := range ackedAt {
		if !at.Before(backupStart) {
			continue
		}
		beforeBackup++
		if !seen[cmid] {
			lost = append(lost, cmid)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d sends acknowledged before the backup began are missing after the restore, e.g. %v",
			len(lost), beforeBackup, lost[:min(len(lost), 10)])
	}
	if beforeBackup < before {
		t.Fatalf("only %d sends acknowledged before the backup: the test proves little", beforeBackup)
	}
	t.Logf("restored seqs 1..%d; %d acknowledged before the backup, %d in all", len(msgs), beforeBackup, len(ackedAt))

	got := rawHTTP(t, s2, "GET", "/v1/attachments/"+att.ID, bearer(bob.Token), "")
	if got.status != http.StatusOK || !bytes.Equal(got.body, blobData) {
		t.Fatalf("attachment after restore: status %d, body %q", got.status, got.body)
	}

	bobPhone := dialV5(t, tcpConn(t, p2.mqttAddr), bob, "phone")
	bobPhone.subscribe(t, "users/"+bob.ID+"/inbox")
	aliceNew := dialV5(t, tcpConn(t, p2.mqttAddr), alice, "after-restore")
	aliceNew.send(t, bob.ID, "after-restore", "after restore")
	m := bobPhone.box.next(t, "bob's copy of the first send after the restore", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
	if m.CMID != "after-restore" || m.Seq != uint64(len(msgs))+1 || m.Chat != chat {
		t.Fatalf("first send after restore delivered as %s seq %d in %s, want seq %d in %s", m.CMID, m.Seq, m.Chat, len(msgs)+1, chat)
	}
}
