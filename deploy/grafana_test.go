package deploy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/system"
	"github.com/mqchat/mqchat/internal/natstest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqchat/mqchat/internal/apptest"
	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/metrics"
	"github.com/mqchat/mqchat/internal/pgtest"
)

const dashboardFile = "grafana/chatd.json"

// family is one exported metric family: its variable labels when known
// from a Desc, its type when seen in a scrape.
type family struct {
	labels []string
	typ    string // "" when only described
	// clusterOnly: registered only by a node in cluster mode.
	clusterOnly bool
}

// describer is a prometheus.Registerer that records what each collector
// describes: a CounterVec describes its family before any child exists, where
// a scrape shows it only after first use.
type describer struct{ descs []*prometheus.Desc }

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		d.descs = append(d.descs, desc)
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return false }

// Desc exposes its name and labels only through String.
var descRe = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

// describedFamilies registers the collectors internal/app registers (same
// constructors, same order) and returns what they describe. The test compares
// this against a live node's scrape, so a collector added to app.go without
// being added here fails loudly.
func describedFamilies(t *testing.T) map[string]family {
	t.Helper()
	d := &describer{}
	d.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.NewPipeline(d)
	d.MustRegister(metrics.NewBrokerCollector(&system.Info{}))
	metrics.NewPresence(d, nil, func() int { return 0 }, func() int { return 0 })
	metrics.NewPush(d, func() int { return 0 })
	metrics.NewReceipts(d)
	metrics.RegisterPresence(d, func() (int, int) { return 0, 0 })
	metrics.NewOutbound(d)
	metrics.NewLimits(d)
	metrics.NewACL(d)
	metrics.NewSessions(d)
	metrics.NewAccounts(d)
	metrics.NewE2EKeys(d)
	metrics.NewDeviceMessages(d)
	metrics.NewRetention(d)
	metrics.NewAttachments(d)
	metrics.RegisterOutboundQueued(d, func() int64 { return 0 })

	out := descFamilies(t, d.descs)

	// ---- Cluster mode only: what internal/app registers when
	// cluster.enabled (openCluster).
	cd := &describer{}
	metrics.NewCluster(cd)
	for name, f := range descFamilies(t, cd.descs) {
		f.clusterOnly = true
		out[name] = f
	}
	// ---- End of the cluster-mode block.
	return out
}

// descFamilies reads names and variable labels from descs.
func descFamilies(t *testing.T, descs []*prometheus.Desc) map[string]family {
	t.Helper()
	out := map[string]family{}
	for _, desc := range descs {
		m := descRe.FindStringSubmatch(desc.String())
		if m == nil {
			t.Fatalf("cannot read metric name from %s", desc)
		}
		var labels []string
		for l := range strings.SplitSeq(m[2], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				labels = append(labels, l)
			}
		}
		out[m[1]] = family{labels: labels}
	}
	return out
}

// nodeConfig is a node on loopback ports with the embedded store.
func nodeConfig(t *testing.T) config.Config {
	return apptest.Config(t.TempDir())
}

