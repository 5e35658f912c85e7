package agent

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// Priority orders plugins that do not depend on each other: lower starts
// first. Dependencies always win over priority.
type Priority int

// The four priority bands. A plugin picks the band of the job it does.
const (
	PriorityInfrastructure Priority = 10
	PrioritySecurity       Priority = 20
	PriorityMiddleware     Priority = 30
	PriorityBusiness       Priority = 40
)

// String returns the band's name, or the number for a custom priority.
func (p Priority) String() string {
	switch p {
	case PriorityInfrastructure:
		return "infrastructure"
	case PrioritySecurity:
		return "security"
	case PriorityMiddleware:
		return "middleware"
	case PriorityBusiness:
		return "business"
	}
	return fmt.Sprintf("%d", int(p))
}

// Metadata describes a plugin. It must be constant for the life of a plugin
// value: the host reads it before Initialize and may read it at any time.
type Metadata struct {
	// Name is unique within the agent and matches ^[a-z][a-z0-9_]{0,62}$.
	Name        string
	Version     string
	Description string
	Priority    Priority
	// Dependencies names plugins, or services that other plugins provide,
	// that must be running before this plugin is initialized and started.
	Dependencies []string
}

// Plugin is the contract between the host and every plugin.
//
// The host calls the lifecycle steps (Initialize, Start, Stop and
// Reloader's Reload) in this order, from one goroutine per step, and never
// two steps of one plugin at once, not even after a step overran its bound
// (see below). Metadata, HealthCheck, Ready, Routes and WrapHTTP are not
// steps: the host calls them at any time, concurrently with a step.
//
//   - Initialize once, after every dependency has been initialized, with
//     the plugin's own Host. It reads services through the Host,
//     validates and allocates, and registers the services the plugin
//     provides and its metrics. It must not start background work. It may
//     block for I/O but must return when ctx is done; the host bounds it
//     (15 s by default).
//   - Start once, after Initialize returned nil and every dependency
//     started. It must return quickly: long-running work goes in
//     goroutines started with the Host's Go, which the host owns. ctx
//     bounds the call only; it is cancelled when Start returns, so
//     background work must not use it.
//   - Stop once per shutdown, in reverse start order. Before calling it
//     the host cancels the ctx of the plugin's Go goroutines; Stop
//     releases what Initialize and Start acquired (closing a socket that
//     a goroutine reads from, say), returning when done or when ctx is
//     done. After Stop returns the host waits for those goroutines, ends
//     the plugin's event subscriptions and drops the metric collectors it
//     registered (also after a failed Initialize), so a plugin keeps no
//     cancel, WaitGroup or stopped flag for its goroutines and never
//     unregisters its own metrics. Stop must be safe to call without
//     Start (after Initialize, or after a failed Start) and safe to call
//     twice; the second call returns nil.
//
// A plugin that returns an error, panics or overruns its bound in any step
// is marked failed; the other plugins keep running unless it is required.
//
// A step that overruns its bound is not forgotten: its ctx is cancelled
// and the host stops waiting for it, but the next step of that plugin
// (Stop after a Start that timed out, the next Reload after one that did)
// first waits for it to return, and that wait counts against the next
// step's own bound. A Start that returns late is therefore still stopped,
// and a late Initialize that succeeded is owed its Stop. If the late step
// has not returned when the next step's bound ends, or if Stop itself
// overruns and still runs, the plugin is abandoned: it stays failed with a
// reason that says so (PluginStatus.Abandoned, vitals_plugin_abandoned),
// its health is failing without asking it, reloads and Enable leave it
// alone (no new instance is built beside it) and the host never steps it
// again. Goroutines of its Host that still run when its stop_timeout ends
// (counted from the start of its stop, Stop included) get it abandoned
// the same way. Shutdown does not wait for it beyond stop_timeout and
// names it as left running (ErrAbandoned). A step that returns once its ctx is done is
// waited for by the next one and so never gets its plugin abandoned; only
// Stop, which no step follows, is given up on as soon as its bound ends.
type Plugin interface {
	Metadata() Metadata
	Initialize(ctx context.Context, h Host) error
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// HealthChecker is implemented by plugins that can report on their own
// health beyond their lifecycle state. HealthCheck must be cheap, safe for
// concurrent use and must return when ctx is done.
type HealthChecker interface {
	HealthCheck(ctx context.Context) Health
}

// Reloader is implemented by plugins that can apply a changed config section
// while running. The host calls Reload only on a running plugin, with the
// new section; a plugin that does not implement it is stopped and started
// anew with a fresh value built from the new section. An error leaves the
// plugin running with its old config and rejects the reload. Reload is a
// lifecycle step: it never runs beside another step of the plugin, and one
// that overruns step_timeout is waited for by the plugin's next step.
type Reloader interface {
	Reload(ctx context.Context, section Section) error
}

// PeerChecker is implemented by plugins that serve other plugins and can
// tell from their built values whether a config lets them work together
// (the message bus checks that each plugin's bus permissions cover what it
// needs to start). The host calls CheckPeers with every enabled plugin of a
// config, the checker included, whenever it validates or applies one
// (check-config, start, reload, enable); an error rejects the config.
type PeerChecker interface {
	CheckPeers(peers map[string]Plugin) error
}

// ReadinessChecker is implemented by plugins that have a say in the
// agent's readiness (/readyz) beyond their lifecycle state: while such a
// plugin runs, a non-nil Ready makes the agent not ready, with the error as
// the reason. Ready is called on every /readyz request: it must be cheap,
// non-blocking and safe for concurrent use.
type ReadinessChecker interface {
	Ready() error
}

// ServiceProvider is implemented by plugins that put services in the
// container. Services lists the names the plugin registers in Initialize so
// that other plugins can depend on a service rather than on a plugin.
type ServiceProvider interface {
	Services() []string
}

// HTTPMiddleware is implemented by plugins that wrap the agent's HTTP front
// (authentication, rate limiting, validation). Middleware of running
// plugins is applied in priority order, outermost first.
type HTTPMiddleware interface {
	WrapHTTP(next http.Handler) http.Handler
}

// RouteProvider is implemented by plugins that serve HTTP endpoints on the
// agent's listener. Routes are served only while the plugin is running.
type RouteProvider interface {
	Routes() []Route
}

// Route is one HTTP endpoint of a plugin. Pattern follows net/http.ServeMux
// ("GET /api/v1/admin/ai-plugins/{id}").
type Route struct {
	Pattern string
	Handler http.Handler
}

// State is where a plugin or service is in its lifecycle.
type State string

// The lifecycle states. A plugin moves registered → initializing →
// initialized → starting → running → stopping → stopped; failed can follow
// any step, disabled is a plugin that config turned off.
const (
	StateRegistered   State = "registered"
	StateInitializing State = "initializing"
	StateInitialized  State = "initialized"
	StateStarting     State = "starting"
	StateRunning      State = "running"
	StateStopping     State = "stopping"
	StateStopped      State = "stopped"
	StateFailed       State = "failed"
	StateDisabled     State = "disabled"
)

// States lists every state, in lifecycle order.
var States = []State{
	StateRegistered, StateInitializing, StateInitialized, StateStarting,
	StateRunning, StateStopping, StateStopped, StateFailed, StateDisabled,
}

// HealthStatus is the outcome of a health check.
type HealthStatus string

// Health statuses, from best to worst.
const (
	HealthOK       HealthStatus = "ok"
	HealthDegraded HealthStatus = "degraded"
	HealthFailing  HealthStatus = "failing"
)

// Health is one plugin's or service's report on itself.
type Health struct {
	Status  HealthStatus      `json:"status"`
	Message string            `json:"message,omitempty"`
	Details map[string]string `json:"details,omitempty"`
	Checked time.Time         `json:"checked"`
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ValidName reports whether name is a valid plugin or service name.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Base is embedded by plugins to get their metadata, a state that the host
// keeps up to date, and a default health report derived from the state.
// Its methods are safe for concurrent use.
//
//	type Broker struct {
//		agent.Base
//		...
//	}
//
//	func New() *Broker {
//		return &Broker{Base: agent.NewBase(agent.Metadata{Name: "message_bus", ...})}
//	}
type Base struct {
	meta Metadata

	mu    sync.Mutex
	state State
	err   string
}

// NewBase returns a Base with the given metadata, in state registered.
func NewBase(m Metadata) Base { return Base{meta: m, state: StateRegistered} }

// Metadata returns the plugin's metadata.
func (b *Base) Metadata() Metadata { return b.meta }

// Name returns the plugin's name.
func (b *Base) Name() string { return b.meta.Name }

// State returns the state the host last recorded.
func (b *Base) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// SetState records a state and, for failed, the reason. The host calls it;
// plugins call it only to report that they failed on their own.
func (b *Base) SetState(s State, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state, b.err = s, reason
}

// HealthCheck reports ok while running, failing when failed, and degraded
// in any other state.
func (b *Base) HealthCheck(context.Context) Health {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := Health{Checked: time.Now()}
	switch b.state {
	case StateRunning:
		h.Status = HealthOK
	case StateFailed:
		h.Status, h.Message = HealthFailing, b.err
	default:
		h.Status, h.Message = HealthDegraded, "plugin is "+string(b.state)
	}
	return h
}

// stateSetter is implemented by Base; the host keeps embedded Bases current.
type stateSetter interface {
	SetState(State, string)
}

var (
	_ HealthChecker = (*Base)(nil)
	_ stateSetter   = (*Base)(nil)
)
