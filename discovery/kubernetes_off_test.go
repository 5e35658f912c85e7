//go:build nokubernetes

package discovery_test

import (
	"strings"
	"testing"
)

func TestNoKubernetesBuild(t *testing.T) {
	_, err := decode(t, "kubernetes_sd_configs:\n  - role: pod\n")
	if want := "built without Kubernetes discovery"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("kubernetes_sd_configs in a nokubernetes build: %v, want %q", err, want)
	}
}
