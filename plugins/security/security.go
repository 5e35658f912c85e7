package security

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/exporters/store"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// Name is the plugin's name in config and in the registry.
const Name = "security"

// Version of the plugin.
const Version = "0.1.0"

// Plugin is the security plugin.
type Plugin struct {
	agent.Base

	state atomic.Pointer[authState]

	mu        sync.Mutex
	cfg       Config
	host      agent.Host
	log       *slog.Logger
	requests  *prometheus.CounterVec
	db        *store.DB
	audit     *audit.Log
	bus       bus.Bus
	pubQ      chan audit.Record
	warned    atomic.Bool
	noPublish atomic.Bool
}

// authState is what the middleware reads per request; reload swaps it.
type authState struct {
	tokens     []token
	open       []string
	anonymous  string
	apiDisable string
}

// Identity is who made a request, as the middleware established it.
type Identity struct {
	Name string // token name, or "anonymous"
	Role string
	// Anonymous is set for a client let in without a token (a loopback
	// client while no tokens are configured).
	Anonymous bool
}

type ctxKey struct{}

// Factory builds the plugin from its section; it reads no token yet.
func Factory(s agent.Section) (agent.Plugin, error) {
	cfg, err := decode(s)
	if err != nil {
		return nil, err
	}
	return New(cfg), nil
}

// New returns the plugin with a validated config.
func New(cfg Config) *Plugin {
	return &Plugin{
		Base: agent.NewBase(agent.Metadata{
			Name:        Name,
			Version:     Version,
			Description: "Bearer-token authentication and roles for the HTTP API; the audit log",
			Priority:    agent.PrioritySecurity,
		}),
		cfg: cfg,
	}
}

// Services implements agent.ServiceProvider.
func (p *Plugin) Services() []string { return []string{audit.ServiceName} }

// Routes implements agent.RouteProvider.
func (p *Plugin) Routes() []agent.Route {
	return []agent.Route{{Pattern: "GET /api/v1/admin/audit", Handler: http.HandlerFunc(p.serveAudit)}}
}

func newState(cfg Config, tokens []token) *authState {
	return &authState{tokens: tokens, open: append([]string(nil), cfg.OpenPaths...), anonymous: cfg.Anonymous, apiDisable: cfg.APIDisable}
}

// Initialize resolves the tokens, opens the audit store and provides the
// audit service.
// BusTopics implements bus.TopicUser: with audit.publish the plugin
// publishes audit records; it starts without the permission.
// (cfg does not change after Factory.)
func (p *Plugin) BusTopics() bus.Topics { return p.cfg.topics() }

func (p *Plugin) Initialize(ctx context.Context, h agent.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.host, p.log = h, h.Logger()
	tokens, err := resolve(p.cfg)
	if err != nil {
		return err
	}
	p.state.Store(newState(p.cfg, tokens))
	// The bus is optional: without it there is no audit.* publishing.
	if provider, err := agent.Require[bus.Provider](ctx, h, bus.ServiceName); err == nil {
		if p.bus, err = provider.ClientFor(h.Name(), p.cfg.topics().Uses); err != nil {
			return err
		}
	}
	db, err := store.Open(ctx, p.cfg.Audit.Path)
	if err != nil {
		p.closeBus()
		return fmt.Errorf("security: audit: %w", err)
	}
	o := audit.Options{}
	if p.bus != nil && p.cfg.Audit.Publish {
		p.pubQ = make(chan audit.Record, 1024)
		o.Publish = p.queuePublish
	}
	lg, err := audit.New(ctx, db, o)
	if err != nil {
		_ = db.Close()
		p.closeBus()
		return err
	}
	p.db, p.audit = db, lg
	p.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vitals_security_requests_total",
		Help: "HTTP requests seen by the security middleware, by outcome (open, allowed, unauthenticated, forbidden).",
	}, []string{"outcome"})
	for _, o := range []string{"open", "allowed", "unauthenticated", "forbidden"} {
		p.requests.WithLabelValues(o)
	}
	if err := h.Metrics().Register(p.requests); err != nil {
		_ = db.Close()
		p.closeBus()
		return fmt.Errorf("security: %w", err)
	}
	if err := h.Provide(audit.ServiceName, lg); err != nil {
		_ = db.Close()
		p.closeBus()
		return err
	}
	return nil
}

