package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestKill9KeepsEveryAcknowledgedMessage: a PUBACK with reason 0 means the
// message is on disk. Several devices send concurrently; the server is
// SIGKILLed with sends in flight and restarted on the same data dir. Every
// acknowledged message is then in the history exactly once, seqs are 1..max
// without gap or duplicate, dedupe records survived with their messages, and
// the next send continues at max+1.
func TestKill9KeepsEveryAcknowledgedMessage(t *testing.T) {
	const (
		devices      = 4
		perDevice    = 4   // concurrent publishers on each connection
		killAfterAck = 300 // acknowledged sends before the kill
	)
	dataDir := t.TempDir()
	p := startChatd(t, "chatd", dataDir)
	s := p.server()
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	chat := directChat(alice.ID, bob.ID)
	sendTopic := "users/" + alice.ID + "/send"

	var (
		mu        sync.Mutex
		acked     = map[string]bool{} // cmids whose PUBACK had reason 0
		attempted = map[string]bool{}
		refused   []string // PUBACKs with a reason code: never expected here
		ackCount  atomic.Int64
		enough    = make(chan struct{})
		enoughMu  sync.Once
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
					mu.Lock()
					attempted[cmid] = true
					mu.Unlock()
					ctx, cancel := context.WithTimeout(sendCtx, waitTimeout)
					resp, err := c.c.Publish(ctx, &paho.Publish{Topic: sendTopic, QoS: 1, Payload: envelope(bob.ID, cmid, cmid)})
					cancel()
					if resp != nil && resp.ReasonCode != 0 {
						mu.Lock()
						refused = append(refused, fmt.Sprintf("%s: reason 0x%02x", cmid, resp.ReasonCode))
						mu.Unlock()
					}
					if err != nil || resp == nil {
						return // the server is gone (or refused: reported above)
					}
					if resp.ReasonCode == 0 {
						mu.Lock()
						acked[cmid] = true
						mu.Unlock()
						if ackCount.Add(1) >= killAfterAck {
							enoughMu.Do(func() { close(enough) })
						}
					}
				}
			}()
		}
	}
	senders := make(chan struct{})
	go func() { wg.Wait(); close(senders) }()

	select {
	case <-enough:
	case <-senders:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("every sender stopped after %d acknowledged sends; refused: %v", ackCount.Load(), refused)
	case <-time.After(30 * time.Second):
		t.Fatalf("only %d sends acknowledged after 30s", ackCount.Load())
	}
	st := p.kill(t)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("chatd ended with %v, want killed by SIGKILL (did it exit before the kill?)", st)
	}
	stopSending() // publishes still waiting for a PUBACK will never get one
	select {
	case <-senders:
	case <-time.After(waitTimeout):
		t.Fatal("senders did not stop after the server was killed")
	}
	mu.Lock()
	if len(refused) > 0 {
		t.Errorf("valid sends were refused: %v", refused)
	}
	t.Logf("killed after %d acknowledged of %d attempted sends", len(acked), len(attempted))
	mu.Unlock()

	// The killed server left its admin socket behind; the CLI must see that
	// nobody answers on it and open the store itself.
	if r := runChatd(t, nil, "user", "token", "bob", "--data_dir="+dataDir); r.code != 0 || !strings.Contains(r.stdout, bob.ID) {
		t.Fatalf("CLI next to a stale admin socket: %v", r)
	}

	// Same data dir, new ports; jwt.secret in the data dir keeps tokens valid.
	p2 := startChatd(t, "chatd (restarted)", dataDir)
	s2 := p2.server()
	var msgs []inboxMsg
	page := s2.history(t, bob, chat, "?after=0&limit=200")
	for pages := 1; ; pages++ {
		msgs = append(msgs, page.Messages...)
		if page.Next == nil {
			break
		}
		if pages > len(attempted)/200+2 {
			t.Fatalf("history paging does not end: %d pages, %d messages, next %d", pages, len(msgs), *page.Next)
		}
		page = s2.history(t, bob, chat, fmt.Sprintf("?after=%d&limit=200", *page.Next))
	}

	seen := make(map[string]uint64, len(msgs)) // cmid -> seq
	for i, m := range msgs {
		if want := uint64(i + 1); m.Seq != want {
			t.Fatalf("history position %d holds seq %d, want %d (gap or duplicate seq)", i, m.Seq, want)
		}
		if m.Chat != chat || m.From != alice.ID {
			t.Fatalf("seq %d: chat %s from %s, want chat %s from alice", m.Seq, m.Chat, m.From, chat)
		}
		if !attempted[m.CMID] {
			t.Fatalf("seq %d has cmid %q that was never sent", m.Seq, m.CMID)
		}
		if prev, dup := seen[m.CMID]; dup {
			t.Fatalf("cmid %s stored twice: seq %d and %d", m.CMID, prev, m.Seq)
		}
		seen[m.CMID] = m.Seq
	}
	var lost []string
	for cmid := range acked {
		if _, ok := seen[cmid]; !ok {
			lost = append(lost, cmid)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged sends are missing after the restart, e.g. %v", len(lost), len(acked), lost[:min(len(lost), 10)])
	}
	maxSeq := uint64(len(msgs))
	t.Logf("history after restart: seqs 1..%d (%d acknowledged, %d stored without an ack reaching the client)",
		maxSeq, len(acked), len(msgs)-len(acked))

	// The dedupe record of an acknowledged send survived: retrying it stores
	// nothing and reports the original seq.
	var retried string
	for cmid := range acked {
		retried = cmid
		break
	}
	bobPhone := dialV5(t, tcpConn(t, p2.mqttAddr), bob, "phone")
	bobPhone.subscribe(t, "users/"+bob.ID+"/inbox")
	aliceNew := dialV5(t, tcpConn(t, p2.mqttAddr), alice, "after-restart")
	aliceNew.subscribe(t, "users/"+alice.ID+"/events")
	aliceNew.send(t, bob.ID, retried, retried)
	ev := aliceNew.box.next(t, "sent event for the retried cmid", func(r received) bool {
		return r.Topic == "users/"+alice.ID+"/events" && strings.Contains(string(r.Payload), `"`+retried+`"`)
	}).event(t)
	if ev.Type != "sent" || !ev.Duplicate || ev.Seq != seen[retried] || ev.Chat != chat {
		t.Fatalf("retry of acknowledged %s after restart: event %+v, want a duplicate of seq %d", retried, ev, seen[retried])
	}

	aliceNew.send(t, bob.ID, "after-restart", "after restart")
	m := bobPhone.box.next(t, "bob's inbox copy of the send after restart", onTopic("users/"+bob.ID+"/inbox")).inbox(t)
	if m.CMID != "after-restart" || m.Seq != maxSeq+1 || m.Chat != chat {
		t.Fatalf("first new send after restart delivered as %s seq %d in %s, want after-restart seq %d in %s",
			m.CMID, m.Seq, m.Chat, maxSeq+1, chat)
	}
}

