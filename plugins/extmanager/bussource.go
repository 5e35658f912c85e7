package extmanager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/probes"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// Bus topics the ExtManager listens on.
const (
	TopicAnnounce  = "plugin.announce"
	TopicHeartbeat = "plugin.heartbeat"
	TopicGoodbye   = "plugin.goodbye"
)

// Reasons a bus message is refused, the label of vitals_ai_bus_rejected_total.
const (
	rejectInvalid     = "invalid"      // undecodable, or a field out of bounds
	rejectEndpoint    = "endpoint"     // the endpoint is not in bus.allowed_endpoints
	rejectNotOwner    = "not_owner"    // the plugin is another peer's
	rejectCatalogFull = "catalog_full" // bus.max_plugins reached
	rejectPeerFull    = "peer_full"    // bus.max_plugins_per_peer reached
	rejectUnknown     = "unknown"      // a heartbeat of a plugin never announced
	rejectNoPeer      = "no_peer"      // no broker identity on the message
)

var rejectReasons = []string{rejectInvalid, rejectEndpoint, rejectNotOwner, rejectCatalogFull, rejectPeerFull, rejectUnknown, rejectNoPeer}

// Bounds of what an announcement may carry; its strings become label
// values and API fields.
const (
	maxVersionLen  = 64
	maxLabels      = 16
	maxLabelKeyLen = 63
	maxLabelValLen = 128
	maxEndpointLen = 2048
)

// busReject is a refused bus message and why.
type busReject struct {
	reason string
	err    error
}

func (r *busReject) Error() string { return r.err.Error() }
func (r *busReject) Unwrap() error { return r.err }

func reject(reason string, err error) error { return &busReject{reason, err} }

// startBus subscribes to plugin announcements, heartbeats and goodbyes,
// and checks for silent plugins.
func (e *ExtManager) startBus(ctx context.Context) error {
	ch, err := e.bus.Subscribe(ctx, "plugin.")
	if err != nil {
		return fmt.Errorf("subscribe to plugin.: %w", err)
	}
	e.host.Go(func(context.Context) {
		// A flood of bad messages is counted in full and logged sparsely.
		logs := rate.Sometimes{First: 10, Interval: time.Second}
		for msg := range ch {
			if err := e.handleBus(msg); err != nil {
				reason := rejectInvalid
				var r *busReject
				if errors.As(err, &r) {
					reason = r.reason
				}
				e.metrics.discoveryErrors.WithLabelValues(string(catalog.SourceBus)).Inc()
				e.metrics.busRejected.WithLabelValues(reason).Inc()
				logs.Do(func() {
					e.log.Warn("bus message ignored", "topic", msg.Topic, "peer", msg.Peer, "source", msg.Source, "reason", reason, "err", err)
				})
			}
		}
	})
	period := min(e.config().Bus.DefaultHeartbeat.D()/2, time.Second)
	e.host.Go(func(context.Context) {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				e.catalog.Reconcile(catalog.SourceBus, nil, "extmanager stopped")
				return
			case now := <-t.C:
				e.checkSilence(now)
			}
		}
	})
	return nil
}

// handleBus acts on one plugin.* message on behalf of the peer the broker
// says sent it (msg.Peer): a plugin belongs to the peer that announced it.
func (e *ExtManager) handleBus(msg bus.Message) error {
	if msg.Peer == "" {
		return reject(rejectNoPeer, fmt.Errorf("%s without a peer: not forwarded by the broker", msg.Topic))
	}
	switch msg.Topic {
	case TopicAnnounce:
		var a busv1.Announce
		if err := proto.Unmarshal(msg.Payload, &a); err != nil {
			return reject(rejectInvalid, fmt.Errorf("decode announce: %w", err))
		}
		return e.announce(&a, msg)
	case TopicHeartbeat:
		var h busv1.Heartbeat
		if err := proto.Unmarshal(msg.Payload, &h); err != nil {
			return reject(rejectInvalid, fmt.Errorf("decode heartbeat: %w", err))
		}
		if e.catalog.Touch(h.GetName(), catalog.SourceBus, msg.Peer) {
			return nil
		}
		// Not known as this peer's: an agent that restarted registers it
		// from the announcement the heartbeat carries.
		if a := h.GetAnnounce(); a != nil && a.GetName() == h.GetName() {
			return e.announce(a, msg)
		}
		if p, ok := e.catalog.Get(h.GetName()); ok && p.Source == catalog.SourceBus {
			return reject(rejectNotOwner, fmt.Errorf("heartbeat for %q from %s: announced by %s", h.GetName(), msg.Peer, p.Owner))
		}
		return reject(rejectUnknown, fmt.Errorf("heartbeat from %q, which has not announced itself", h.GetName()))
	case TopicGoodbye:
		var g busv1.Goodbye
		if err := proto.Unmarshal(msg.Payload, &g); err != nil {
			return reject(rejectInvalid, fmt.Errorf("decode goodbye: %w", err))
		}
		reason := "goodbye"
		if g.GetReason() != "" {
			reason += ": " + truncate(g.GetReason(), 200)
		}
		_, err := e.catalog.Leave(g.GetName(), catalog.SourceBus, msg.Peer, reason)
		if err != nil {
			err = reject(rejectNotOwner, fmt.Errorf("goodbye from %s: %w", msg.Peer, err))
		}
		e.auditBus(msg, "plugin.deregister", g.GetName(), g.GetReason(), err)
		return err
	}
	return nil
}