func (p *Plugin) closeBus() {
	if p.bus != nil {
		_ = p.bus.Close()
	}
}

// Start runs the audit writer, its retention and publishing, and starts
// listening for lifecycle events.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.audit == nil {
		return errors.New("security: Start before Initialize")
	}
	p.audit.Start()
	p.host.Go(p.retain)
	p.host.SubscribeEvents(p.onEvent) // the host ends it when the plugin stops
	if p.pubQ != nil {
		p.host.Go(p.publish)
	}
	st := p.state.Load()
	if len(st.tokens) == 0 {
		p.log.Info("no API tokens configured: the admin API is open to loopback clients only", "anonymous", st.anonymous)
	}
	return nil
}

// Reload rotates tokens and applies open paths; a token that cannot be
// read rejects the reload and keeps the old ones. The audit path and
// retention take effect at the next start.
func (p *Plugin) Reload(ctx context.Context, s agent.Section) error {
	cfg, err := decode(s)
	if err != nil {
		return err
	}
	tokens, err := resolve(cfg)
	if err != nil {
		return err
	}
	old := p.state.Swap(newState(cfg, tokens))
	p.mu.Lock()
	lg := p.audit
	p.mu.Unlock()
	if lg != nil {
		lg.Record(audit.Record{Action: "security.reload", Target: Name, Detail: fmt.Sprintf("tokens: %d → %d", len(old.tokens), len(tokens))})
	}
	return nil
}

// Stop ends the audit writer (writing what is
// queued) and closes the bus client and the audit store; the host has
// already ended retention and publishing. Safe without Start and twice:
// each close is.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.audit != nil {
		errs = append(errs, p.audit.Close(ctx))
	}
	p.closeBus()
	if p.db != nil {
		errs = append(errs, p.db.Close())
	}
	return errors.Join(errs...)
}

// HealthCheck adds token and audit counts to the state report.
func (p *Plugin) HealthCheck(ctx context.Context) agent.Health {
	h := p.Base.HealthCheck(ctx)
	p.mu.Lock()
	lg := p.audit
	p.mu.Unlock()
	if st := p.state.Load(); st != nil {
		h.Details = map[string]string{"tokens": fmt.Sprint(len(st.tokens))}
		if lg != nil {
			h.Details["audit_written"] = fmt.Sprint(lg.Written())
			h.Details["audit_dropped"] = fmt.Sprint(lg.Dropped())
		}
	}
	return h
}

// Audit returns the audit log (nil before Initialize).
func (p *Plugin) Audit() *audit.Log {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.audit
}