// TestOperatorCLIWhileServing: `chatd user ...` reaches the running server
// through the admin socket (the store is locked by the server), its output
// is usable as is, and once the server is stopped the CLI opens the data dir
// itself.
func TestOperatorCLIWhileServing(t *testing.T) {
	dataDir := t.TempDir()
	p := startChatd(t, "chatd", dataDir)
	dd := "--data_dir=" + dataDir

	create := runChatd(t, nil, "user", "create", "carol", "--password", "long enough pw", dd)
	if create.code != 0 {
		t.Fatalf("create carol: %v", create)
	}
	var created struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal([]byte(create.stdout), &created); err != nil || created.UserID == "" || created.Username != "carol" {
		t.Fatalf("create carol: output is not {user_id, username: carol} (%v): %v", err, create)
	}
	if created.Password != "" {
		t.Fatalf("create carol printed the password it was given: %v", create)
	}

	tok := runChatd(t, nil, "user", "token", "carol", "--format", "shell", dd)
	if tok.code != 0 {
		t.Fatalf("token carol: %v", tok)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(tok.stdout), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("token --format shell: line %q is not NAME=value: %v", line, tok)
		}
		vars[k] = v
	}
	userID, token := vars["USER_ID"], vars["TOKEN"]
	if userID != created.UserID || token == "" || len(vars) != 2 {
		t.Fatalf("token --format shell: got %v, want USER_ID=%s and a TOKEN", vars, created.UserID)
	}

	c, ack, err := connectV5(tcpConn(t, p.mqttAddr), userID, token, userID+"/dev1", nil)
	if err != nil || ack == nil || ack.ReasonCode != 0 {
		t.Fatalf("MQTT connect with the CLI's token: %v (connack %+v)", err, ack)
	}
	t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })

	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"create a taken name", []string{"user", "create", "carol", "--password", "another long pw"}, "username is taken"},
		{"token for an unknown user", []string{"user", "token", "nobody"}, "unknown user"},
		{"create with a short password", []string{"user", "create", "dave", "--password", "short"}, "password"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runChatd(t, nil, append(tc.args, dd)...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("want a non-zero exit mentioning %q: %v", tc.want, r)
			}
			if r.stdout != "" {
				t.Fatalf("a failed command printed to stdout: %v", r)
			}
		})
	}

	p.stop(t)
	if _, err := os.Stat(filepath.Join(dataDir, "admin.sock")); !os.IsNotExist(err) {
		t.Errorf("admin socket still present after a graceful shutdown (stat: %v)", err)
	}

	// No server: the CLI opens the store itself.
	offline := runChatd(t, nil, "user", "token", "carol", "--format", "json", dd)
	if offline.code != 0 {
		t.Fatalf("token carol with the server stopped: %v", offline)
	}
	var tokens struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(offline.stdout), &tokens); err != nil || tokens.UserID != userID || tokens.AccessToken == "" {
		t.Fatalf("token --format json: want user_id %s and an access_token (%v): %v", userID, err, offline)
	}

	// A token minted offline is signed with the data dir's secret, so the
	// server accepts it once it is back.
	p2 := startChatd(t, "chatd (restarted)", dataDir)
	var me struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
	}
	if st := p2.server().call(t, "GET", "/v1/me", tokens.AccessToken, nil, nil, &me); st != http.StatusOK || me.UserID != userID || me.Username != "carol" {
		t.Fatalf("GET /v1/me with the offline token: status %d %+v, want 200 for carol (%s)", st, me, userID)
	}
}

