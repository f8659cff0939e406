package e2e

// The operator's command line, run as the real binary: what it prints,
// which data dir it works on, and how it refuses.

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/internal/freeport"
)

// TestCLI: each case is one thing the command line got wrong: no version,
// every server flag in every subcommand's help, no paging for user list,
// a new ./data made silently when run from elsewhere, a data dir held by a
// running server reported as "resource temporarily unavailable", a taken
// port reported after a screen of logs, config problems one at a time.
func TestCLI(t *testing.T) {
	// One server for the cases that need one running.
	dataDir := t.TempDir()
	p := startChatd(t, "chatd", dataDir)
	dd := "--data_dir=" + dataDir
	sock := filepath.Join(dataDir, "admin.sock")
	var ids []string
	for _, name := range []string{"carol", "dave", "erin"} {
		r := runChatd(t, nil, "user", "create", name, "--password", "long enough pw", dd)
		var u struct {
			UserID string `json:"user_id"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &u); r.code != 0 || err != nil || u.UserID == "" {
			t.Fatalf("create %s: %v", name, r)
		}
		ids = append(ids, u.UserID)
	}

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"version", func(t *testing.T) {
			v := runChatd(t, nil, "version")
			if v.code != 0 || !strings.HasPrefix(v.stdout, "chatd ") || strings.Count(v.stdout, "\n") != 1 || !strings.Contains(v.stdout, " go1.") {
				t.Fatalf("want exit 0 and one line \"chatd <version> ... go1.x os/arch\": %v", v)
			}
			if rev := builtRevision(t); rev != "" && !strings.Contains(v.stdout, rev) {
				t.Fatalf("the binary was built from commit %s, which version does not show: %v", rev, v)
			}
			if f := runChatd(t, nil, "--version"); f.code != 0 || f.stdout != v.stdout {
				t.Fatalf("--version differs from version (%q): %v", v.stdout, f)
			}
		}},
		{"subcommands show only their own flags", func(t *testing.T) {
			help := []struct {
				args          []string
				want, notWant []string
			}{
				{[]string{"user", "create", "--help"}, []string{"--password", "--create", "--data_dir", "--config"}, []string{"--mqtt.addr", "--limits."}},
				{[]string{"user", "list", "--help"}, []string{"--limit", "--after", "--format", "--data_dir"}, []string{"--http.addr", "--push."}},
				{[]string{"migrate", "up", "--help"}, []string{"--store.postgres.dsn"}, []string{"--mqtt.addr", "--data_dir"}},
				{[]string{"serve", "--help"}, []string{"--mqtt.addr", "--http.addr", "--data_dir", "--limits.send_rate"}, nil},
				{[]string{"backup", "--help"}, []string{"--to", "--data_dir", "--config"}, []string{"--mqtt.addr", "--limits."}},
				{[]string{"restore", "--help"}, []string{"--from", "--data_dir"}, []string{"--mqtt.addr", "--limits."}},
			}
			for _, h := range help {
				r := runChatd(t, nil, h.args...)
				for _, w := range h.want {
					if r.code != 0 || !strings.Contains(r.stdout, w) {
						t.Errorf("want exit 0 and %s in the help: %v", w, r)
					}
				}
				for _, w := range h.notWant {
					if strings.Contains(r.stdout, w) {
						t.Errorf("the help shows the server's %s: %v", w, r)
					}
				}
			}
			// Hidden is not gone: a setting given to a user command still counts.
			if r := runChatd(t, nil, "user", "list", dd, "--auth.bcrypt_cost=4"); r.code != 0 {
				t.Errorf("user list with a server setting: %v", r)
			}
		}},
		{"user list pages through the running server", func(t *testing.T) {
			first := listUsers(t, "--limit", "2", dd)
			if len(first) != 2 || first[0] >= first[1] {
				t.Fatalf("--limit 2: got %v, want two of %v in id order", first, ids)
			}
			rest := listUsers(t, "--after", first[1], dd)
			all := append(first, rest...)
			if len(all) != 3 || !sameSet(all, ids) {
				t.Fatalf("--limit 2 then --after %s: got %v, want each of %v once", first[1], all, ids)
			}
			if r := runChatd(t, nil, "user", "list", "--limit", "-1", dd); r.code == 0 {
				t.Fatalf("--limit -1 accepted: %v", r)
			}
		}},
		{"user create from another directory refuses to make ./data", func(t *testing.T) {
			cwd := t.TempDir()
			r := runChatdIn(t, cwd, nil, "user", "create", "zed", "--password", "long enough pw")
			want := "no running server at " + filepath.Join(cwd, "data")
			if r.code == 0 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "--create") {
				t.Fatalf("want a refusal saying %q and naming --create: %v", want, r)
			}
			if _, err := os.Stat(filepath.Join(cwd, "data")); !os.IsNotExist(err) {
				t.Fatalf("a data dir was created (stat: %v)", err)
			}
			for _, args := range [][]string{{"user", "token", "zed"}, {"user", "list"}} {
				if r := runChatdIn(t, cwd, nil, args...); r.code == 0 || !strings.Contains(r.stderr, want) {
					t.Errorf("want a refusal saying %q: %v", want, r)
				}
			}
			if _, err := os.Stat(filepath.Join(cwd, "data")); !os.IsNotExist(err) {
				t.Fatalf("a data dir was created (stat: %v)", err)
			}
		}},
		{"user create --create makes a new data dir and says so", func(t *testing.T) {
			cwd := t.TempDir()
			r := runChatdIn(t, cwd, nil, "user", "create", "zed", "--password", "long enough pw", "--create")
			if r.code != 0 || !strings.Contains(r.stderr, "creating "+filepath.Join(cwd, "data")) {
				t.Fatalf("want exit 0 and a line saying the data dir is created: %v", r)
			}
			if l := runChatdIn(t, cwd, nil, "user", "list", "--format", "json"); l.code != 0 || !strings.Contains(l.stdout, `"zed"`) {
				t.Fatalf("the new data dir does not hold zed: %v", l)
			}
		}},
		{"second server on a held data dir", func(t *testing.T) {
			r := runChatd(t, nil, "serve", dd, "--mqtt.addr", "127.0.0.1:0", "--mqtt.ws_addr=", "--http.addr", "127.0.0.1:0", "--log.level", "info")
			assertOneLine(t, r, dataDir, sock, "running chatd server")
		}},
		{"CLI on a held data dir whose socket is gone", func(t *testing.T) {
			moved := filepath.Join(dataDir, "admin.sock.moved")
			if err := os.Rename(sock, moved); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := os.Rename(moved, sock); err != nil {
					t.Fatal(err)
				}
			}()
			r := runChatd(t, nil, "user", "list", dd)
			assertOneLine(t, r, dataDir, sock, "no server answers")
		}},
		{"taken port", func(t *testing.T) {
			busy, err := freeport.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			addr := busy.Addr().String()
			_, port, _ := net.SplitHostPort(addr)
			for _, key := range []string{"mqtt.addr", "mqtt.ws_addr", "http.addr"} {
				t.Run(key, func(t *testing.T) {
					fresh := filepath.Join(t.TempDir(), "data")
					flags := map[string]string{"mqtt.addr": "127.0.0.1:0", "mqtt.ws_addr": "127.0.0.1:0", "http.addr": "127.0.0.1:0"}
					flags[key] = addr
					args := []string{"serve", "--data_dir", fresh, "--log.level", "debug"}
					for k, v := range flags {
						args = append(args, "--"+k+"="+v)
					}
					r := runChatd(t, nil, args...)
					assertOneLine(t, r, key, port, "already in use")
					if _, err := os.Stat(fresh); !os.IsNotExist(err) {
						t.Errorf("the data dir was created before the port check (stat: %v)", err)
					}
				})
			}
		}},
		{"every config problem at once", func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "chatd.yaml")
			if err := os.WriteFile(cfg, []byte("mqtt:\n  adr: \":1\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := runChatd(t, []string{"MQCHAT_LOG_LEVEL=loud"}, "serve", "--config", cfg,
				"--data_dir", filepath.Join(t.TempDir(), "data"), "--node_id=5000", "--mqtt.ws_path=mqtt")
			for _, key := range []string{`"mqtt.adr"`, `"log.level"`, `"node_id"`, `"mqtt.ws_path"`} {
				if r.code == 0 || !strings.Contains(r.stderr, key) {
					t.Errorf("want a non-zero exit naming %s: %v", key, r)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}

	// With the server stopped the CLI opens the data dir itself, and says
	// so before it does.
	p.stop(t)
	r := runChatd(t, nil, "user", "list", "--format", "json", dd)
	if want := "no running server at " + dataDir + "; opening " + dataDir + " directly"; r.code != 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("want exit 0 and %q on stderr: %v", want, r)
	}
	if got := listUsers(t, dd); !sameSet(got, ids) {
		t.Fatalf("user list with the server stopped: %v, want %v", got, ids)
	}
}

// listUsers runs `chatd user list --format json` with args and returns the
// user ids in the order printed.
func listUsers(t *testing.T, args ...string) []string {
	t.Helper()
	r := runChatd(t, nil, append([]string{"user", "list", "--format", "json"}, args...)...)
	var users []struct {
		UserID string `json:"user_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &users); r.code != 0 || err != nil {
		t.Fatalf("user list (%v): %v", err, r)
	}
	out := make([]string, 0, len(users))
	for _, u := range users {
		out = append(out, u.UserID)
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s]--; seen[s] < 0 {
			return false
		}
	}
	return true
}

// assertOneLine requires a failed run whose whole stderr is one line
// containing each of want.
func assertOneLine(t *testing.T, r cliResult, want ...string) {
	t.Helper()
	if r.code == 0 || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("want a non-zero exit with one line on stderr: %v", r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("the line does not say %q: %v", w, r)
		}
	}
	if strings.Contains(r.stderr, "resource temporarily unavailable") {
		t.Errorf("the line is the store's lock error: %v", r)
	}
}

// builtRevision is the commit recorded in the test binary's chatd, "" when
// the build recorded none (-buildvcs=false, or no git).
func builtRevision(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", chatdBinary(t)).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision=") {
			return strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	return ""
}
