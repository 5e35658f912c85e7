//go:build nokubernetes

package discovery

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	promdisc "github.com/prometheus/prometheus/discovery"
)

// KubernetesSDConfig stands for a kubernetes_sd_configs entry in a build
// without Kubernetes discovery (-tags nokubernetes): every entry is
// refused when the config is read.
type KubernetesSDConfig struct{}

// KubernetesBuiltIn reports whether this build has Kubernetes discovery.
const KubernetesBuiltIn = false

// UnmarshalYAML refuses the entry.
func (*KubernetesSDConfig) UnmarshalYAML(func(any) error) error {
	return errors.New("this agent was built without Kubernetes discovery (-tags nokubernetes)")
}

func kubernetesCheck(*KubernetesSDConfig) *keyMsg { return nil }

func kubernetesConfig(*KubernetesSDConfig) promdisc.Config { return noKube{} }

func routeKlog(*Manager, *runner)   {}
func unrouteKlog(*Manager, *runner) {}

// noKube is never run: decoding refuses every entry.
type noKube struct{}

func (noKube) Name() string { return "kubernetes" }
func (noKube) NewDiscoverer(promdisc.DiscovererOptions) (promdisc.Discoverer, error) {
	return nil, errors.New("no Kubernetes discovery in this build")
}
func (noKube) NewDiscovererMetrics(prometheus.Registerer, promdisc.RefreshMetricsInstantiator) promdisc.DiscovererMetrics {
	return &promdisc.NoopDiscovererMetrics{}
}

// ExpandSelectors has nothing to expand: a build without Kubernetes
// discovery refuses every kubernetes_sd_configs entry.
func (c Config) ExpandSelectors(func(name string) (string, error)) error { return nil }
