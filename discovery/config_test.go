package discovery_test

import (
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/discovery"
)

type section struct {
	Discovery discovery.Config `yaml:",inline"`
	Other     string           `yaml:"other"`
}

func decode(t *testing.T, text string) (discovery.Config, error) {
	t.Helper()
	s, err := agent.NewSection(text)
	if err != nil {
		t.Fatal(err)
	}
	var v section
	if err := s.Decode(&v); err != nil {
		return v.Discovery, err
	}
	if err := v.Discovery.Validate(); err != nil {
		return v.Discovery, s.Place("", err)
	}
	return v.Discovery, nil
}

func TestDecodeLikePrometheus(t *testing.T) {
	cfg, err := decode(t, `
file_sd_configs:
  - files: [a/*.json]
    refresh_interval: 1m
http_sd_configs:
  - url: http://127.0.0.1:9/targets
    basic_auth: {username: u, password: p}
dns_sd_configs:
  - names: [_llm._tcp.example.]
    refresh_interval: 10s
  - names: [llm.example.]
    type: A
    port: 8000
relabel_configs:
  - source_labels: [__meta_kubernetes_pod_label_app]
    regex: vllm
    action: keep
  - target_label: team
    replacement: search
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.FileSDConfigs[0].Files[0]; got != "a/*.json" {
		t.Errorf("files = %q", got)
	}
	if got := cfg.HTTPSDConfigs[0].HTTPClientConfig.BasicAuth.Username; got != "u" {
		t.Errorf("basic_auth.username = %q", got)
	}
	if got := cfg.DNSSDConfigs[1].Port; got != 8000 {
		t.Errorf("port = %d", got)
	}
	if got := string(cfg.RelabelConfigs[0].Action); got != "keep" {
		t.Errorf("action = %q", got)
	}
	// Prometheus' defaults apply.
	if got := cfg.RelabelConfigs[1].Action; got != "replace" {
		t.Errorf("default action = %q", got)
	}
	if got := cfg.DNSSDConfigs[0].Type; got != "SRV" {
		t.Errorf("default type = %q", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", "file_sd_configs:\n  - files: [a.json]\n    refresh: 1m\n", `section.file_sd_configs[0]`},
		{"dns without port", "dns_sd_configs:\n  - names: [a.example.]\n    type: A\n", "a port is required"},
		{"http bad url", "http_sd_configs:\n  - url: ftp://x\n", "URL scheme must be"},
		{"relabel target", "relabel_configs:\n  - source_labels: [a]\n    action: hashmod\n    target_label: t\n", "relabel_configs[0]: relabel configuration for hashmod requires non-zero modulus"},
		{"file pattern", "file_sd_configs:\n  - files: ['a/*.txt']\n", "path name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "<section>:") {
				t.Errorf("error %q names no place", err)
			}
		})
	}
}
