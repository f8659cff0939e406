package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/mqchat/mqchat/internal/config"
)

// The subset of Kubernetes objects the checks read; yaml.v3 ignores the rest.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec       yaml.Node         `yaml:"spec"`
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
}

// workloadSpec is the spec of a StatefulSet or a Deployment (the fields of
// either); kind says which.
type workloadSpec struct {
	kind        string
	Replicas    *int   `yaml:"replicas"`
	ServiceName string `yaml:"serviceName"` // StatefulSet
	Selector    struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	UpdateStrategy updateStrategy `yaml:"updateStrategy"` // StatefulSet
	Strategy       updateStrategy `yaml:"strategy"`       // Deployment
	Template       struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec struct {
			TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
			SecurityContext               struct {
				RunAsNonRoot *bool `yaml:"runAsNonRoot"`
				RunAsUser    *int  `yaml:"runAsUser"`
			} `yaml:"securityContext"`
			Affinity struct {
				PodAntiAffinity struct {
					Required  []affinityTerm `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
					Preferred []struct {
						Weight          int          `yaml:"weight"`
						PodAffinityTerm affinityTerm `yaml:"podAffinityTerm"`
					} `yaml:"preferredDuringSchedulingIgnoredDuringExecution"`
				} `yaml:"podAntiAffinity"`
			} `yaml:"affinity"`
			Containers []container `yaml:"containers"`
			Volumes    []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
				EmptyDir *struct{} `yaml:"emptyDir"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	} `yaml:"volumeClaimTemplates"`
}

type updateStrategy struct {
	Type          string `yaml:"type"`
	RollingUpdate *struct {
		MaxUnavailable any `yaml:"maxUnavailable"`
		MaxSurge       any `yaml:"maxSurge"`
	} `yaml:"rollingUpdate"`
}

type affinityTerm struct {
	TopologyKey   string `yaml:"topologyKey"`
	LabelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"labelSelector"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []envVar `yaml:"env"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // a number or a container port's name
	} `yaml:"httpGet"`
}

type serviceSpec struct {
	ClusterIP                string            `yaml:"clusterIP"`
	PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
	Selector                 map[string]string `yaml:"selector"`
	Ports                    []struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort any    `yaml:"targetPort"`
	} `yaml:"ports"`
}

type pdbSpec struct {
	MinAvailable   any `yaml:"minAvailable"`
	MaxUnavailable any `yaml:"maxUnavailable"`
	Selector       struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
}

type kustomization struct {
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

const k8sDir = "k8s"

// manifests is what kubectl apply -k deploy/k8s sees, plus the Secret
// template the operator applies by hand.
type manifests struct {
	kust      kustomization
	workloads map[string]workloadSpec
	services  map[string]serviceSpec
	pdbs      map[string]pdbSpec
	secret    object
	generated map[string]string // configMapGenerator name → its one file, on disk
}

// chatd is chatd's workload and its one container.
func (m manifests) chatd(t *testing.T) (workloadSpec, container) {
	t.Helper()
	ss, ok := m.workloads["chatd"]
	if !ok || len(ss.Template.Spec.Containers) != 1 {
		t.Fatalf("want a workload chatd with one container, have %d workloads", len(m.workloads))
	}
	return ss, ss.Template.Spec.Containers[0]
}

// selects reports whether a selector picks the pods of ss.
func selects(selector map[string]string, ss workloadSpec) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if ss.Template.Metadata.Labels[k] != v {
			return false
		}
	}
	return true
}

// backing returns the one workload whose pods a Service's selector picks.
func (m manifests) backing(t *testing.T, service string) (string, workloadSpec) {
	t.Helper()
	s, ok := m.services[service]
	if !ok {
		t.Fatalf("no Service %s in the manifests", service)
	}
	var name string
	var found workloadSpec
	for n, ss := range m.workloads {
		if selects(s.Selector, ss) {
			if name != "" {
				t.Fatalf("Service %s selects the pods of both %s and %s", service, name, n)
			}
			name, found = n, ss
		}
	}
	if name == "" {
		t.Fatalf("Service %s (selector %v) selects no workload's pods", service, s.Selector)
	}
	return name, found
}

func containerPorts(c container) map[string]int {
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	return ports
}

// resolvePort maps a probe's or Service's target port (a number or a port
// name) to a container port of c.
func resolvePort(t *testing.T, what string, c container, p any) int {
	t.Helper()
	ports := containerPorts(c)
	switch v := p.(type) {
	case int:
		if slices.Contains(slices.Collect(maps.Values(ports)), v) {
			return v
		}
	case string:
		if n, ok := ports[v]; ok {
			return n
		}
	}
	t.Errorf("%s: port %v is no port of container %s", what, p, c.Name)
	return 0
}

func readYAMLDocs(t *testing.T, file string) []object {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []object
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, o)
	}
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{
		workloads: map[string]workloadSpec{},
		services:  map[string]serviceSpec{},
		pdbs:      map[string]pdbSpec{},
		generated: map[string]string{},
	}
	raw, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &m.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	listed := map[string]bool{"kustomization.yaml": true, "secret.example.yaml": true}
	for _, g := range m.kust.ConfigMapGenerator {
		if len(g.Files) != 1 {
			t.Fatalf("kustomization.yaml: configMapGenerator %s: want one file, got %v", g.Name, g.Files)
		}
		m.generated[g.Name] = filepath.Join(k8sDir, g.Files[0])
		listed[g.Files[0]] = true
	}

	// Every manifest in the directory is either applied by the
	// kustomization or is the Secret template; none is forgotten.
	for _, r := range m.kust.Resources {
		listed[r] = true
	}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is neither in kustomization.yaml resources nor a generated ConfigMap's file", f)
		}
	}

	for _, r := range m.kust.Resources {
		for _, o := range readYAMLDocs(t, filepath.Join(k8sDir, r)) {
			checkObject(t, r, o)
			name := o.Metadata.Name
			switch o.Kind {
			case "StatefulSet", "Deployment":
				var s workloadSpec
				if err := o.Spec.Decode(&s); err != nil {
					t.Fatalf("%s: %s spec: %v", r, o.Kind, err)
				}
				if _, dup := m.workloads[name]; dup {
					t.Fatalf("%s: two workloads named %s", r, name)
				}
				s.kind = o.Kind
				m.workloads[name] = s
			case "Service":
				var s serviceSpec
				if err := o.Spec.Decode(&s); err != nil {
					t.Fatalf("%s: Service spec: %v", r, err)
				}
				m.services[name] = s
			case "PodDisruptionBudget":
				var s pdbSpec
				if err := o.Spec.Decode(&s); err != nil {
					t.Fatalf("%s: PodDisruptionBudget spec: %v", r, err)
				}
				m.pdbs[name] = s
			default:
				t.Errorf("%s: unexpected kind %s", r, o.Kind)
			}
		}
	}

	secrets := readYAMLDocs(t, filepath.Join(k8sDir, "secret.example.yaml"))
	if len(secrets) != 1 || secrets[0].Kind != "Secret" {
		t.Fatalf("secret.example.yaml: want one Secret, got %d documents", len(secrets))
	}
	m.secret = secrets[0]
	checkObject(t, "secret.example.yaml", m.secret)
	return m
}

func checkObject(t *testing.T, file string, o object) {
	t.Helper()
	if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
		t.Errorf("%s: object without apiVersion, kind or name: %+v", file, o)
	}
	if o.Metadata.Namespace != "" {
		t.Errorf("%s: %s/%s sets namespace %q; the manifests are namespace-free", file, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
	}
}

// dependentVar is Kubernetes' $(NAME) reference to an earlier env entry.
var dependentVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// podName is the name of the i-th pod of workload set: ordinals for a
// StatefulSet, a template hash and a random suffix for a Deployment.
func podName(set string, ss workloadSpec, i int) string {
	if ss.kind == "StatefulSet" {
		return fmt.Sprintf("%s-%d", set, i)
	}
	return fmt.Sprintf("%s-6d4cf56db6-%05x", set, 0x9a3c1+i*0x1f7)
}

// podEnv is the environment the kubelet gives container c of the i-th pod
// of workload ss (named set): literal values with $(NAME) expanded from
// earlier entries, Secret values from the template, and the downward API
// fields the manifests use.
func podEnv(t *testing.T, m manifests, set string, ss workloadSpec, c container, ordinal int) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := m.secret.StringData[ref.Key]
			if ref.Name != m.secret.Metadata.Name || !ok {
				t.Fatalf("%s env %s: secret %s key %s is not in secret.example.yaml", set, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			switch f := e.ValueFrom.FieldRef.FieldPath; f {
			case "metadata.name":
				env[e.Name] = podName(set, ss, ordinal)
			default:
				t.Fatalf("%s env %s: field %s is not emulated; extend the test", set, e.Name, f)
			}
		case e.ValueFrom != nil:
			t.Fatalf("%s env %s: only literal values, secretKeyRef and fieldRef are checked; extend the test", set, e.Name)
		default:
			// Unknown references stay as they are, as in Kubernetes.
			env[e.Name] = dependentVar.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := env[dependentVar.FindStringSubmatch(ref)[1]]; ok {
					return v
				}
				return ref
			})
		}
	}
	return env
}

// loadPodConfig loads the ConfigMap's chatd.yaml the way pod ordinal's chatd
// does: its environment and its command-line flags on top, so a key typo in
// any of them fails here.
func loadPodConfig(t *testing.T, m manifests, ordinal int) (config.Config, string) {
	t.Helper()
	ss, pod := m.chatd(t)
	for k, v := range podEnv(t, m, "chatd", ss, pod, ordinal) {
		t.Setenv(k, v)
	}
	if !slices.Equal(pod.Command, []string{"/chatd", "serve"}) {
		t.Errorf("command = %q, want [/chatd serve]", pod.Command)
	}
	fs := pflag.NewFlagSet("chatd serve", pflag.ContinueOnError)
	cfgPath := fs.String("config", "", "")
	config.RegisterFlags(fs)
	if err := fs.Parse(pod.Args); err != nil {
		t.Fatalf("container args %q: %v", pod.Args, err)
	}
	if *cfgPath == "" {
		t.Fatalf("container args %q do not pass --config", pod.Args)
	}
	file, ok := m.generated["chatd-config"]
	if !ok {
		t.Fatal("kustomization.yaml generates no ConfigMap chatd-config")
	}
	// The file is mounted from the ConfigMap; read the one kustomize puts
	// in it, honouring the flags that override it.
	cfg, err := config.Load(file, fs)
	if err != nil {
		t.Fatalf("%s as chatd loads it in pod %s: %v", file, podName("chatd", ss, ordinal), err)
	}
	return cfg, *cfgPath
}

// mountedConfigMap returns the ConfigMap mounted at the directory of file in
// container c, or "".
func mountedConfigMap(ss workloadSpec, c container, file string) string {
	var volume string
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path.Dir(file) {
			volume = vm.Name
		}
	}
	for _, v := range ss.Template.Spec.Volumes {
		if v.Name == volume && v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	ss, pod := m.chatd(t)

	podLabels := ss.Template.Metadata.Labels
	for k, v := range ss.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("%s selector %s=%s does not match the pod labels %v", ss.kind, k, v, podLabels)
		}
	}

	cfg, cfgPath := loadPodConfig(t, m, 0)
	defaults, err := config.Load(filepath.Join("..", "configs", "chatd.yaml"), nil)
	if err != nil {
		t.Fatalf("configs/chatd.yaml: %v", err)
	}

	ports := containerPorts(pod)
	for _, c := range []struct{ name, addr, def string }{
		{"mqtt", cfg.MQTT.Addr, defaults.MQTT.Addr},
		{"ws", cfg.MQTT.WSAddr, defaults.MQTT.WSAddr},
		{"http", cfg.HTTP.Addr, defaults.HTTP.Addr},
	} {
		want := portOf(t, c.addr)
		if ports[c.name] != want {
			t.Errorf("container port %s = %d, chatd.yaml listens on %s", c.name, ports[c.name], c.addr)
		}
		if d := portOf(t, c.def); d != want {
			t.Errorf("port %s: k8s uses %d, configs/chatd.yaml default is %d", c.name, want, d)
		}
	}
	// /metrics has a port of its own (http.metrics_addr), so that no
	// Service in front of the API serves it.
	if cfg.HTTP.MetricsAddr == "" {
		t.Errorf("chatd.yaml leaves http.metrics_addr empty: /metrics would be served on the API port")
	} else if want := portOf(t, cfg.HTTP.MetricsAddr); ports["metrics"] != want {
		t.Errorf("container port metrics = %d, chatd.yaml serves /metrics on %s", ports["metrics"], cfg.HTTP.MetricsAddr)
	}
	if len(ports) != 4 {
		t.Errorf("container ports = %v, want mqtt, ws, http and metrics", ports)
	}

	// Liveness is /healthz: a node cut off from NATS is alive (restarting
	// it would not help); readiness is /readyz, which fails while the node
	// holds no cluster membership, so the Service routes no client to it.
	for _, c := range []struct {
		name string
		p    *probe
		path string
	}{
		{"startupProbe", pod.StartupProbe, "/healthz"},
		{"livenessProbe", pod.LivenessProbe, "/healthz"},
		{"readinessProbe", pod.ReadinessProbe, "/readyz"},
	} {
		if c.p == nil || c.p.HTTPGet == nil {
			t.Errorf("%s: missing or not httpGet", c.name)
			continue
		}
		if c.p.HTTPGet.Path != c.path {
			t.Errorf("%s path = %q, want %q", c.name, c.p.HTTPGet.Path, c.path)
		}
		if got := resolvePort(t, c.name, pod, c.p.HTTPGet.Port); got != portOf(t, cfg.HTTP.Addr) {
			t.Errorf("%s port = %d, want the HTTP port %s", c.name, got, cfg.HTTP.Addr)
		}
	}

	ann := ss.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" ||
		cfg.HTTP.MetricsAddr == "" || ann["prometheus.io/port"] != strconv.Itoa(portOf(t, cfg.HTTP.MetricsAddr)) {
		t.Errorf("Prometheus annotations %v do not point at /metrics on the metrics port (http.metrics_addr %q)", ann, cfg.HTTP.MetricsAddr)
	}

	if pod.Resources.Requests["cpu"] == "" || pod.Resources.Requests["memory"] == "" {
		t.Errorf("resource requests %v: want cpu and memory", pod.Resources.Requests)
	}
	if sc := ss.Template.Spec.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod securityContext must run as a non-root user")
	}
	if sc := pod.SecurityContext; sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext must set readOnlyRootFilesystem and forbid privilege escalation")
	}
	// chatd gives Shutdown 30 s (cmd/chatd), after the preStop pause; SIGKILL
	// must not come first.
	preStop := 0
	if ps := pod.Lifecycle.PreStop; ps != nil && ps.Sleep != nil {
		preStop = ps.Sleep.Seconds
	}
	if g := ss.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= 30+preStop {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than the %d s preStop pause plus chatd's 30 s shutdown", g, preStop)
	}

	// Volumes: data_dir is writable (a scratch volume: the root file
	// system is read-only), the ConfigMap holds --config.
	mounts := map[string]string{}
	for _, vm := range pod.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	var dataDir bool
	for _, v := range ss.Template.Spec.Volumes {
		dataDir = dataDir || (v.Name == mounts[cfg.DataDir] && v.EmptyDir != nil)
	}
	for _, c := range ss.VolumeClaimTemplates {
		dataDir = dataDir || c.Metadata.Name == mounts[cfg.DataDir]
	}
	if !dataDir {
		t.Errorf("data_dir %s is mounted from neither an emptyDir nor a volume claim (mounts %v)", cfg.DataDir, mounts)
	}
	if cm := mountedConfigMap(ss, pod, cfgPath); cm != "chatd-config" || path.Base(cfgPath) != filepath.Base(m.generated["chatd-config"]) {
		t.Errorf("--config %s is not the generated ConfigMap chatd-config's %s (mounted ConfigMap %q)",
			cfgPath, filepath.Base(m.generated["chatd-config"]), cm)
	}

	// Services: each selects the pods of exactly one workload, whose
	// container ports its target ports are; every StatefulSet's serviceName
	// is a headless Service of its own pods.
	for name := range m.services {
		_, backing := m.backing(t, name)
		for _, p := range m.services[name].Ports {
			resolvePort(t, "Service "+name+" "+p.Name, backing.Template.Spec.Containers[0], p.TargetPort)
		}
	}
	for name, s := range m.workloads {
		if s.kind != "StatefulSet" {
			continue
		}
		hs, ok := m.services[s.ServiceName]
		if !ok || hs.ClusterIP != "None" {
			t.Errorf("StatefulSet %s: serviceName %q is not a headless Service", name, s.ServiceName)
		} else if set, _ := m.backing(t, s.ServiceName); set != name {
			t.Errorf("StatefulSet %s: its headless Service %s selects %s's pods", name, s.ServiceName, set)
		}
	}
	client := map[int]int{}
	for _, p := range m.services["chatd"].Ports {
		client[p.Port] = resolvePort(t, "Service chatd", pod, p.TargetPort)
	}
	for _, name := range []string{"mqtt", "ws", "http"} {
		if client[ports[name]] != ports[name] {
			t.Errorf("Service chatd does not expose %s on port %d", name, ports[name])
		}
	}
	for name, s := range m.services {
		if set, _ := m.backing(t, name); set != "chatd" {
			continue
		}
		for _, p := range s.Ports {
			if ports["metrics"] != 0 && resolvePort(t, "Service "+name, pod, p.TargetPort) == ports["metrics"] {
				t.Errorf("Service %s exposes the metrics port %d: Prometheus scrapes the pod, nobody else needs it", name, ports["metrics"])
			}
		}
	}

	t.Run("kustomize build", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Skip("kubectl not installed: kustomize build not checked")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, kubectl, "kustomize", k8sDir).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize: %v", err)
		}
		built := map[string]bool{} // ConfigMap names
		mounted := map[string]string{}
		dec := yaml.NewDecoder(bytes.NewReader(out))
		for {
			var o object
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			switch o.Kind {
			case "ConfigMap":
				built[o.Metadata.Name] = true
				var matched bool
				for g, file := range m.generated {
					want, err := os.ReadFile(file)
					if err != nil {
						t.Fatal(err)
					}
					if strings.HasPrefix(o.Metadata.Name, g+"-") && o.Data[filepath.Base(file)] == string(want) {
						matched = true
					}
				}
				if !matched {
					t.Errorf("built ConfigMap %s carries none of the generated files", o.Metadata.Name)
				}
			case "StatefulSet", "Deployment":
				var s workloadSpec
				if err := o.Spec.Decode(&s); err != nil {
					t.Fatal(err)
				}
				for _, v := range s.Template.Spec.Volumes {
					if v.ConfigMap != nil {
						mounted[o.Metadata.Name+"/"+v.Name] = v.ConfigMap.Name
					}
				}
			}
		}
		if len(mounted) != len(m.generated) {
			t.Errorf("built workloads mount ConfigMaps %v, kustomization.yaml generates %d", mounted, len(m.generated))
		}
		for v, cm := range mounted {
			if !built[cm] {
				t.Errorf("built workload volume %s mounts ConfigMap %q, the build has %v", v, cm, built)
			}
		}
	})
}

// TestKubernetesCluster: the manifests run chatd as a cluster of at least
// three nodes with unique identities, a shared secret and store, on a NATS
// cluster with JetStream, and keep two nodes serving through disruptions.
func TestKubernetesCluster(t *testing.T) {
	m := loadManifests(t)
	ss, pod := m.chatd(t)
	if ss.Replicas == nil || *ss.Replicas < 3 {
		t.Fatalf("chatd replicas = %s, want at least 3", replicasOf(ss))
	}
	replicas := *ss.Replicas

	env := map[string]envVar{}
	for _, e := range pod.Env {
		env[e.Name] = e
	}
	// Secrets and identities come from the Secret and the downward API,
	// never from literals shared by every pod.
	if e := env["MQCHAT_AUTH_JWT_SECRET"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Errorf("MQCHAT_AUTH_JWT_SECRET must come from a secretKeyRef, got %+v", e)
	}
	if e := env["MQCHAT_CLUSTER_NODE_ID"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("MQCHAT_CLUSTER_NODE_ID must be the pod name (fieldRef metadata.name), got %+v", e)
	}

	// In cluster mode the number in message ids (node_id) is claimed from
	// the membership bucket; cluster.node_id is the one identity, unique
	// because pod names are.
	nodeIDs := map[string]bool{}
	var first config.Config
	for i := range replicas {
		pod := podName("chatd", ss, i)
		t.Run(pod, func(t *testing.T) {
			cfg, _ := loadPodConfig(t, m, i)
			if !cfg.Cluster.Enabled {
				t.Fatal("cluster.enabled is false")
			}
			if cfg.Cluster.NodeID != pod {
				t.Errorf("cluster.node_id = %q, want the pod name %s", cfg.Cluster.NodeID, pod)
			}
			if nodeIDs[cfg.Cluster.NodeID] {
				t.Errorf("cluster.node_id %q already used by another pod", cfg.Cluster.NodeID)
			}
			nodeIDs[cfg.Cluster.NodeID] = true
			if len(cfg.Auth.JWTSecret) < 32 {
				t.Errorf("auth.jwt_secret has %d characters, want at least 32", len(cfg.Auth.JWTSecret))
			}
			if i == 0 {
				first = cfg
				return
			}
			// What every node must agree on.
			for _, c := range []struct{ key, got, want string }{
				{"auth.jwt_secret", cfg.Auth.JWTSecret, first.Auth.JWTSecret},
				{"cluster.name", cfg.Cluster.Name, first.Cluster.Name},
				{"cluster.ttl", cfg.Cluster.TTL.String(), first.Cluster.TTL.String()},
				{"cluster.heartbeat", cfg.Cluster.Heartbeat.String(), first.Cluster.Heartbeat.String()},
				{"cluster.nats.url", cfg.Cluster.NATS.URL, first.Cluster.NATS.URL},
				{"store.postgres.dsn", cfg.Store.Postgres.DSN, first.Store.Postgres.DSN},
			} {
				if c.got != c.want {
					t.Errorf("%s differs between %s and %s", c.key, podName("chatd", ss, 0), pod)
				}
			}
		})
	}
	if t.Failed() {
		return
	}

	// The store: the DSN names a Service of these manifests on its port.
	dsn, err := url.Parse(first.Store.Postgres.DSN)
	if err != nil || dsn.Hostname() == "" {
		t.Fatalf("store.postgres.dsn is not a postgres:// URL: %v", err)
	}
	if pw, _ := dsn.User.Password(); pw != m.secret.StringData["postgres-password"] || pw == "" {
		t.Errorf("the DSN's password is not the Secret's postgres-password")
	}
	checkServicePort(t, m, "store.postgres.dsn", dsn.Host)

	t.Run("nats", func(t *testing.T) { checkNATS(t, m, first.Cluster.NATS.URL) })

	// Rolling updates drain one node at a time (a Deployment adds the new
	// one first); disruptions leave two.
	us, surge := ss.Strategy, any(1)
	if ss.kind == "StatefulSet" { // StatefulSets cannot surge
		us, surge = ss.UpdateStrategy, nil
	}
	if us.Type != "RollingUpdate" || us.RollingUpdate == nil || us.RollingUpdate.MaxUnavailable != 1 || us.RollingUpdate.MaxSurge != surge {
		t.Errorf("%s update strategy = %+v, want RollingUpdate with maxUnavailable 1 and maxSurge %v", ss.kind, us, surge)
	}
	checkPDB(t, m, "chatd", ss, 2)

	// Spread over machines: a preferred or required anti-affinity on the
	// host name against the set's own pods.
	spread := false
	aa := ss.Template.Spec.Affinity.PodAntiAffinity
	terms := aa.Required
	for _, p := range aa.Preferred {
		terms = append(terms, p.PodAffinityTerm)
	}
	for _, term := range terms {
		if term.TopologyKey == "kubernetes.io/hostname" && selects(term.LabelSelector.MatchLabels, ss) {
			spread = true
		}
	}
	if !spread {
		t.Errorf("chatd has no pod anti-affinity on kubernetes.io/hostname against its own pods")
	}
}

func replicasOf(ss workloadSpec) string {
	if ss.Replicas == nil {
		return "unset"
	}
	return strconv.Itoa(*ss.Replicas)
}

// checkServicePort: hostport names a Service of the manifests (by its short
// name) with that port.
func checkServicePort(t *testing.T, m manifests, what, hostport string) (string, workloadSpec, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%s: %q: %v", what, hostport, err)
	}
	port, _ := strconv.Atoi(p)
	s, ok := m.services[host]
	if !ok {
		t.Fatalf("%s: host %q is no Service of the manifests", what, host)
	}
	set, backing := m.backing(t, host)
	for _, sp := range s.Ports {
		if sp.Port == port {
			return set, backing, resolvePort(t, what, backing.Template.Spec.Containers[0], sp.TargetPort)
		}
	}
	t.Fatalf("%s: Service %s has no port %d", what, host, port)
	return "", workloadSpec{}, 0
}

// checkPDB: a PodDisruptionBudget over set's pods keeps minAvailable of them
// and still lets one go.
func checkPDB(t *testing.T, m manifests, set string, ss workloadSpec, minAvailable int) {
	t.Helper()
	for name, p := range m.pdbs {
		if !selects(p.Selector.MatchLabels, ss) {
			continue
		}
		if p.MinAvailable != minAvailable || p.MaxUnavailable != nil {
			t.Errorf("PodDisruptionBudget %s: minAvailable %v, maxUnavailable %v, want minAvailable %d", name, p.MinAvailable, p.MaxUnavailable, minAvailable)
		}
		if ss.Replicas == nil || *ss.Replicas <= minAvailable {
			t.Errorf("PodDisruptionBudget %s: minAvailable %d blocks every drain of %s's %s pods", name, minAvailable, set, replicasOf(ss))
		}
		return
	}
	t.Errorf("no PodDisruptionBudget selects %s's pods", set)
}

var natsImageRe = regexp.MustCompile(`^nats:(\d+)\.(\d+)`)

// checkNATS: chatd's NATS URLs name a NATS StatefulSet of at least three
// servers, routed to each other, with JetStream on its volume, and of a
// version with per-key TTLs in key-value buckets (2.11). Its config file is
// read by nats-server's own parser as every pod would.
func checkNATS(t *testing.T, m manifests, urls string) {
	var set string
	var ss workloadSpec
	var clientPort int
	for u := range strings.SplitSeq(urls, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Scheme != "nats" {
			t.Fatalf("cluster.nats.url %q: want nats://host:port", u)
		}
		s, backing, p := checkServicePort(t, m, "cluster.nats.url", pu.Host)
		if set != "" && s != set {
			t.Fatalf("cluster.nats.url names two NATS StatefulSets, %s and %s", set, s)
		}
		set, ss, clientPort = s, backing, p
	}
	if ss.Replicas == nil || *ss.Replicas < 3 {
		t.Fatalf("NATS StatefulSet %s replicas = %s, want at least 3 (JetStream quorum survives one loss)", set, replicasOf(ss))
	}
	replicas := *ss.Replicas
	if len(ss.Template.Spec.Containers) != 1 {
		t.Fatalf("NATS StatefulSet %s: want one container", set)
	}
	c := ss.Template.Spec.Containers[0]
	if v := natsImageRe.FindStringSubmatch(c.Image); v == nil {
		t.Errorf("NATS image %q: want nats:<major>.<minor>…", c.Image)
	} else if major, _ := strconv.Atoi(v[1]); major < 2 {
		t.Errorf("NATS image %q: want 2.11 or later", c.Image)
	} else if minor, _ := strconv.Atoi(v[2]); major == 2 && minor < 11 {
		t.Errorf("NATS image %q: want 2.11 or later (key-value per-key TTLs)", c.Image)
	}
	checkPDB(t, m, set, ss, replicas/2+1)

	args := slices.Concat(c.Command, c.Args)
	i := slices.IndexFunc(args, func(a string) bool { return a == "--config" || a == "-c" })
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("NATS container %q passes no --config", args)
	}
	cfgFile := args[i+1]
	cm := mountedConfigMap(ss, c, cfgFile)
	file, ok := m.generated[cm]
	if !ok || path.Base(cfgFile) != filepath.Base(file) {
		t.Fatalf("NATS --config %s is not a generated ConfigMap's file (mounted ConfigMap %q)", cfgFile, cm)
	}
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	if len(ss.VolumeClaimTemplates) != 1 {
		t.Fatalf("NATS StatefulSet %s: want one volumeClaimTemplate for JetStream", set)
	}
	pvc := mounts[ss.VolumeClaimTemplates[0].Metadata.Name]
	ports := containerPorts(c)

	for ord := range replicas {
		pod := fmt.Sprintf("%s-%d", set, ord)
		for k, v := range podEnv(t, m, set, ss, c, ord) {
			t.Setenv(k, v)
		}
		opts, err := server.ProcessConfigFile(file)
		if err != nil {
			t.Fatalf("%s as nats-server reads it in %s: %v", file, pod, err)
		}
		if opts.ServerName != pod {
			t.Errorf("%s: server_name = %q, want the pod name", pod, opts.ServerName)
		}
		if !opts.JetStream {
			t.Errorf("%s: JetStream is off", pod)
		}
		if pvc == "" || !strings.HasPrefix(opts.StoreDir, pvc+"/") {
			t.Errorf("%s: JetStream store_dir %q is not on the volume claim (mounted at %q)", pod, opts.StoreDir, pvc)
		}
		if opts.Port != clientPort {
			t.Errorf("%s: client port %d, chatd connects to %d", pod, opts.Port, clientPort)
		}
		if opts.Cluster.Port == 0 || opts.Cluster.Port != ports["cluster"] {
			t.Errorf("%s: cluster port %d, container port cluster %d", pod, opts.Cluster.Port, ports["cluster"])
		}
		if opts.HTTPPort == 0 || opts.HTTPPort != resolvePort(t, "NATS readinessProbe", c, c.ReadinessProbe.HTTPGet.Port) {
			t.Errorf("%s: the readiness probe does not ask the monitoring port %d", pod, opts.HTTPPort)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		var want []string
		for j := range replicas {
			want = append(want, fmt.Sprintf("%s-%d.%s:%d", set, j, ss.ServiceName, opts.Cluster.Port))
		}
		slices.Sort(routes)
		if !slices.Equal(routes, want) {
			t.Errorf("%s: routes %v, want every server of the StatefulSet %v", pod, routes, want)
		}
	}
	if !m.services[ss.ServiceName].PublishNotReadyAddresses {
		t.Errorf("NATS headless Service %s must publish not-ready addresses: servers route to each other before they are ready", ss.ServiceName)
	}
}