func (p *Plugin) retain(ctx context.Context) {
	r := audit.Retention(p.cfg.Audit.Retention.MaxAge.D(), p.cfg.Audit.Retention.MaxRows)
	t := time.NewTicker(p.cfg.Audit.Retention.Interval.D())
	defer t.Stop()
	for {
		if _, err := p.db.Prune(ctx, r, time.Now()); err != nil && ctx.Err() == nil {
			p.log.Warn("audit retention failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// onEvent records lifecycle transitions; it runs on the lifecycle
// goroutine and only queues.
func (p *Plugin) onEvent(ev agent.Event) {
	switch ev.To {
	case agent.StateRunning, agent.StateStopped, agent.StateFailed, agent.StateDisabled:
	default:
		return
	}
	r := audit.Record{Time: ev.Time, Action: "lifecycle." + ev.Step, Target: ev.Plugin, Detail: fmt.Sprintf("%s → %s", ev.From, ev.To)}
	if ev.To == agent.StateFailed || ev.Error != "" {
		r.Outcome, r.Detail = audit.OutcomeFailure, r.Detail+": "+ev.Error
	}
	p.audit.Record(r)
}

func (p *Plugin) queuePublish(r audit.Record) {
	if p.noPublish.Load() {
		return
	}
	select {
	case p.pubQ <- r:
	default:
	}
}

// publish sends stored records on audit.<action>. A denied publish turns
// publishing off (once, with a log line that is not itself audited, so a
// missing permission cannot feed back into the log).
func (p *Plugin) publish(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.pubQ:
			m, err := bus.NewProto(&busv1.LogRecord{Level: "info", Source: Name, Message: r.Action, Attributes: map[string]string{
				"id": fmt.Sprint(r.ID), "time": r.Time.UTC().Format(time.RFC3339Nano), "actor": r.Actor, "action": r.Action,
				"target": r.Target, "outcome": r.Outcome, "remote": r.Remote, "detail": r.Detail,
			}})
			if err != nil {
				continue
			}
			topic := "audit." + r.Action
			if bus.ValidTopic(topic) != nil {
				topic = "audit.other"
			}
			if err := p.bus.Publish(ctx, topic, m); errors.Is(err, bus.ErrDenied) {
				p.noPublish.Store(true)
				p.log.Warn("audit records are not published: the bus denies audit.* to this plugin; grant it in message_bus permissions")
				return
			}
		}
	}
}

// WrapHTTP implements agent.HTTPMiddleware.
func (p *Plugin) WrapHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := p.state.Load()
		if st == nil { // not initialized: fail closed
			agent.WriteError(w, http.StatusServiceUnavailable, "security is not ready")
			return
		}
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && isOpen(st.open, r.URL.Path) {
			p.requests.WithLabelValues("open").Inc()
			next.ServeHTTP(w, r)
			return
		}
		id, code, msg := p.authenticate(st, r)
		if code == 0 && !may(id.Role, r.Method) {
			code, msg = http.StatusForbidden, fmt.Sprintf("token %q has role %s, which may not %s %s; it needs role admin", id.Name, id.Role, r.Method, r.URL.Path)
		}
		if code == 0 && disablesSelf(r) {
			switch {
			case st.apiDisable == APIDisableNever:
				code, msg = http.StatusForbidden, "the security plugin cannot be disabled over the API (security.api_disable: never); change the config and reload"
			case id.Anonymous:
				code, msg = http.StatusForbidden, "disabling the security plugin over the API needs an admin token (security.api_disable: token)"
			}
		}
		switch code {
		case http.StatusUnauthorized:
			p.requests.WithLabelValues("unauthenticated").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="vitals"`)
			p.record(r, id, "http.denied", audit.OutcomeDenied, msg)
			agent.WriteError(w, code, msg)
			return
		case http.StatusForbidden:
			p.requests.WithLabelValues("forbidden").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="vitals", error="insufficient_scope"`)
			p.record(r, id, "http.denied", audit.OutcomeDenied, msg)
			agent.WriteError(w, code, msg)
			return
		}
		p.requests.WithLabelValues("allowed").Inc()
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
		action, target := adminAction(r)
		if action == "" {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		outcome := audit.OutcomeSuccess
		if sw.code >= 400 {
			outcome = audit.OutcomeFailure
		}
		p.auditRecord(audit.Record{Actor: id.Name, Action: action, Target: target, Outcome: outcome, Remote: remoteIP(r), Detail: fmt.Sprintf("%s %s → %d", r.Method, r.URL.Path, sw.code)})
	})
}

func (p *Plugin) auditRecord(r audit.Record) {
	p.mu.Lock()
	lg := p.audit
	p.mu.Unlock()
	if lg != nil {
		lg.Record(r)
	}
}

func (p *Plugin) record(r *http.Request, id Identity, action, outcome, msg string) {
	actor := id.Name
	if actor == "" {
		actor = "anonymous"
	}
	p.auditRecord(audit.Record{Actor: actor, Action: action, Target: r.Method + " " + r.URL.Path, Outcome: outcome, Remote: remoteIP(r), Detail: msg})
}

