package extmanager

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/plugins/messagebus/bus"
	"github.com/vitals-dev/vitals/probes"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// Bus topics the ExtManager listens on.
const (
	TopicAnnounce  = "plugin.announce"
	TopicHeartbeat = "plugin.heartbeat"
	TopicGoodbye   = "plugin.goodbye"
)

// startBus subscribes to plugin announcements, heartbeats and goodbyes,
// and checks for silent plugins.
func (e *ExtManager) startBus(ctx context.Context) error {
	ch, err := e.bus.Subscribe(ctx, "plugin.")
	if err != nil {
		return fmt.Errorf("subscribe to plugin.: %w", err)
	}
	e.goRun(func() {
		for msg := range ch {
			if err := e.handleBus(msg); err != nil {
				e.metrics.discoveryErrors.WithLabelValues(string(SourceBus)).Inc()
				e.log.Warn("bus message ignored", "topic", msg.Topic, "source", msg.Source, "err", err)
			}
		}
	})
	period := min(e.config().Bus.DefaultHeartbeat.D()/2, time.Second)
	e.goRun(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				e.catalog.Reconcile(SourceBus, nil, "extmanager stopped")
				return
			case now := <-t.C:
				e.checkSilence(now)
			}
		}
	})
	return nil
}

func (e *ExtManager) handleBus(msg bus.Message) error {
	switch msg.Topic {
	case TopicAnnounce:
		var a busv1.Announce
		if err := proto.Unmarshal(msg.Payload, &a); err != nil {
			return fmt.Errorf("decode announce: %w", err)
		}
		spec, err := announceSpec(&a)
		if err != nil {
			return err
		}
		return e.catalog.Upsert(spec)
	case TopicHeartbeat:
		var h busv1.Heartbeat
		if err := proto.Unmarshal(msg.Payload, &h); err != nil {
			return fmt.Errorf("decode heartbeat: %w", err)
		}
		if !e.catalog.Touch(h.GetName(), SourceBus) {
			return fmt.Errorf("heartbeat from %q, which has not announced itself", h.GetName())
		}
	case TopicGoodbye:
		var g busv1.Goodbye
		if err := proto.Unmarshal(msg.Payload, &g); err != nil {
			return fmt.Errorf("decode goodbye: %w", err)
		}
		reason := "goodbye"
		if g.GetReason() != "" {
			reason += ": " + g.GetReason()
		}
		e.catalog.Remove(g.GetName(), SourceBus, reason)
	}
	return nil
}

// announceSpec turns an announcement into a Spec. A "kind" label names the
// server kind of an endpoint; capabilities the agent does not know are
// left out.
func announceSpec(a *busv1.Announce) (Spec, error) {
	s := Spec{
		ID: a.GetName(), Source: SourceBus, Endpoint: a.GetEndpoint(), PID: int(a.GetPid()),
		Version: a.GetVersion(), Labels: a.GetLabels(), Kind: probes.KindAuto,
		HeartbeatInterval: time.Duration(a.GetHeartbeatIntervalMs()) * time.Millisecond,
	}
	if err := ValidID(s.ID); err != nil {
		return s, fmt.Errorf("announce: %w", err)
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
		if known[probes.Capability(c)] {
			s.Capabilities = append(s.Capabilities, probes.Capability(c))
		}
	}
	if s.Endpoint != "" {
		if _, err := (Target{ID: s.ID, Endpoint: s.Endpoint}).spec(SourceBus); err != nil {
			return s, fmt.Errorf("announce %q: %w", s.ID, err)
		}
	}
	return s, nil
}

// checkSilence marks bus plugins lost after lost_after missed heartbeats
// and deregisters them after deregister_after.
func (e *ExtManager) checkSilence(now time.Time) {
	cfg := e.config().Bus
	for _, p := range e.catalog.List(Filter{Source: SourceBus}) {
		every := p.Spec().HeartbeatInterval
		if every <= 0 {
			every = cfg.DefaultHeartbeat.D()
		}
		silent := now.Sub(p.LastSeen)
		switch {
		case silent > time.Duration(cfg.DeregisterAfter)*every:
			e.catalog.Remove(p.ID, SourceBus, fmt.Sprintf("no heartbeat for %s", silent.Round(time.Millisecond)))
		case silent > time.Duration(cfg.LostAfter)*every:
			e.catalog.MarkLost(p.ID, fmt.Sprintf("no heartbeat for %s", silent.Round(time.Millisecond)))
		}
	}
}
