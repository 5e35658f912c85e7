//go:build !nokubernetes

package discovery

import (
	"fmt"

	promdisc "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
)

// KubernetesSDConfig is Prometheus' kubernetes_sd_configs entry. Built
// with -tags nokubernetes, the agent has no Kubernetes discovery (and
// no client-go: about half the binary and its resident memory), and the
// key is refused.
type KubernetesSDConfig = kubernetes.SDConfig

// KubernetesBuiltIn reports whether this build has Kubernetes discovery.
const KubernetesBuiltIn = true

// kubernetesCheck refuses the roles Vitals does not take.
func kubernetesCheck(k *KubernetesSDConfig) *keyMsg {
	switch k.Role {
	case kubernetes.RolePod, kubernetes.RoleService, kubernetes.RoleEndpointSlice:
		return nil
	}
	return &keyMsg{"role", fmt.Sprintf("role %q is not supported here: use pod, service or endpointslice", k.Role)}
}

func kubernetesConfig(k *KubernetesSDConfig) promdisc.Config { return k }
