package catalog

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/common/config"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// ServiceName is the container service holding the *Catalog; the
// ExtManager provides it.
const ServiceName = "ai_catalog"

// Source is where an AI plugin was discovered.
type Source string

// The discovery sources.
const (
	SourceConfig    Source = "config"
	SourceDirectory Source = "directory"
	SourceInProcess Source = "inprocess"
	SourceBus       Source = "bus"
	// SourceDiscovery is the Prometheus-style discovery of package
	// discovery: file, http, dns and kubernetes SD configs.
	SourceDiscovery Source = "discovery"
)

// Sources lists every source, for bounded metric labels.
var Sources = []Source{SourceConfig, SourceDirectory, SourceInProcess, SourceBus, SourceDiscovery}

// AI is implemented by host plugins that are AI plugins. The ExtManager
// finds running host plugins that implement it and lists them with source
// inprocess. Capabilities says what the plugin is and can do; HealthCheck
// is its own verdict on its health. Both must be safe for concurrent use
// and return when ctx is done.
type AI interface {
	Capabilities(ctx context.Context) (probes.Detection, error)
	HealthCheck(ctx context.Context) agent.Health
}

// Endpointer is implemented by in-process AI plugins that also serve HTTP,
// so the health engine can probe them like any server.
type Endpointer interface {
	Endpoint() string
}

// Spec is what a discovery source knows of an AI plugin.
type Spec struct {
	ID       string
	Source   Source
	Kind     probes.Kind
	Endpoint string
	// MetricsURL is where the server's Prometheus metrics are when not at
	// the endpoint's /metrics (Triton's metrics port); "" for the kind's
	// default.
	MetricsURL string
	// PID of a local process, when known.
	PID   int
	Model string
	// Version as the source reports it (bus announcements); detection
	// fills it for servers.
	Version string
	// Capabilities declared by the source; detection replaces them with
	// what the server says and does, and keeps them where it learned
	// nothing.
	Capabilities []probes.Capability
	Labels       map[string]string
	Dependencies []string
	// Manifest is the file a directory plugin came from.
	Manifest string
	// HeartbeatInterval of a bus plugin.
	HeartbeatInterval time.Duration
	// Owner is the bus peer (bus.Message.Peer) that announced a bus plugin:
	// only it may update the plugin, heartbeat for it or say goodbye for it,
	// until it does say goodbye or the plugin is lost.
	Owner string
	// HTTPConfig is how every request to the server is made (credentials,
	// TLS, proxy, headers): Prometheus' http_config. nil for the agent's
	// default client. It is shared, never changed once in a Spec.
	HTTPConfig *config.HTTPClientConfig
}

// DetectState says how far capability detection got.
type DetectState string

// Detection states.
const (
	DetectPending  DetectState = "pending"
	DetectDone     DetectState = "detected"
	DetectUnknown  DetectState = "unknown" // answered, but no family recognised it
	DetectFailed   DetectState = "failed"  // could not be asked
	DetectDeclared DetectState = "declared"
)

// Presence says whether a plugin is heard from.
type Presence string

// Presence values: bus plugins whose heartbeats stop are lost until they
// are heard again or deregistered.
const (
	PresenceActive Presence = "active"
	PresenceLost   Presence = "lost"
)

// AIPlugin is one AI plugin in the catalog.
type AIPlugin struct {
	ID           string              `json:"id"`
	Name         string              `json:"name"`
	Kind         probes.Kind         `json:"kind"`
	Source       Source              `json:"source"`
	Endpoint     string              `json:"endpoint,omitempty"`
	MetricsURL   string              `json:"metrics_url,omitempty"`
	PID          int                 `json:"pid,omitempty"`
	Server       string              `json:"server,omitempty"`
	Version      string              `json:"version,omitempty"`
	Capabilities []probes.Capability `json:"capabilities"`
	Models       []probes.Model      `json:"models"`
	Labels       map[string]string   `json:"labels,omitempty"`
	Dependencies []string            `json:"dependencies,omitempty"`
	Manifest     string              `json:"manifest,omitempty"`
	Owner        string              `json:"owner,omitempty"`
	Presence     Presence            `json:"presence"`
	Health       *health.Status      `json:"health,omitempty"`
	Detection    DetectionInfo       `json:"detection"`
	FirstSeen    time.Time           `json:"first_seen"`
	LastSeen     time.Time           `json:"last_seen"`
	// HTTPConfig is the Spec's, as Prometheus writes it: every secret in
	// it is "<secret>".
	HTTPConfig *config.HTTPClientConfig `json:"http_config,omitempty"`

	// declared is what the source said that the fields above do not keep
	// as it said it; the rest of its Spec they keep as they are (apply).
	declared declared
}

// declared is the part of a Spec that detection may change in an AIPlugin
// (kind, version, capabilities) or that it does not show.
type declared struct {
	kind              probes.Kind
	model, version    string
	capabilities      []probes.Capability
	heartbeatInterval time.Duration
}

// DetectionInfo is the state of capability detection for a plugin.
type DetectionInfo struct {
	State    DetectState `json:"state"`
	Reason   string      `json:"reason,omitempty"`
	Attempts int         `json:"attempts,omitempty"`
	At       time.Time   `json:"at,omitzero"`
}

// Spec returns what the source said.
func (p AIPlugin) Spec() Spec {
	d := p.declared
	return Spec{ID: p.ID, Source: p.Source, Kind: d.kind, Endpoint: p.Endpoint, MetricsURL: p.MetricsURL, PID: p.PID,
		Model: d.model, Version: d.version, Capabilities: d.capabilities, Labels: p.Labels, Dependencies: p.Dependencies,
		Manifest: p.Manifest, HeartbeatInterval: d.heartbeatInterval, Owner: p.Owner, HTTPConfig: p.HTTPConfig}
}

// HasCapability reports whether the plugin can do c.
func (p AIPlugin) HasCapability(c probes.Capability) bool {
	for _, have := range p.Capabilities {
		if have == c {
			return true
		}
	}
	return false
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// ValidID checks an AI plugin id: lowercase letters, digits, '_', '-' and
// '.', at most 63 characters. Ids are metric label values and URL path
// elements.
func ValidID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("invalid id %q: want %s", id, idRE)
	}
	return nil
}