// authenticate returns the caller's identity, or a 401 with the reason.
func (p *Plugin) authenticate(st *authState, r *http.Request) (Identity, int, string) {
	if len(st.tokens) == 0 {
		if st.anonymous == AnonymousLoopback && isLoopback(r) {
			if !localHost(r.Host) {
				// A loopback client asking for another name is a browser
				// page whose name was rebound to 127.0.0.1.
				return Identity{}, http.StatusUnauthorized, fmt.Sprintf("no API tokens are configured: anonymous loopback clients must address the agent as localhost or by IP, not %q", r.Host)
			}
			return Identity{Name: "anonymous", Role: RoleAdmin, Anonymous: true}, 0, ""
		}
		if p.warned.CompareAndSwap(false, true) {
			p.log.Warn("a non-loopback client reached the API and no tokens are configured: refused; configure security.tokens", "remote", remoteIP(r))
		}
		return Identity{}, http.StatusUnauthorized, "no API tokens are configured: only loopback clients may use the API"
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" {
		return Identity{}, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token>"
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return Identity{}, http.StatusUnauthorized, "malformed Authorization header: want Bearer <token>"
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	found := -1
	for i := range st.tokens { // no early exit: every hash is compared
		if subtle.ConstantTimeCompare(sum[:], st.tokens[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, http.StatusUnauthorized, "invalid bearer token"
	}
	return Identity{Name: st.tokens[found].name, Role: st.tokens[found].role}, 0, ""
}

// may reports whether role may use method.
func may(role, method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return role == RoleViewer || role == RoleAdmin
	}
	return role == RoleAdmin
}

func isOpen(open []string, path string) bool {
	for _, o := range open {
		if agent.MatchPath(o, path) {
			return true
		}
	}
	return false
}

// disablesSelf reports whether r asks to disable the security plugin.
func disablesSelf(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead &&
		strings.TrimSuffix(r.URL.Path, "/") == "/api/v1/admin/plugins/"+Name+"/disable"
}

// adminAction names the audited action of a request, or "" for reads.
func adminAction(r *http.Request) (action, target string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return "", ""
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	if rest, ok := strings.CutPrefix(path, "/api/v1/admin/plugins/"); ok {
		if name, verb, ok := strings.Cut(rest, "/"); ok && (verb == "enable" || verb == "disable") {
			return "plugin." + verb, name
		}
	}
	if path == "/api/v1/admin/reload" {
		return "config.reload", "core.yaml"
	}
	return "http." + strings.ToLower(r.Method), path
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// localHost reports whether a Host header names this machine by IP literal
// or as localhost.
func localHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

func isLoopback(r *http.Request) bool {
	a, err := netip.ParseAddr(remoteIP(r))
	return err == nil && a.Unmap().IsLoopback()
}

type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ListenWarning returns a warning when cfg has the agent listen beyond
// loopback while security is off or has no tokens, else "". The agent
// binary logs it at startup.
func ListenWarning(cfg *agent.Config) string {
	host, _, err := net.SplitHostPort(cfg.Core.APIGateway.Listen)
	if err != nil {
		return ""
	}
	if a, err := netip.ParseAddr(host); (err == nil && a.IsLoopback()) || host == "localhost" {
		return ""
	}
	pc := cfg.Plugin(Name)
	if !pc.Enabled {
		return fmt.Sprintf("the agent listens on %s and the security plugin is off: the admin API is open to anyone who can reach it", cfg.Core.APIGateway.Listen)
	}
	c, err := decode(pc.Section)
	if err == nil && len(c.Tokens) == 0 {
		return fmt.Sprintf("the agent listens on %s and security has no tokens: only loopback clients can use the admin API; configure security.tokens", cfg.Core.APIGateway.Listen)
	}
	return ""
}

var (
	_ agent.Plugin          = (*Plugin)(nil)
	_ agent.ServiceProvider = (*Plugin)(nil)
	_ agent.HTTPMiddleware  = (*Plugin)(nil)
	_ agent.RouteProvider   = (*Plugin)(nil)
	_ agent.Reloader        = (*Plugin)(nil)
	_ agent.HealthChecker   = (*Plugin)(nil)
	_ audit.Recorder        = (*audit.Log)(nil)
)

// Guard is the agent.GuardFunc of the security plugin: when cfg enables it,
// the agent's HTTP front refuses every request but reads of its open paths
// until the plugin's middleware is in front, and again while the plugin is
// failed, stopped or disabled.
func Guard(cfg *agent.Config) agent.Guard {
	pc := cfg.Plugin(Name)
	if !pc.Enabled {
		return agent.Guard{}
	}
	c, err := decode(pc.Section)
	if err != nil {
		// A section that does not decode was rejected with the config;
		// guard with the defaults rather than not at all.
		c = DefaultConfig()
	}
	return agent.Guard{Plugin: Name, OpenPaths: c.OpenPaths}
}
