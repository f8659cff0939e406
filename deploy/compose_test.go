package deploy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mqchat/mqchat/internal/config"
)

const composeFile = "docker-compose.yml"

// The subset of a compose file the checks read.
type composeProject struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Profiles    []string          `yaml:"profiles"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   dependsOn         `yaml:"depends_on"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
}

// dependsOn is depends_on in either of its forms: a list of services
// (condition service_started) or a map of service to condition.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, s := range names {
			(*d)[s] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for s, c := range m {
			(*d)[s] = c.Condition
		}
	default:
		return fmt.Errorf("depends_on: unexpected YAML kind %v", n.Kind)
	}
	return nil
}

// composeVar is compose's ${NAME}, ${NAME:-default} and ${NAME-default}.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// interpolate resolves variables as compose does with none of them set:
// what a fresh checkout gets.
func interpolate(s string) string {
	s = composeVar.ReplaceAllString(s, "$2")
	return strings.ReplaceAll(s, "$$", "$")
}

func loadCompose(t *testing.T) composeProject {
	t.Helper()
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var p composeProject
	if err := yaml.Unmarshal(raw, &p); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	for _, s := range p.Services {
		for k, v := range s.Environment {
			s.Environment[k] = interpolate(v)
		}
	}
	return p
}

// haSection is one section of haproxy.cfg: "frontend mqtt" and its
// directives, each split into words.
type haSection struct {
	kind, name string
	lines      [][]string
}

func (s haSection) directive(words ...string) [][]string {
	var out [][]string
	for _, l := range s.lines {
		if len(l) >= len(words) && slices.Equal(l[:len(words)], words) {
			out = append(out, l[len(words):])
		}
	}
	return out
}

func readHAProxy(t *testing.T, file string) map[string]haSection {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]haSection{}
	var cur *haSection
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			if cur != nil {
				out[cur.kind+" "+cur.name] = *cur
			}
			cur = &haSection{kind: words[0]}
			if len(words) > 1 {
				cur.name = words[1]
			}
			continue
		}
		if cur == nil {
			t.Fatalf("%s: directive %q outside a section", file, line)
		}
		cur.lines = append(cur.lines, words)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		out[cur.kind+" "+cur.name] = *cur
	}
	return out
}