// TestConfigErrorsStopStartup: a configuration problem from any layer makes
// `chatd serve` exit non-zero at once, naming the offending key, before it
// touches the data dir.
func TestConfigErrorsStopStartup(t *testing.T) {
	tests := []struct {
		name string
		yaml string   // written to a file passed with --config when set
		env  []string // added to the environment
		args []string // added to the command line
		want string   // in stderr
	}{
		{name: "unknown key in the file", yaml: "mqtt:\n  adr: \":1\"\n", want: "mqtt.adr"},
		{name: "mistyped env value", env: []string{"MQCHAT_LIMITS_MAX_MESSAGE_BYTES=abc"}, want: "limits.max_message_bytes"},
		{name: "unknown env variable", env: []string{"MQCHAT_NOPE=1"}, want: "MQCHAT_NOPE"},
		{name: "invalid env value", env: []string{"MQCHAT_LOG_LEVEL=loud"}, want: "log.level"},
		{name: "mistyped flag value", args: []string{"--limits.max_message_bytes=abc"}, want: "limits.max_message_bytes"},
		{name: "missing config file", yaml: "-", want: "nope.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			dataDir := filepath.Join(tmp, "data")
			args := []string{"serve", "--data_dir", dataDir,
				"--mqtt.addr", "127.0.0.1:0", "--mqtt.ws_addr=", "--http.addr", "127.0.0.1:0"}
			switch tc.yaml {
			case "":
			case "-":
				args = append(args, "--config", filepath.Join(tmp, "nope.yaml"))
			default:
				path := filepath.Join(tmp, "chatd.yaml")
				if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", path)
			}
			r := runChatd(t, tc.env, append(args, tc.args...)...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("want a non-zero exit naming %q: %v", tc.want, r)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("the data dir was created despite the bad configuration (stat: %v)", err)
			}
		})
	}
}
