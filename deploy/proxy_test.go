package deploy_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/testcert"
)

// directive is one nginx directive ("listen 443 ssl;") or block
// ("location = /mqtt { ... }"), or one Caddyfile line or block.
type directive struct {
	name     string
	args     []string
	children []*directive
}

// find returns the children named name whose arguments start with args.
func (d *directive) find(name string, args ...string) []*directive {
	var out []*directive
	for _, c := range d.children {
		if c.name == name && len(c.args) >= len(args) && slices.Equal(c.args[:len(args)], args) {
			out = append(out, c)
		}
	}
	return out
}

// one is find when exactly one child must match.
func (d *directive) one(t *testing.T, name string, args ...string) *directive {
	t.Helper()
	got := d.find(name, args...)
	if len(got) != 1 {
		t.Fatalf("%s %q: %d %s %q blocks, want 1", d.name, d.args, len(got), name, args)
	}
	return got[0]
}

// has reports whether a child directive reads exactly name args....
func (d *directive) has(name string, args ...string) bool {
	return slices.ContainsFunc(d.children, func(c *directive) bool { return c.name == name && slices.Equal(c.args, args) })
}

// parseNginx reads nginx's syntax: words, quoted strings, ";" ending a
// directive, braces around blocks, "#" comments.
func parseNginx(t *testing.T, src string) *directive {
	t.Helper()
	root := &directive{name: "main"}
	stack := []*directive{root}
	var words []string
	flush := func(block bool) {
		if len(words) == 0 {
			t.Fatalf("nginx.conf: an empty directive before %q", map[bool]string{true: "{", false: ";"}[block])
		}
		d := &directive{name: words[0], args: words[1:]}
		top := stack[len(stack)-1]
		top.children = append(top.children, d)
		if block {
			stack = append(stack, d)
		}
		words = nil
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == ';':
			flush(false)
			i++
		case c == '{':
			flush(true)
			i++
		case c == '}':
			if len(words) != 0 || len(stack) == 1 {
				t.Fatalf("nginx.conf: unexpected } after %q", words)
			}
			stack = stack[:len(stack)-1]
			i++
		case c == '\'' || c == '"':
			end := strings.IndexByte(src[i+1:], c)
			if end < 0 {
				t.Fatal("nginx.conf: unterminated quote")
			}
			words = append(words, src[i+1:i+1+end])
			i += end + 2
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n;{}", rune(src[j])) {
				j++
			}
			words = append(words, src[i:j])
			i = j
		}
	}
	if len(stack) != 1 || len(words) != 0 {
		t.Fatalf("nginx.conf: unclosed block or directive (%q)", words)
	}
	return root
}

// parseCaddyfile reads a Caddyfile: one directive a line, a trailing "{"
// opening a block, "}" alone closing it, "#" comments.
func parseCaddyfile(t *testing.T, src string) *directive {
	t.Helper()
	root := &directive{name: "Caddyfile"}
	stack := []*directive{root}
	for n, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if line == "}" {
			if len(stack) == 1 {
				t.Fatalf("Caddyfile:%d: unexpected }", n+1)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		words := strings.Fields(line)
		block := words[len(words)-1] == "{"
		if block {
			words = words[:len(words)-1]
		}
		d := &directive{name: words[0], args: words[1:]}
		top := stack[len(stack)-1]
		top.children = append(top.children, d)
		if block {
			stack = append(stack, d)
		}
	}
	if len(stack) != 1 {
		t.Fatal("Caddyfile: unclosed block")
	}
	return root
}

// chatdPorts are the ports configs/chatd.yaml listens on, which the proxies
// must forward to.
func chatdPorts(t *testing.T) (mqtt, ws, http string) {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "configs", "chatd.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	port := func(addr string) string {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if cfg.MQTT.WSPath != "/mqtt" {
		t.Fatalf("configs/chatd.yaml: ws_path %q; the proxies forward /mqtt", cfg.MQTT.WSPath)
	}
	return port(cfg.MQTT.Addr), port(cfg.MQTT.WSAddr), port(cfg.HTTP.Addr)
}