// TestComposeCluster: the compose file runs three chatd nodes in cluster
// mode with distinct identities and one secret, on NATS with JetStream and
// PostgreSQL, behind HAProxy sending each protocol to every node's ready
// listener.
func TestComposeCluster(t *testing.T) {
	p := loadCompose(t)

	// The nodes: services that serve (the image's entrypoint) in cluster
	// mode; migrate shares their environment but runs chatd migrate.
	var nodes []string
	for name, s := range p.Services {
		if s.Environment["MQCHAT_CLUSTER_ENABLED"] == "true" && s.Entrypoint == nil {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	if len(nodes) != 3 {
		t.Fatalf("chatd services in cluster mode: %v, want three", nodes)
	}

	cfgs := map[string]config.Config{}
	for _, n := range nodes {
		t.Run(n, func(t *testing.T) {
			for k, v := range p.Services[n].Environment {
				t.Setenv(k, v)
			}
			cfg, err := config.Load("", nil)
			if err != nil {
				t.Fatalf("%s's environment as chatd loads it: %v", n, err)
			}
			cfgs[n] = cfg
		})
	}
	if t.Failed() {
		return
	}

	// cluster.node_id is a node's one identity: in cluster mode the number
	// in message ids is claimed from the membership bucket.
	ids := map[string]string{}
	for _, n := range nodes {
		cfg := cfgs[n]
		if other, ok := ids[cfg.Cluster.NodeID]; ok || cfg.Cluster.NodeID == "" {
			t.Errorf("%s: cluster.node_id %q not unique (also %s)", n, cfg.Cluster.NodeID, other)
		}
		ids[cfg.Cluster.NodeID] = n
		first := cfgs[nodes[0]]
		for _, c := range []struct{ key, got, want string }{
			{"auth.jwt_secret", cfg.Auth.JWTSecret, first.Auth.JWTSecret},
			{"cluster.name", cfg.Cluster.Name, first.Cluster.Name},
			{"cluster.ttl", cfg.Cluster.TTL.String(), first.Cluster.TTL.String()},
			{"cluster.nats.url", cfg.Cluster.NATS.URL, first.Cluster.NATS.URL},
			{"store.postgres.dsn", cfg.Store.Postgres.DSN, first.Store.Postgres.DSN},
		} {
			if c.got != c.want {
				t.Errorf("%s differs between %s and %s", c.key, nodes[0], n)
			}
		}
		if len(cfg.Auth.JWTSecret) < 32 {
			t.Errorf("%s: auth.jwt_secret has %d characters, want at least 32", n, len(cfg.Auth.JWTSecret))
		}
	}
	if want := map[string]string{"n1": nodes[0], "n2": nodes[1], "n3": nodes[2]}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("cluster node ids %v, want n1, n2, n3", ids)
	}

	// NATS with JetStream, 2.11 or later, started healthy before the nodes.
	cfg := cfgs[nodes[0]]
	for u := range strings.SplitSeq(cfg.Cluster.NATS.URL, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			t.Fatalf("cluster.nats.url: %v", err)
		}
		nats, ok := p.Services[pu.Hostname()]
		if !ok {
			t.Fatalf("cluster.nats.url host %q is no compose service", pu.Hostname())
		}
		if !slices.Contains(nats.Command, "--jetstream") && !slices.Contains(nats.Command, "-js") {
			t.Errorf("service %s runs %q: JetStream is off", pu.Hostname(), nats.Command)
		}
		if v := natsImageRe.FindStringSubmatch(nats.Image); v == nil || v[1] != "2" {
			t.Errorf("service %s image %q: want nats:2.11 or later", pu.Hostname(), nats.Image)
		} else if minor, _ := strconv.Atoi(v[2]); minor < 11 {
			t.Errorf("service %s image %q: want nats:2.11 or later (key-value per-key TTLs)", pu.Hostname(), nats.Image)
		}
		for _, n := range nodes {
			if p.Services[n].DependsOn[pu.Hostname()] != "service_healthy" {
				t.Errorf("%s does not wait for %s to be healthy", n, pu.Hostname())
			}
		}
	}

	// PostgreSQL, migrated once by a one-shot chatd migrate the nodes wait
	// for.
	dsn, err := url.Parse(cfg.Store.Postgres.DSN)
	if err != nil {
		t.Fatalf("store.postgres.dsn: %v", err)
	}
	if pg, ok := p.Services[dsn.Hostname()]; !ok || !strings.HasPrefix(pg.Image, "postgres:") {
		t.Errorf("store.postgres.dsn host %q is no postgres service", dsn.Hostname())
	}
	var migrate string
	for name, s := range p.Services {
		if slices.Equal(s.Entrypoint, []string{"/chatd", "migrate", "up"}) {
			migrate = name
			if s.DependsOn[dsn.Hostname()] != "service_healthy" {
				t.Errorf("%s does not wait for %s to be healthy", name, dsn.Hostname())
			}
		}
	}
	if migrate == "" {
		t.Fatal("no one-shot chatd migrate up service")
	}
	for _, n := range nodes {
		if p.Services[n].DependsOn[migrate] != "service_completed_successfully" {
			t.Errorf("%s does not wait for %s to complete", n, migrate)
		}
	}
	// make test-cassandra starts this service alone.
	if _, ok := p.Services["cassandra"]; !ok {
		t.Errorf("no cassandra service (make test-cassandra, the cassandra profile)")
	}

	t.Run("load balancer", func(t *testing.T) { checkLoadBalancer(t, p, nodes, cfg) })
}

