package discovery

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/prometheus/common/model"
	promdisc "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/dns"
	"github.com/prometheus/prometheus/discovery/file"
	"github.com/prometheus/prometheus/discovery/http"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/vitals-dev/vitals/agent"
)

// Config is the service discovery part of a section, keyed and shaped as
// in a Prometheus scrape config, so that a Prometheus user's
// file_sd_configs, http_sd_configs, dns_sd_configs, kubernetes_sd_configs
// and relabel_configs read the same:
//
//	file_sd_configs:
//	  - files: [targets/*.json]
//	    refresh_interval: 1m
//	http_sd_configs:
//	  - url: http://inventory.internal/targets
//	dns_sd_configs:
//	  - names: [_llm._tcp.example.internal]
//	kubernetes_sd_configs:
//	  - role: pod                     # pod, service or endpointslice
//	relabel_configs:
//	  - source_labels: [__meta_kubernetes_pod_label_app]
//	    regex: vllm
//	    action: keep
//
// Each entry is decoded by Prometheus' own code (its UnmarshalYAML runs its
// own checks); Validate adds the checks a Prometheus config load makes.
type Config struct {
	FileSDConfigs       []*file.SDConfig      `yaml:"file_sd_configs"`
	HTTPSDConfigs       []*http.SDConfig      `yaml:"http_sd_configs"`
	DNSSDConfigs        []*dns.SDConfig       `yaml:"dns_sd_configs"`
	KubernetesSDConfigs []*KubernetesSDConfig `yaml:"kubernetes_sd_configs"`
	RelabelConfigs      []*relabel.Config     `yaml:"relabel_configs"`
}

// The config keys of the mechanisms, which also name the sources in
// metrics and logs: "file_sd_configs[0]".
const (
	KeyFile       = "file_sd_configs"
	KeyHTTP       = "http_sd_configs"
	KeyDNS        = "dns_sd_configs"
	KeyKubernetes = "kubernetes_sd_configs"
	KeyRelabel    = "relabel_configs"
)

// MaxSources bounds the discovery configs of one section, in all.
const MaxSources = 64

// Empty reports whether the config has no source.
func (c Config) Empty() bool { return len(c.sources()) == 0 }

// Equal reports whether two configs discover and relabel the same.
func (c Config) Equal(o Config) bool { return reflect.DeepEqual(c, o) }

// SetDirectory makes the relative file paths of every source (files,
// TLS and credential files) relative to dir, as Prometheus does with the
// config file's directory.
func (c Config) SetDirectory(dir string) {
	for _, s := range c.sources() {
		if d, ok := s.cfg.(interface{ SetDirectory(string) }); ok {
			d.SetDirectory(dir)
		}
	}
}

// Validate checks what decoding alone does not. Its errors are
// agent.KeyErrorf errors naming the key ("relabel_configs[2].target_label"),
// for agent.Section.Place.
func (c Config) Validate() error {
	var errs []error
	if n := len(c.sources()); n > MaxSources {
		errs = append(errs, agent.KeyErrorf(KeyFile, "%d discovery configs in all; at most %d", n, MaxSources))
	}
	check := func(key string, nils int) {
		if nils >= 0 {
			errs = append(errs, agent.KeyErrorf(fmt.Sprintf("%s[%d]", key, nils), "empty entry"))
		}
	}
	check(KeyFile, firstNil(c.FileSDConfigs))
	check(KeyHTTP, firstNil(c.HTTPSDConfigs))
	check(KeyDNS, firstNil(c.DNSSDConfigs))
	check(KeyKubernetes, firstNil(c.KubernetesSDConfigs))
	check(KeyRelabel, firstNil(c.RelabelConfigs))
	for i, k := range c.KubernetesSDConfigs {
		if k != nil {
			if err := kubernetesCheck(k); err != nil {
				errs = append(errs, agent.KeyErrorf(fmt.Sprintf("%s[%d].%s", KeyKubernetes, i, err.key), "%s", err.msg))
			}
		}
	}
	for i, r := range c.RelabelConfigs {
		if r == nil {
			continue
		}
		if err := r.Validate(model.UTF8Validation); err != nil {
			errs = append(errs, agent.KeyErrorf(fmt.Sprintf("%s[%d]", KeyRelabel, i), "%v", err))
		}
	}
	return errors.Join(errs...)
}

// keyMsg is a problem with one key below a config entry.
type keyMsg struct{ key, msg string }

func firstNil[T any](s []*T) int {
	for i, v := range s {
		if v == nil {
			return i
		}
	}
	return -1
}

// source is one configured discovery mechanism, named by its key.
type source struct {
	name string // file_sd_configs[0]
	cfg  promdisc.Config
}

func (c Config) sources() []source {
	var out []source
	add := func(key string, i int, cfg promdisc.Config) {
		out = append(out, source{name: fmt.Sprintf("%s[%d]", key, i), cfg: cfg})
	}
	for i, s := range c.FileSDConfigs {
		if s != nil {
			add(KeyFile, i, s)
		}
	}
	for i, s := range c.HTTPSDConfigs {
		if s != nil {
			add(KeyHTTP, i, s)
		}
	}
	for i, s := range c.DNSSDConfigs {
		if s != nil {
			add(KeyDNS, i, s)
		}
	}
	for i, s := range c.KubernetesSDConfigs {
		if s != nil {
			add(KeyKubernetes, i, kubernetesConfig(s))
		}
	}
	return out
}
