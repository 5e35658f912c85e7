package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/discovery"
	"github.com/vitals-dev/vitals/discovery/discoverytest"
)

// TestAnnotatedPodsBecomeTargets runs the workloads' discovery config,
// its kubernetes_sd_configs pointed at a server that speaks the
// Kubernetes list and watch API (no kube-apiserver can run in a test),
// through the agent's discovery with Prometheus' own discoverer and
// relabeling: only running pods annotated vitals.dev/probe become
// targets, once each, at the port vitals.dev/port names, with the kind,
// model and scheme their annotations give and namespace, pod and node
// labels. (The fake does not filter by field selector, so the node
// agents' spec.nodeName selector is not exercised here.)
func TestAnnotatedPodsBecomeTargets(t *testing.T) {
	kube := discoverytest.NewKubeAPI(t)
	pod := func(name, phase string, ann map[string]string, ports ...int32) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "models", UID: "uid-" + "name", Annotations: ann},
			Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "server", Image: "server"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodPhase(phase), PodIP: "10.1.0." + fmt.Sprint(len(name))},
		}
		for _, port := range ports {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: port, Protocol: corev1.ProtocolTCP})
		}
		return p
	}
	probe := func(port string, more ...string) map[string]string {
		a := map[string]string{"vitals.dev/probe": "true", "vitals.dev/port": port}
		for i := 0; i+1 < len(more); i += 2 {
			a["vitals.dev/"+more[i]] = more[i+1]
		}
		return a
	}
	kube.Apply(pod("llm-0", "Running", probe("8080", "kind", "llamacpp", "model", "qwen2.5-0.5b"), 8080, 9090))
	kube.Apply(pod("tls-00", "Running", probe("8443", "scheme", "https"), 8443))
	kube.Apply(pod("web-000", "Running", nil, 80))
	kube.Apply(pod("wait-0000", "Pending", probe("8080"), 8080))
	kube.Apply(pod("off-00000", "Running", map[string]string{"vitals.dev/probe": "false", "vitals.dev/port": "8080"}, 8080))
	kube.Apply(pod("noport-000000", "Running", probe("7000"), 8080))

	for _, file := range []string{"cluster/core.yaml", "node/core.yaml"} {
		t.Run(file, func(t *testing.T) { checkTargets(t, workloadDiscovery(t, file, kube.URL)) })
	}
}

func checkTargets(t *testing.T, cfg discovery.Config) {
	var (
		mu      sync.Mutex
		targets []discovery.Target
	)
	m, err := discovery.NewManager(discovery.Options{UpdateInterval: 20 * time.Millisecond, OnUpdate: func(ts []discovery.Target) {
		mu.Lock()
		targets = ts
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ApplyConfig(cfg, discovery.Shard{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	want := []discovery.Target{
		{ID: "models.llm-0", Endpoint: "http://10.1.0.5:8080", Kind: "llamacpp", Model: "qwen2.5-0.5b",
			Labels: map[string]string{"namespace": "models", "pod": "llm-0", "node": "node-a"}},
		{ID: "models.tls-00", Endpoint: "https://10.1.0.6:8443",
			Labels: map[string]string{"namespace": "models", "pod": "tls-00", "node": "node-a"}},
	}
	var got []discovery.Target
	ok := agenttest.Within(15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		got = targets
		return len(got) == len(want)
	})
	if !ok {
		t.Fatalf("targets %+v, want %+v", got, want)
	}
	for i := range want {
		g := got[i]
		g.Source = ""
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(want[i])
		if string(gj) != string(wj) {
			t.Errorf("target %d:\n got %s\nwant %s", i, gj, wj)
		}
	}
}

// workloadDiscovery reads the discovery keys of a workload's core.yaml,
// with every kubernetes_sd_configs entry sent to apiServer.
func workloadDiscovery(t *testing.T, file, apiServer string) discovery.Config {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Core struct {
			APIGateway struct {
				Plugins struct {
					Extmanager struct {
						Kubernetes []map[string]any `json:"kubernetes_sd_configs"`
						Relabel    []map[string]any `json:"relabel_configs"`
					} `json:"extmanager"`
				} `json:"plugins"`
			} `json:"api_gateway"`
		} `json:"core"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	em := f.Core.APIGateway.Plugins.Extmanager
	if len(em.Kubernetes) == 0 || len(em.Relabel) == 0 {
		t.Fatalf("%s has no kubernetes_sd_configs or relabel_configs", file)
	}
	for _, k := range em.Kubernetes {
		k["api_server"] = apiServer
	}
	text, err := yaml.Marshal(map[string]any{"kubernetes_sd_configs": em.Kubernetes, "relabel_configs": em.Relabel})
	if err != nil {
		t.Fatal(err)
	}
	s, err := agent.NewSection(string(text))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		D discovery.Config `yaml:",inline"`
	}
	if err := s.Decode(&c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if err := c.D.Validate(); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c.D
}
