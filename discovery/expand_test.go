//go:build !nokubernetes

package discovery_test

import (
	"fmt"
	"strings"
	"testing"
)

func TestExpandSelectors(t *testing.T) {
	env := map[string]string{"NODE_NAME": "gpu-7", "EMPTY": "", "BAD": "a,b"}
	lookup := func(name string) (string, error) {
		v, ok := env[name]
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		return v, nil
	}
	c, err := decode(t, `kubernetes_sd_configs:
  - role: pod
    selectors:
      - {role: pod, field: "spec.nodeName=$(NODE_NAME),metadata.namespace!=$$(x)", label: "team=search"}
`)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ExpandSelectors(lookup); err != nil {
		t.Fatal(err)
	}
	sel := c.KubernetesSDConfigs[0].Selectors[0]
	if sel.Field != "spec.nodeName=gpu-7,metadata.namespace!=$(x)" || sel.Label != "team=search" {
		t.Errorf("expanded to field %q label %q", sel.Field, sel.Label)
	}

	for name, tc := range map[string]struct{ field, want string }{
		"unset": {"spec.nodeName=$(NOPE)", `kubernetes_sd_configs[0].selectors[0].field: $(NOPE): environment variable NOPE is not set`},
		"empty": {"spec.nodeName=$(EMPTY)", `kubernetes_sd_configs[0].selectors[0].field: $(EMPTY): environment variable EMPTY is empty`},
		"bad":   {"spec.nodeName=$(BAD)", `kubernetes_sd_configs[0].selectors[0].field: "spec.nodeName=a,b" after expansion`},
	} {
		c, err := decode(t, "kubernetes_sd_configs:\n  - role: pod\n    selectors: [{role: pod, field: \""+tc.field+"\"}]\n")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ExpandSelectors(lookup); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
