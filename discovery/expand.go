//go:build !nokubernetes

package discovery

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/fields"

	"github.com/vitals-dev/vitals/agent"
)

// envRef is a $(NAME) reference in a selector, written as in a Kubernetes
// container's env and args.
var envRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// ExpandSelectors replaces each $(NAME) in the field selectors of the
// kubernetes_sd_configs with the environment variable NAME, as
// the kubelet expands a container's env and args ($$ is a literal $), so
// that an agent of a DaemonSet lists only its own node's pods:
//
//	kubernetes_sd_configs:
//	  - role: pod
//	    selectors: [{role: pod, field: spec.nodeName=$(NODE_NAME)}]
//
// with NODE_NAME set from the downward API (spec.nodeName). lookup
// returns a variable's value; an unset or empty one is an error naming the
// key, so that no selector goes to the API server with a reference in it,
// and so is a selector that the value makes invalid. (Label selectors
// cannot hold a reference: Prometheus refuses "$(" in them.) The errors
// are agent.KeyErrorf errors.
func (c Config) ExpandSelectors(lookup func(name string) (string, error)) error {
	var errs []error
	for i, k := range c.KubernetesSDConfigs {
		if k == nil {
			continue
		}
		for j := range k.Selectors {
			sel := &k.Selectors[j]
			key := fmt.Sprintf("%s[%d].selectors[%d].field", KeyKubernetes, i, j)
			out, err := expand(sel.Field, lookup)
			if err == nil && out != sel.Field {
				if _, perr := fields.ParseSelector(out); perr != nil {
					err = fmt.Errorf("%q after expansion: %v", out, perr)
				}
			}
			if err != nil {
				errs = append(errs, agent.KeyErrorf(key, "%v", err))
				continue
			}
			sel.Field = out
		}
	}
	return errors.Join(errs...)
}

func expand(s string, lookup func(string) (string, error)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var err error
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := m[2 : len(m)-1]
		v, lerr := lookup(name)
		if lerr == nil && v == "" {
			lerr = fmt.Errorf("environment variable %s is empty", name)
		}
		if lerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", m, lerr)
		}
		return v
	})
	return out, err
}