// auditBus records in the audit log, when the security plugin keeps one,
// a registration or deregistration asked for over the bus and what the
// ExtManager made of it: success, or denied with the reason. The actor is
// the identity the broker stamped (the PLAIN user, or the connection under
// NULL security) and the remote its address; the source the envelope
// claims is only detail.
func (e *ExtManager) auditBus(msg bus.Message, action, target, detail string, err error) {
	v, gerr := e.host.Get(context.Background(), audit.ServiceName)
	if gerr != nil {
		return
	}
	rec, ok := v.(audit.Recorder)
	if !ok {
		return
	}
	r := audit.Record{Actor: msg.Peer, Remote: msg.PeerAddress, Action: action, Target: target, Outcome: audit.OutcomeSuccess, Detail: truncate(detail, 200)}
	switch {
	case target == "":
		r.Target = "(none)"
	case catalog.ValidID(target) != nil:
		r.Target = fmt.Sprintf("%.64q", target)
	}
	if err != nil {
		r.Outcome, r.Detail = audit.OutcomeDenied, truncate(err.Error(), 400)
	}
	if msg.Source != "" && msg.Source != target {
		r.Detail = strings.TrimSpace(r.Detail + " (claimed source " + fmt.Sprintf("%.64q", msg.Source) + ")")
	}
	rec.Record(r)
}

// announce registers or updates a bus plugin for the peer that sent msg,
// within the bus bounds, and records the verdict in the audit log.
func (e *ExtManager) announce(a *busv1.Announce, msg bus.Message) error {
	err := e.claim(a, msg)
	e.auditBus(msg, "plugin.register", a.GetName(), a.GetVersion(), err)
	return err
}

func (e *ExtManager) claim(a *busv1.Announce, msg bus.Message) error {
	cfg := e.config().Bus
	spec, err := announceSpec(a)
	if err != nil {
		return reject(rejectInvalid, err)
	}
	if spec.Endpoint != "" {
		if err := endpointAllowed(cfg.AllowedEndpoints, spec.Endpoint, msg.PeerAddress); err != nil {
			return reject(rejectEndpoint, fmt.Errorf("announce %q from %s: %w", spec.ID, msg.Peer, err))
		}
	}
	if spec.MetricsURL != "" {
		if err := endpointAllowed(cfg.AllowedEndpoints, spec.MetricsURL, msg.PeerAddress); err != nil {
			return reject(rejectEndpoint, fmt.Errorf("announce %q from %s: metrics_url: %w", spec.ID, msg.Peer, err))
		}
	}
	spec.Owner = msg.Peer
	err = e.catalog.Claim(spec, catalog.Limits{Max: cfg.MaxPlugins, PerOwner: cfg.MaxPluginsPerPeer})
	switch {
	case errors.Is(err, catalog.ErrNotOwner):
		return reject(rejectNotOwner, fmt.Errorf("announce from %s: %w", msg.Peer, err))
	case errors.Is(err, catalog.ErrCatalogFull):
		return reject(rejectCatalogFull, err)
	case errors.Is(err, catalog.ErrOwnerFull):
		return reject(rejectPeerFull, err)
	case err != nil:
		return reject(rejectInvalid, err)
	}
	return nil
}