// clusterNodeConfig is a node in cluster mode: a one-node cluster on an
// embedded NATS server with JetStream and a fresh PostgreSQL database
// (skipping t without PostgreSQL, except under CI=true).
func clusterNodeConfig(t *testing.T) config.Config {
	t.Helper()
	natsURL := natstest.Start(t)
	cfg := nodeConfig(t)
	cfg.Store.Relational, cfg.Store.Messages = "postgres", "postgres"
	cfg.Store.Postgres.DSN = pgtest.DSN(t)
	cfg.Auth.JWTSecret = strings.Repeat("deploy-test-secret-", 3)
	cfg.Cluster.Enabled = true
	cfg.Cluster.NodeID = "grafana-test"
	cfg.Cluster.NATS.URL = natsURL
	cfg.Cluster.Heartbeat, cfg.Cluster.TTL = 100*time.Millisecond, time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startNode runs a real chatd node and returns the base URL of its HTTP
// listener.
func startNode(t *testing.T, cfg config.Config) string {
	t.Helper()
	a := apptest.Start(t, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	return "http://" + a.Addrs().HTTP
}

// waitReady polls /readyz until it answers 200: a cluster node is ready
// once it holds its membership lease.
func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/readyz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not 200 within 20 s (last: %v)", base, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return resp
}

// scrapedFamilies reads the families and types from the node's /metrics
// text exposition ("# TYPE name type" lines).
func scrapedFamilies(t *testing.T, base string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(get(t, base+"/metrics").Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// exported merges the scrapes of two live nodes, a single node and one in
// cluster mode, with the described families, after checking they agree on
// chatd's own (mqchat_) metrics.
func exported(t *testing.T) map[string]family {
	t.Helper()
	base := startNode(t, nodeConfig(t))
	// The probes of deploy/k8s point here; the node must answer them.
	get(t, base+"/healthz")
	get(t, base+"/readyz")
	single := scrapedFamilies(t, base)

	var cluster map[string]string
	t.Run("cluster node", func(t *testing.T) {
		base := startNode(t, clusterNodeConfig(t))
		waitReady(t, base)
		cluster = scrapedFamilies(t, base)
	})

	all := describedFamilies(t)
	for _, scraped := range []map[string]string{single, cluster} {
		for name, typ := range scraped {
			f, ok := all[name]
			if !ok && strings.HasPrefix(name, "mqchat_") {
				t.Errorf("a node exports %s, which the test's collector list lacks: mirror app.go in describedFamilies", name)
			}
			f.typ = typ
			all[name] = f
		}
	}
	for name, f := range all {
		if !strings.HasPrefix(name, "mqchat_") {
			continue
		}
		switch {
		case f.clusterOnly && cluster == nil:
			// No PostgreSQL here (the subtest says so): the cluster
			// families are checked on the dashboard by name and labels.
		case f.clusterOnly && cluster[name] == "":
			t.Errorf("%s is described but the cluster node does not export it: describedFamilies registers more than app.go", name)
		case f.clusterOnly && single[name] != "":
			t.Errorf("%s is exported by a single node too: move it out of describedFamilies' cluster block", name)
		case !f.clusterOnly && len(f.labels) == 0 && single[name] == "":
			t.Errorf("%s is described but the node does not export it: describedFamilies registers more than app.go", name)
		}
	}
	return all
}

// resolve maps a series name used in a query to its family: histograms and
// summaries are queried through _bucket, _sum and _count.
func resolve(all map[string]family, name string) (family, string, bool) {
	if f, ok := all[name]; ok {
		return f, name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := all[base]
		if !ok {
			continue
		}
		switch {
		case f.typ == "histogram", f.typ == "summary" && suffix != "_bucket":
			return f, base, true
		case f.typ == "" && strings.HasPrefix(base, "mqchat_"):
			// Described, not yet scraped: only labelled families.
			return f, base, true
		}
	}
	return family{}, "", false
}

// PromQL as the dashboard writes it. No PromQL parser is a dependency of the
// module, so the queries are taken apart with these; anything they leave that
// is neither a known function nor a known metric fails the test, so an
// unexpected construct is reported rather than passed over.
var (
	stringRe   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	rangeRe    = regexp.MustCompile(`\[[^\]]*\]`)
	groupingRe = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	selectorRe = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}`)
	matcherRe  = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*""\s*$`)
	numberRe   = regexp.MustCompile(`(^|[^a-zA-Z0-9_:])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?`)
	tokenRe    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	labelVals  = regexp.MustCompile(`^label_values\(\s*(.+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

	functions = []string{"rate", "irate", "increase", "sum", "avg", "min", "max", "count", "histogram_quantile", "clamp_min", "topk"}
	operators = []string{"and", "or", "unless", "bool"}
	// Labels every series gets from the scrape target.
	targetLabels = []string{"job", "instance"}
)

type query struct {
	metrics map[string][]string // series name → label names in its matchers
	groupBy []string
}

func parseQuery(expr string) (query, error) {
	q := query{metrics: map[string][]string{}}
	e := stringRe.ReplaceAllString(expr, `""`)
	e = rangeRe.ReplaceAllString(e, "")
	for _, m := range groupingRe.FindAllStringSubmatch(e, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				q.groupBy = append(q.groupBy, l)
			}
		}
	}
	e = groupingRe.ReplaceAllString(e, " ")
	var err error
	e = selectorRe.ReplaceAllStringFunc(e, func(s string) string {
		m := selectorRe.FindStringSubmatch(s)
		if m[1] == "" {
			err = fmt.Errorf("selector without a metric name: %s", s)
			return s
		}
		var labels []string
		for matcher := range strings.SplitSeq(m[2], ",") {
			if strings.TrimSpace(matcher) == "" {
				continue
			}
			lm := matcherRe.FindStringSubmatch(matcher)
			if lm == nil {
				err = fmt.Errorf("unreadable matcher %q", matcher)
				continue
			}
			labels = append(labels, lm[1])
		}
		q.metrics[m[1]] = append(q.metrics[m[1]], labels...)
		return " " + m[1] + " "
	})
	if err != nil {
		return q, err
	}
	e = numberRe.ReplaceAllString(e, "$1")
	for _, tok := range tokenRe.FindAllString(e, -1) {
		name, call := strings.CutSuffix(tok, "(")
		name = strings.TrimSpace(name)
		switch {
		case call && slices.Contains(functions, name), slices.Contains(operators, name):
		case call:
			return q, fmt.Errorf("unknown function %s", name)
		default:
			if _, ok := q.metrics[name]; !ok {
				q.metrics[name] = nil
			}
		}
	}
	if len(q.metrics) == 0 {
		return q, fmt.Errorf("no metric in %q", expr)
	}
	return q, nil
}

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard needs a title and a uid")
	}

	// Queries to check, labelled for error messages.
	type use struct{ where, expr string }
	var uses []use
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		m := labelVals.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(series, label)", v.Name, q.Query)
			continue
		}
		uses = append(uses, use{"variable " + v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
	}
	if !vars["datasource"] || !vars["job"] || !vars["instance"] {
		t.Errorf("dashboard variables %v: want datasource, job and instance", vars)
	}

	ids := map[int]bool{}
	var panels int
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			panels++
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource must be the ${datasource} variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				uses = append(uses, use{"panel " + p.Title, tg.Expr})
			}
		}
	}
	walk(d.Panels)
	if panels == 0 {
		t.Fatal("dashboard has no panels")
	}

	all := exported(t)
	used := map[string]bool{}
	for _, u := range uses {
		q, err := parseQuery(u.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", u.where, u.expr, err)
			continue
		}
		var allowed []string // labels the query's series can carry
		for name, labels := range q.metrics {
			f, base, ok := resolve(all, name)
			if !ok {
				t.Errorf("%s: chatd exports no metric %s", u.where, name)
				continue
			}
			used[base] = true
			own := slices.Concat(f.labels, targetLabels)
			switch {
			case strings.HasSuffix(name, "_bucket"):
				own = append(own, "le")
			case f.typ == "summary" && name == base:
				own = append(own, "quantile")
			}
			for _, l := range labels {
				if !slices.Contains(own, l) {
					t.Errorf("%s: %s has no label %q (labels %v)", u.where, name, l, own)
				}
			}
			allowed = append(allowed, own...)
		}
		for _, l := range q.groupBy {
			if !slices.Contains(allowed, l) {
				t.Errorf("%s: groups by %q, which none of its series carries", u.where, l)
			}
		}
	}

	// Every chatd metric is on the dashboard, so a new one is not forgotten.
	for name := range all {
		if strings.HasPrefix(name, "mqchat_") && !used[name] {
			t.Errorf("%s is exported but on no panel", name)
		}
	}
}

func TestParseQuery(t *testing.T) {
	for _, c := range []struct {
		expr    string
		metrics map[string][]string
		groupBy []string
		err     bool
	}{
		{expr: `rate(a_total{job=~"$job", x="y,z}"}[$__rate_interval])`, metrics: map[string][]string{"a_total": {"job", "x"}}},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`, metrics: map[string][]string{"h_bucket": nil}, groupBy: []string{"le"}},
		{expr: `sum(rate(a[1m])) / sum(rate(b{r="s"}[1m])) * 1e3`, metrics: map[string][]string{"a": nil, "b": {"r"}}},
		{expr: `sum(a) without (instance, job)`, metrics: map[string][]string{"a": nil}, groupBy: []string{"instance", "job"}},
		{expr: `rat(a[1m])`, err: true},
		{expr: `{__name__="a"}`, err: true},
		{expr: `a{b~"c"}`, err: true},
		{expr: `sum()`, err: true},
	} {
		q, err := parseQuery(c.expr)
		if (err != nil) != c.err {
			t.Errorf("%q: error %v, want error %v", c.expr, err, c.err)
			continue
		}
		if c.err {
			continue
		}
		if fmt.Sprint(q.metrics) != fmt.Sprint(c.metrics) || !slices.Equal(q.groupBy, c.groupBy) {
			t.Errorf("%q: got %v by %v, want %v by %v", c.expr, q.metrics, q.groupBy, c.metrics, c.groupBy)
		}
	}
}
