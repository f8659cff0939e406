package deploy_test

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestSystemdUnit: the unit keeps the data dir private to chatd's user
// from the moment systemd creates it (StateDirectory= alone makes it 0755),
// and runs chatd as that user on that dir.
func TestSystemdUnit(t *testing.T) {
	f, err := os.Open("chatd.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string][]string{} // "Section.Key" -> values
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
				t.Fatalf("chatd.service: line %q is neither a section nor a key", line)
			}
			got[section+"."+k] = append(got[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Service.User":               "chatd",
		"Service.StateDirectory":     "chatd",
		"Service.StateDirectoryMode": "0700",
		"Service.UMask":              "0077",
	}
	for k, v := range want {
		if vs := got[k]; len(vs) != 1 || vs[0] != v {
			t.Errorf("chatd.service: %s = %q, want exactly %q", k, vs, v)
		}
	}
	// The state directory systemd secures must be the data dir chatd uses.
	if env := strings.Join(got["Service.Environment"], " "); !strings.Contains(env, "MQCHAT_DATA_DIR=/var/lib/chatd") {
		t.Errorf("chatd.service: Environment %q does not point MQCHAT_DATA_DIR at /var/lib/chatd (StateDirectory=chatd)", env)
	}
}
