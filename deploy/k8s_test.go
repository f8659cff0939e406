package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

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

type statefulSetSpec struct {
	Replicas    *int   `yaml:"replicas"`
	ServiceName string `yaml:"serviceName"`
	Selector    struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
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
			Containers []container `yaml:"containers"`
			Volumes    []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	} `yaml:"volumeClaimTemplates"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
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
	ClusterIP string            `yaml:"clusterIP"`
	Selector  map[string]string `yaml:"selector"`
	Ports     []struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort any    `yaml:"targetPort"`
	} `yaml:"ports"`
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
	kust        kustomization
	statefulSet statefulSetSpec
	pod         container
	services    map[string]serviceSpec
	secret      object
	configFile  string // the generated ConfigMap's chatd.yaml, on disk
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
	var m manifests
	raw, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &m.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if len(m.kust.ConfigMapGenerator) != 1 || len(m.kust.ConfigMapGenerator[0].Files) != 1 {
		t.Fatalf("kustomization.yaml: want one configMapGenerator with one file, got %+v", m.kust.ConfigMapGenerator)
	}
	m.configFile = filepath.Join(k8sDir, m.kust.ConfigMapGenerator[0].Files[0])

	// Every manifest in the directory is either applied by the
	// kustomization or is the Secret template; none is forgotten.
	listed := map[string]bool{"kustomization.yaml": true, filepath.Base(m.configFile): true, "secret.example.yaml": true}
	for _, r := range m.kust.Resources {
		listed[r] = true
	}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is not in kustomization.yaml resources", f)
		}
	}

	m.services = map[string]serviceSpec{}
	var statefulSets int
	for _, r := range m.kust.Resources {
		for _, o := range readYAMLDocs(t, filepath.Join(k8sDir, r)) {
			checkObject(t, r, o)
			switch o.Kind {
			case "StatefulSet":
				statefulSets++
				if err := o.Spec.Decode(&m.statefulSet); err != nil {
					t.Fatalf("%s: StatefulSet spec: %v", r, err)
				}
			case "Service":
				var s serviceSpec
				if err := o.Spec.Decode(&s); err != nil {
					t.Fatalf("%s: Service spec: %v", r, err)
				}
				m.services[o.Metadata.Name] = s
			default:
				t.Errorf("%s: unexpected kind %s", r, o.Kind)
			}
		}
	}
	if statefulSets != 1 || len(m.statefulSet.Template.Spec.Containers) != 1 {
		t.Fatalf("want one StatefulSet with one container, got %d StatefulSets", statefulSets)
	}
	m.pod = m.statefulSet.Template.Spec.Containers[0]

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

// loadPodConfig loads the ConfigMap's chatd.yaml the way the container's
// chatd does: its environment (Secret values from the template) and its
// command-line flags on top, so a key typo in any of them fails here.
func loadPodConfig(t *testing.T, m manifests) (config.Config, string) {
	t.Helper()
	for _, e := range m.pod.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := m.secret.StringData[ref.Key]
			if ref.Name != m.secret.Metadata.Name || !ok {
				t.Fatalf("env %s: secret %s key %s is not in secret.example.yaml", e.Name, ref.Name, ref.Key)
			}
			t.Setenv(e.Name, v)
		case e.ValueFrom != nil:
			t.Fatalf("env %s: only literal values and secretKeyRef are checked; extend the test", e.Name)
		default:
			t.Setenv(e.Name, e.Value)
		}
	}
	if !slices.Equal(m.pod.Command, []string{"/chatd", "serve"}) {
		t.Errorf("command = %q, want [/chatd serve]", m.pod.Command)
	}
	fs := pflag.NewFlagSet("chatd serve", pflag.ContinueOnError)
	cfgPath := fs.String("config", "", "")
	config.RegisterFlags(fs)
	if err := fs.Parse(m.pod.Args); err != nil {
		t.Fatalf("container args %q: %v", m.pod.Args, err)
	}
	if *cfgPath == "" {
		t.Fatalf("container args %q do not pass --config", m.pod.Args)
	}
	// The file is mounted from the ConfigMap; read the one kustomize puts
	// in it, honouring the flags that override it.
	cfg, err := config.Load(m.configFile, fs)
	if err != nil {
		t.Fatalf("%s as chatd loads it in the pod: %v", m.configFile, err)
	}
	return cfg, *cfgPath
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
	ss := m.statefulSet
	pod := m.pod

	if ss.Replicas == nil || *ss.Replicas != 1 {
		t.Errorf("StatefulSet replicas must be set to 1: chatd has one writer per chat and no scale-out yet")
	}
	podLabels := ss.Template.Metadata.Labels
	for k, v := range ss.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("StatefulSet selector %s=%s does not match the pod labels %v", k, v, podLabels)
		}
	}

	cfg, cfgPath := loadPodConfig(t, m)
	defaults, err := config.Load(filepath.Join("..", "configs", "chatd.yaml"), nil)
	if err != nil {
		t.Fatalf("configs/chatd.yaml: %v", err)
	}

	ports := map[string]int{}
	for _, p := range pod.Ports {
		ports[p.Name] = p.ContainerPort
	}
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
	resolve := func(what string, p any) int {
		switch v := p.(type) {
		case int:
			return v
		case string:
			if n, ok := ports[v]; ok {
				return n
			}
		}
		t.Errorf("%s: port %v is no container port", what, p)
		return 0
	}

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
		if got := resolve(c.name, c.p.HTTPGet.Port); got != portOf(t, cfg.HTTP.Addr) {
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
	// chatd gives Shutdown 30 s (cmd/chatd); SIGKILL must not come first.
	if g := ss.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= 30 {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than chatd's 30 s shutdown", g)
	}

	// Volumes: the PVC holds data_dir, the ConfigMap holds --config.
	mounts := map[string]string{}
	for _, vm := range pod.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	if len(ss.VolumeClaimTemplates) != 1 || mounts[cfg.DataDir] != ss.VolumeClaimTemplates[0].Metadata.Name {
		t.Errorf("data_dir %s is not mounted from the volumeClaimTemplate (mounts %v)", cfg.DataDir, mounts)
	}
	cfgVolume := mounts[path.Dir(cfgPath)]
	var cfgMap string
	for _, v := range ss.Template.Spec.Volumes {
		if v.Name == cfgVolume && v.ConfigMap != nil {
			cfgMap = v.ConfigMap.Name
		}
	}
	if cfgMap != m.kust.ConfigMapGenerator[0].Name || path.Base(cfgPath) != filepath.Base(m.configFile) {
		t.Errorf("--config %s is not the generated ConfigMap %s's %s (volume %q → ConfigMap %q)",
			cfgPath, m.kust.ConfigMapGenerator[0].Name, filepath.Base(m.configFile), cfgVolume, cfgMap)
	}

	// Services: selectors reach the pod, target ports are container ports,
	// and the client Service carries all three listeners.
	if s, ok := m.services[ss.ServiceName]; !ok || s.ClusterIP != "None" {
		t.Errorf("serviceName %q is not a headless Service", ss.ServiceName)
	}
	for name, s := range m.services {
		for k, v := range s.Selector {
			if podLabels[k] != v {
				t.Errorf("Service %s selector %s=%s does not match the pod", name, k, v)
			}
		}
		for _, p := range s.Ports {
			resolve("Service "+name+" "+p.Name, p.TargetPort)
		}
	}
	client := map[int]int{}
	for _, p := range m.services["chatd"].Ports {
		client[p.Port] = resolve("Service chatd", p.TargetPort)
	}
	for _, name := range []string{"mqtt", "ws", "http"} {
		if client[ports[name]] != ports[name] {
			t.Errorf("Service chatd does not expose %s on port %d", name, ports[name])
		}
	}
	for name, s := range m.services {
		for _, p := range s.Ports {
			if ports["metrics"] != 0 && resolve("Service "+name, p.TargetPort) == ports["metrics"] {
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
		var cm, volume string
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
				cm = o.Metadata.Name
				want, err := os.ReadFile(m.configFile)
				if err != nil {
					t.Fatal(err)
				}
				if o.Data[filepath.Base(m.configFile)] != string(want) {
					t.Errorf("built ConfigMap %s does not carry %s", cm, m.configFile)
				}
			case "StatefulSet":
				var s statefulSetSpec
				if err := o.Spec.Decode(&s); err != nil {
					t.Fatal(err)
				}
				for _, v := range s.Template.Spec.Volumes {
					if v.ConfigMap != nil {
						volume = v.ConfigMap.Name
					}
				}
			}
		}
		if cm == "" || cm != volume {
			t.Errorf("built StatefulSet mounts ConfigMap %q, the build has %q", volume, cm)
		}
	})
}
