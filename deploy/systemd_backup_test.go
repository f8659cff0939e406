package deploy_test

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// readUnit parses a systemd unit into "Section.Key" -> values.
func readUnit(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: line %q is neither a section nor a key", name, line)
			}
			got[section+"."+k] = append(got[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSystemdBackupUnits: the backup runs as the server's user on the
// server's data dir and config (otherwise it finds no admin socket and no
// data dir), into a new directory each time, and the timer starts it.
func TestSystemdBackupUnits(t *testing.T) {
	server := readUnit(t, "chatd.service")
	backup := readUnit(t, "chatd-backup.service")
	timer := readUnit(t, "chatd-backup.timer")
	for _, k := range []string{"Service.User", "Service.Group", "Service.UMask"} {
		if s, b := strings.Join(server[k], ","), strings.Join(backup[k], ","); s != b {
			t.Errorf("%s: chatd.service has %q, chatd-backup.service %q", k, s, b)
		}
	}
	if env := strings.Join(backup["Service.Environment"], " "); !strings.Contains(env, "MQCHAT_DATA_DIR=/var/lib/chatd") {
		t.Errorf("chatd-backup.service: Environment %q is not the server's data dir", env)
	}
	exec := strings.Join(backup["Service.ExecStart"], " ")
	for _, want := range []string{"chatd backup", "--config /etc/chatd/chatd.yaml", "--to /var/backups/chatd/$(date"} {
		if !strings.Contains(exec, want) {
			t.Errorf("chatd-backup.service: ExecStart %q lacks %q", exec, want)
		}
	}
	if !strings.Contains(strings.Join(server["Service.ExecStart"], " "), "--config /etc/chatd/chatd.yaml") {
		t.Error("chatd.service no longer reads /etc/chatd/chatd.yaml: update chatd-backup.service with it")
	}
	if got := backup["Service.Type"]; len(got) != 1 || got[0] != "oneshot" {
		t.Errorf("chatd-backup.service: Type %q, want oneshot", got)
	}
	if len(timer["Timer.OnCalendar"]) != 1 || strings.Join(timer["Install.WantedBy"], "") != "timers.target" {
		t.Errorf("chatd-backup.timer: OnCalendar %q, WantedBy %q", timer["Timer.OnCalendar"], timer["Install.WantedBy"])
	}
}