// TestNginxConfig: nginx terminates TLS for REST, the WebSocket (upgraded,
// Host kept so chatd knows its own pages, idle connections left to the MQTT
// keep-alive) and MQTT over TLS, and forwards each to chatd's port; then
// nginx itself checks the file when installed.
func TestNginxConfig(t *testing.T) {
	raw, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	mqttPort, wsPort, httpPort := chatdPorts(t)
	root := parseNginx(t, string(raw))
	http := root.one(t, "http")
	upstream := func(block *directive, name, port string) {
		t.Helper()
		u := block.one(t, "upstream", name)
		servers := u.find("server")
		if len(servers) == 0 {
			t.Fatalf("upstream %s has no server", name)
		}
		for _, s := range servers {
			if !strings.HasSuffix(s.args[0], ":"+port) {
				t.Errorf("upstream %s: server %s, want chatd's port %s", name, s.args[0], port)
			}
		}
	}
	upstream(http, "chatd_http", httpPort)
	upstream(http, "chatd_ws", wsPort)

	var tlsServer *directive
	for _, s := range http.find("server") {
		if s.has("listen", "443", "ssl", "http2") || s.has("listen", "443", "ssl") {
			tlsServer = s
		}
	}
	if tlsServer == nil {
		t.Fatal("no server listening on 443 ssl")
	}
	for _, d := range []string{"ssl_certificate", "ssl_certificate_key"} {
		tlsServer.one(t, d)
	}
	ws := tlsServer.one(t, "location", "=", "/mqtt")
	for _, want := range [][]string{
		{"proxy_pass", "http://chatd_ws"},
		{"proxy_http_version", "1.1"},
		{"proxy_set_header", "Upgrade", "$http_upgrade"},
		{"proxy_set_header", "Connection", "$connection_upgrade"},
		{"proxy_set_header", "Host", "$host"},
	} {
		if !ws.has(want[0], want[1:]...) {
			t.Errorf("location /mqtt lacks %q", want)
		}
	}
	if rt := ws.find("proxy_read_timeout"); len(rt) != 1 || !longEnough(rt[0].args[0]) {
		t.Errorf("location /mqtt: want one proxy_read_timeout of 10m or more, past the MQTT keep-alive; got %d", len(rt))
	}
	api := tlsServer.one(t, "location", "/")
	for _, want := range [][]string{{"proxy_pass", "http://chatd_http"}, {"proxy_set_header", "Host", "$host"}} {
		if !api.has(want[0], want[1:]...) {
			t.Errorf("location / lacks %q", want)
		}
	}

	stream := root.one(t, "stream")
	upstream(stream, "chatd_mqtt", mqttPort)
	mqtts := stream.one(t, "server")
	if !mqtts.has("listen", "8883", "ssl") || !mqtts.has("proxy_pass", "chatd_mqtt") {
		t.Errorf("stream server: want listen 8883 ssl and proxy_pass chatd_mqtt, got %+v", mqtts.children)
	}

	t.Run("nginx -t", func(t *testing.T) {
		nginx, err := exec.LookPath("nginx")
		if err != nil {
			t.Skip("nginx not installed: its own check of nginx.conf not run")
		}
		dir := t.TempDir()
		pair := testcert.Write(t, dir, 1)
		conf := strings.NewReplacer(
			"/etc/ssl/chat.example.com/fullchain.pem", pair.CertFile,
			"/etc/ssl/chat.example.com/privkey.pem", pair.KeyFile,
		).Replace(string(raw))
		for _, load := range root.find("load_module") {
			if _, err := os.Stat(load.args[0]); err != nil {
				// Built in here, or not installed: nginx says which below.
				conf = strings.Replace(conf, "load_module "+load.args[0]+";", "", 1)
			}
		}
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, nginx, "-t", "-c", path, "-p", dir+"/",
			"-g", "pid "+filepath.Join(dir, "nginx.pid")+"; error_log "+filepath.Join(dir, "error.log")+";").CombinedOutput()
		if err != nil && strings.Contains(string(out), `unknown directive "stream"`) {
			t.Skipf("this nginx has no stream module (libnginx-mod-stream): %s", out)
		}
		if err != nil {
			t.Errorf("nginx -t: %v\n%s", err, out)
		}
	})
}

// longEnough: an nginx time of at least ten minutes, well past any
// keep-alive a client asks for (chatd caps it at mqtt.keepalive_max, 5m).
func longEnough(v string) bool {
	if strings.TrimLeft(v, "0123456789") == "" {
		v += "s" // nginx reads a bare number as seconds
	}
	d, err := time.ParseDuration(v)
	return err == nil && d >= 10*time.Minute
}

// TestCaddyfile: Caddy serves REST and the WebSocket on one origin to
// chatd's ports; then Caddy itself validates the file when installed.
func TestCaddyfile(t *testing.T) {
	raw, err := os.ReadFile("Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	_, wsPort, httpPort := chatdPorts(t)
	root := parseCaddyfile(t, string(raw))
	if len(root.children) != 1 {
		t.Fatalf("Caddyfile: %d site blocks, want 1", len(root.children))
	}
	site := root.children[0]
	ws := site.find("reverse_proxy", "/mqtt")
	if len(ws) != 1 || !strings.HasSuffix(ws[0].args[1], ":"+wsPort) {
		t.Fatalf("Caddyfile: want one reverse_proxy /mqtt to chatd's WebSocket port %s, got %+v", wsPort, ws)
	}
	var api *directive
	for _, d := range site.find("reverse_proxy") {
		if !strings.HasPrefix(d.args[0], "/") {
			api = d
		}
	}
	if api == nil || !strings.HasSuffix(api.args[0], ":"+httpPort) {
		t.Fatalf("Caddyfile: want a reverse_proxy of everything else to chatd's HTTP port %s", httpPort)
	}
	if !api.has("health_uri", "/readyz") {
		t.Errorf("Caddyfile: the API upstream is not checked on /readyz")
	}

	t.Run("caddy validate", func(t *testing.T) {
		caddy, err := exec.LookPath("caddy")
		if err != nil {
			t.Skip("caddy not installed: its own check of the Caddyfile not run")
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, caddy, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
		// Caddy keeps state under HOME/XDG dirs; give it a throwaway one.
		home := t.TempDir()
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("caddy validate: %v\n%s", err, out)
		}
	})
}
