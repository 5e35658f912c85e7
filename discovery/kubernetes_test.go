//go:build !nokubernetes

package discovery_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/discovery"
	"github.com/vitals-dev/vitals/discovery/discoverytest"
)

func pod(name, app, ip string, port int32) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "models", UID: "uid-" + "name", Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "server", Image: "vllm/vllm-openai",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

// TestKubernetesSD runs Prometheus' kubernetes discoverer (client-go
// informers) against an HTTP server that speaks the Kubernetes list and
// watch API: no kube-apiserver can run in a test.
func TestKubernetesSD(t *testing.T) {
	kube := discoverytest.NewKubeAPI(t)
	kube.Apply(pod("vllm-0", "vllm", "10.1.0.1", 8000))
	kube.Apply(pod("web-0", "web", "10.1.0.2", 80))
	kube.Apply(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "ollama", Namespace: "models", Labels: map[string]string{"app": "ollama"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 11434, Protocol: corev1.ProtocolTCP}}},
	})
	ready := true
	port, portName := int32(11434), "http"
	kube.Apply(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "ollama-abc", Namespace: "models", Labels: map[string]string{discoveryv1.LabelServiceName: "ollama"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.2.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"10.2.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
	})

	h := run(t, `
kubernetes_sd_configs:
  - role: pod
    api_server: `+kube.URL+`
    namespaces: {names: [models]}
  - role: endpointslice
    api_server: `+kube.URL+`
  - role: service
    api_server: `+kube.URL+`
relabel_configs:
  # pods: the vllm ones, named by pod
  - source_labels: [__meta_kubernetes_pod_label_app]
    regex: web
    action: drop
  - source_labels: [__meta_kubernetes_pod_name]
    regex: (.+)
    target_label: __vitals_id__
  - source_labels: [__meta_kubernetes_pod_label_app]
    regex: (.+)
    target_label: __vitals_kind__
  # endpointslices: ollama, one id per endpoint
  - source_labels: [__meta_kubernetes_endpointslice_name, __meta_kubernetes_endpointslice_address_target_name, __address__]
    regex: ollama-.*;;([0-9.]+):.*
    target_label: __vitals_id__
    replacement: ollama-$1
  - source_labels: [__meta_kubernetes_service_name]
    regex: (.+)
    target_label: service
  - source_labels: [__meta_kubernetes_namespace]
    target_label: namespace
`, discovery.Shard{})
	h.waitIDs("ollama-10.2.0.1,ollama-10.2.0.2,ollama.models.svc-11434,vllm-0")
	for _, tg := range h.last() {
		switch tg.ID {
		case "vllm-0":
			if tg.Endpoint != "http://10.1.0.1:8000" || tg.Kind != "vllm" || tg.Labels["namespace"] != "models" {
				t.Errorf("pod target = %+v", tg)
			}
		case "ollama-10.2.0.1":
			if tg.Endpoint != "http://10.2.0.1:11434" || tg.Labels["service"] != "ollama" || tg.Source != "kubernetes_sd_configs[1]" {
				t.Errorf("endpointslice target = %+v", tg)
			}
		}
	}

	// Watches carry changes: a pod comes, one goes, an endpoint goes.
	kube.Apply(pod("vllm-1", "vllm", "10.1.0.3", 8000))
	kube.Delete(pod("vllm-0", "vllm", "10.1.0.1", 8000))
	kube.Apply(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "ollama-abc", Namespace: "models", Labels: map[string]string{discoveryv1.LabelServiceName: "ollama"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.2.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
	})
	h.waitIDs("ollama-10.2.0.2,ollama.models.svc-11434,vllm-1")

	// The API server fails: the informers keep their caches, so the
	// targets stay, and client-go's list and watch errors are counted.
	lists := kube.Lists(discoverytest.Pods)
	kube.Fail(true)
	agenttest.Eventually(t, 20*time.Second, "kubernetes errors counted", func() bool { return h.errors("kubernetes_sd_configs[0]") >= 1 })
	if got := h.ids(); got != "ollama-10.2.0.2,ollama.models.svc-11434,vllm-1" {
		t.Errorf("while failing: targets %s, want the last good ones", got)
	}
	kube.Fail(false)
	// client-go's reflector retries a failing API server after a jittered
	// backoff that doubles up to between 30 and 60 s: on a loaded machine
	// the failure above lasts long enough for the next retry to be that far.
	agenttest.Eventually(t, 75*time.Second, "the pod informer lists again", func() bool { return kube.Lists(discoverytest.Pods) > lists })
	kube.Apply(pod("vllm-2", "vllm", "10.1.0.4", 8000))
	h.waitIDs("ollama-10.2.0.2,ollama.models.svc-11434,vllm-1,vllm-2")
}

func TestDecodeKubernetes(t *testing.T) {
	cfg, err := decode(t, `
kubernetes_sd_configs:
  - role: endpointslice
    api_server: http://127.0.0.1:9
    namespaces: {names: [models]}
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.KubernetesSDConfigs[0].NamespaceDiscovery.Names; len(got) != 1 || got[0] != "models" {
		t.Errorf("namespaces = %v", got)
	}
	_, err = decode(t, "kubernetes_sd_configs:\n  - role: node\n    api_server: http://127.0.0.1:9\n")
	if want := `<section>:2:5: section.kubernetes_sd_configs[0].role: role "node" is not supported`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("role node: %v, want %q", err, want)
	}
}

// A kubernetes source whose config changes on reload restarts, and
// client-go's errors still count against it.
func TestKubernetesSDReloaded(t *testing.T) {
	kube := discoverytest.NewKubeAPI(t)
	kube.Apply(pod("vllm-0", "vllm", "10.1.0.1", 8000))
	conf := func(ns string) string {
		return "kubernetes_sd_configs:\n  - role: pod\n    api_server: " + kube.URL + "\n    namespaces: {names: [" + ns + "]}\n"
	}
	h := run(t, conf("models"), discovery.Shard{})
	h.waitIDs("10.1.0.1-8000")
	cfg, err := decode(t, conf("models, other"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.m.ApplyConfig(cfg, discovery.Shard{}); err != nil {
		t.Fatal(err)
	}
	kube.Apply(pod("vllm-1", "vllm", "10.1.0.2", 8000))
	h.waitIDs("10.1.0.1-8000,10.1.0.2-8000")
	kube.Fail(true)
	agenttest.Eventually(t, 20*time.Second, "errors of the restarted source counted", func() bool { return h.errors("kubernetes_sd_configs[0]") >= 1 })
	kube.Fail(false)
}