// announceSpec turns an announcement into a Spec. A "kind" label names the
// server kind of an endpoint; capabilities the agent does not know are
// left out. Strings that become label values or API fields are bounded.
func announceSpec(a *busv1.Announce) (catalog.Spec, error) {
	s := catalog.Spec{
		ID: a.GetName(), Source: catalog.SourceBus, Endpoint: a.GetEndpoint(), PID: int(a.GetPid()),
		Version: a.GetVersion(), Labels: a.GetLabels(), Kind: probes.KindAuto,
		HeartbeatInterval: time.Duration(a.GetHeartbeatIntervalMs()) * time.Millisecond,
	}
	if err := catalog.ValidID(s.ID); err != nil {
		return s, fmt.Errorf("announce: %w", err)
	}
	switch {
	case len(s.Version) > maxVersionLen || !printable(s.Version):
		return s, fmt.Errorf("announce %q: version must be at most %d printable bytes, got %d", s.ID, maxVersionLen, len(s.Version))
	case len(s.Labels) > maxLabels:
		return s, fmt.Errorf("announce %q: at most %d labels, got %d", s.ID, maxLabels, len(s.Labels))
	case len(s.Endpoint) > maxEndpointLen:
		return s, fmt.Errorf("announce %q: endpoint must be at most %d bytes, got %d", s.ID, maxEndpointLen, len(s.Endpoint))
	case len(a.GetMetricsUrl()) > maxEndpointLen:
		return s, fmt.Errorf("announce %q: metrics_url must be at most %d bytes, got %d", s.ID, maxEndpointLen, len(a.GetMetricsUrl()))
	case a.GetMetricsUrl() != "" && s.Endpoint == "":
		return s, fmt.Errorf("announce %q: metrics_url without an endpoint", s.ID)
	case s.PID < 0:
		return s, fmt.Errorf("announce %q: pid must not be negative, got %d", s.ID, s.PID)
	}
	for k, v := range s.Labels {
		if k == "" || len(k) > maxLabelKeyLen || !printable(k) {
			return s, fmt.Errorf("announce %q: label name %.70q must be 1 to %d printable bytes", s.ID, k, maxLabelKeyLen)
		}
		if len(v) > maxLabelValLen || !printable(v) {
			return s, fmt.Errorf("announce %q: label %s must be at most %d printable bytes, got %d", s.ID, k, maxLabelValLen, len(v))
		}
	}
	if k, ok := s.Labels["kind"]; ok {
		kind, err := probes.ParseKind(k)
		if err != nil {
			return s, fmt.Errorf("announce %q: %w", s.ID, err)
		}
		s.Kind = kind
	}
	known := map[probes.Capability]bool{}
	for _, c := range probes.Capabilities() {
		known[c] = true
	}
	for _, c := range a.GetCapabilities() {
		if known[probes.Capability(c)] && !slices.Contains(s.Capabilities, probes.Capability(c)) {
			s.Capabilities = append(s.Capabilities, probes.Capability(c))
		}
	}
	if s.Endpoint != "" {
		ts, err := (Target{ID: s.ID, Endpoint: s.Endpoint, MetricsURL: a.GetMetricsUrl()}).spec(catalog.SourceBus)
		if err != nil {
			return s, fmt.Errorf("announce %q: %w", s.ID, err)
		}
		s.MetricsURL = ts.MetricsURL // with /metrics when it names no path
	}
	return s, nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// checkSilence marks bus plugins lost after lost_after missed heartbeats
// and deregisters them after deregister_after.
func (e *ExtManager) checkSilence(now time.Time) {
	cfg := e.config().Bus
	for _, p := range e.catalog.List(catalog.Filter{Source: catalog.SourceBus}) {
		every := p.Spec().HeartbeatInterval
		if every <= 0 {
			every = cfg.DefaultHeartbeat.D()
		}
		silent := now.Sub(p.LastSeen)
		switch {
		case silent > time.Duration(cfg.DeregisterAfter)*every:
			e.catalog.Remove(p.ID, catalog.SourceBus, fmt.Sprintf("no heartbeat for %s", silent.Round(time.Millisecond)))
		case silent > time.Duration(cfg.LostAfter)*every:
			e.catalog.MarkLost(p.ID, fmt.Sprintf("no heartbeat for %s", silent.Round(time.Millisecond)))
		}
	}
}