func checkLoadBalancer(t *testing.T, p composeProject, nodes []string, cfg config.Config) {
	var lb string
	var cfgFile string
	for name, s := range p.Services {
		if !strings.HasPrefix(s.Image, "haproxy:") {
			continue
		}
		lb = name
		for _, v := range s.Volumes {
			if src, dst, _ := strings.Cut(strings.TrimSuffix(v, ":ro"), ":"); dst == "/usr/local/etc/haproxy/haproxy.cfg" {
				cfgFile = src
			}
		}
	}
	if lb == "" || cfgFile == "" {
		t.Fatalf("no haproxy service with haproxy.cfg mounted (service %q, file %q)", lb, cfgFile)
	}
	t.Run("haproxy -c", func(t *testing.T) {
		haproxy, err := exec.LookPath("haproxy")
		if err != nil {
			t.Skip("haproxy not installed: its own check of haproxy.cfg not run")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		// The nodes' names resolve only inside compose's network; the
		// servers' init-addr lets HAProxy start (and check) without them.
		if out, err := exec.CommandContext(ctx, haproxy, "-c", "-f", cfgFile).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c -f %s: %v\n%s", cfgFile, err, out)
		}
	})
	secs := readHAProxy(t, cfgFile)
	published := map[int]bool{}
	for _, port := range p.Services[lb].Ports {
		parts := strings.Split(port, ":")
		n, _ := strconv.Atoi(parts[len(parts)-1])
		published[n] = true
	}
	httpPort := portOf(t, cfg.HTTP.Addr)
	defaults := secs["defaults "]

	for _, l := range []struct {
		name, mode, addr string
	}{
		{"mqtt", "tcp", cfg.MQTT.Addr},
		{"ws", "tcp", cfg.MQTT.WSAddr},
		{"http", "http", cfg.HTTP.Addr},
	} {
		port := portOf(t, l.addr)
		if !published[port] {
			t.Errorf("%s does not publish port %d (%s)", lb, port, l.name)
		}
		// The frontend binding the port, in the expected mode.
		var fe haSection
		for _, s := range secs {
			for _, b := range s.directive("bind") {
				if s.kind == "frontend" && len(b) > 0 && b[0] == ":"+strconv.Itoa(port) {
					fe = s
				}
			}
		}
		if fe.kind == "" {
			t.Errorf("%s: no frontend binds :%d", l.name, port)
			continue
		}
		if m := fe.directive("mode"); len(m) != 1 || m[0][0] != l.mode {
			t.Errorf("frontend %s: mode %v, want %s", fe.name, m, l.mode)
		}
		db := fe.directive("default_backend")
		if len(db) != 1 {
			t.Errorf("frontend %s: want one default_backend", fe.name)
			continue
		}
		be, ok := secs["backend "+db[0][0]]
		if !ok {
			t.Errorf("frontend %s: backend %s not defined", fe.name, db[0][0])
			continue
		}
		if m := be.directive("mode"); len(m) != 1 || m[0][0] != l.mode {
			t.Errorf("backend %s: mode %v, want %s", be.name, m, l.mode)
		}
		// Every node is a server on the listener's port, health-checked
		// with GET /readyz on the node's HTTP port.
		var servers []string
		for _, s := range be.directive("server") {
			if len(s) < 2 {
				t.Errorf("backend %s: server line %q", be.name, s)
				continue
			}
			host, sp, err := net.SplitHostPort(s[1])
			if err != nil || sp != strconv.Itoa(port) {
				t.Errorf("backend %s: server %s at %s, want port %d", be.name, s[0], s[1], port)
			}
			servers = append(servers, host)
			opts := slices.Concat(defaultServer(defaults), defaultServer(be), s[2:])
			if !slices.Contains(opts, "check") {
				t.Errorf("backend %s: server %s is not health-checked", be.name, s[0])
			}
			if i := slices.Index(opts, "port"); l.name != "http" && (i < 0 || i+1 >= len(opts) || opts[i+1] != strconv.Itoa(httpPort)) {
				t.Errorf("backend %s: server %s is not checked on the HTTP port %d", be.name, s[0], httpPort)
			}
		}
		slices.Sort(servers)
		if !slices.Equal(servers, nodes) {
			t.Errorf("backend %s: servers %v, want every node %v", be.name, servers, nodes)
		}
		if len(be.directive("option", "httpchk")) != 1 {
			t.Errorf("backend %s: no option httpchk", be.name)
		}
		var readyz bool
		for _, s := range be.directive("http-check", "send") {
			if i := slices.Index(s, "uri"); i >= 0 && i+1 < len(s) && s[i+1] == "/readyz" && slices.Contains(s, "GET") {
				readyz = true
			}
		}
		if !readyz {
			t.Errorf("backend %s: health check is not GET /readyz", be.name)
		}
	}
}

// defaultServer is a section's default-server options.
func defaultServer(s haSection) []string {
	var out []string
	for _, d := range s.directive("default-server") {
		out = append(out, d...)
	}
	return out
}
