package catalog

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/hub"
	"github.com/vitals-dev/vitals/probes"
)

// EventType names a change in the catalog.
type EventType string

// Catalog events. Each is published on the bus as extmanager.<type>.
const (
	EventRegistered     EventType = "registered"
	EventUpdated        EventType = "updated"
	EventVersionChanged EventType = "version_changed"
	EventDeregistered   EventType = "deregistered"
	EventLost           EventType = "lost"
)

// EventTypes lists every event type, for bounded metric labels.
var EventTypes = []EventType{EventRegistered, EventUpdated, EventVersionChanged, EventDeregistered, EventLost}

// Event is one change in the catalog.
type Event struct {
	Type       EventType `json:"type"`
	ID         string    `json:"id"`
	Source     Source    `json:"source"`
	Version    string    `json:"version,omitempty"`
	OldVersion string    `json:"old_version,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Time       time.Time `json:"time"`
	// FromDetection marks changes that detection found, so detection does
	// not run again because of them.
	FromDetection bool     `json:"-"`
	Plugin        AIPlugin `json:"plugin"`
}

// Catalog holds every AI plugin the agent knows. Its methods are safe for
// concurrent use; subscribers are called after the change, outside the
// catalog's lock, in the order changes happened.
type Catalog struct {
	now func() time.Time

	mu      sync.RWMutex
	plugins map[string]*AIPlugin
	held    map[holder]int // plugins per source, and per source and owner

	subs hub.Hub[Event] // delivers one change at a time, in order
}

// New returns an empty catalog. now may be nil.
func New(now func() time.Time) *Catalog {
	if now == nil {
		now = time.Now
	}
	return &Catalog{now: now, plugins: map[string]*AIPlugin{}, held: map[holder]int{}}
}

// holder counts plugins: of a source (owner "") or of one owner in it.
type holder struct {
	src   Source
	owner string
	all   bool
}

// hold counts p in (n = 1) or out (n = -1). Call with c.mu held, with p's
// owner as it is in the catalog.
func (c *Catalog) hold(p *AIPlugin, n int) {
	for _, h := range []holder{{src: p.Source, all: true}, {src: p.Source, owner: p.Owner}} {
		if c.held[h] += n; c.held[h] <= 0 {
			delete(c.held, h)
		}
	}
}

// Subscribe calls fn for every later change, one at a time and in the
// order of the changes; the returned function stops it.
func (c *Catalog) Subscribe(fn func(Event)) func() { return c.subs.Subscribe(fn) }

func (c *Catalog) emit(evs ...Event) { c.subs.Emit(evs...) }

// Errors of Claim and Leave, compared with errors.Is.
var (
	// ErrNotOwner: the plugin was announced by another peer.
	ErrNotOwner = errors.New("announced by another peer")
	// ErrCatalogFull: the source holds as many plugins as it may.
	ErrCatalogFull = errors.New("too many plugins from this source")
	// ErrOwnerFull: the peer holds as many plugins as it may.
	ErrOwnerFull = errors.New("too many plugins from this peer")
)

// Limits bound the plugins of one source in the catalog; 0 means no bound.
type Limits struct {
	// Max is the most plugins the source may hold.
	Max int
	// PerOwner is the most plugins one owner (Spec.Owner) may hold.
	PerOwner int
}

// Upsert registers a plugin or updates it from its source. An id taken by
// another source is an error; the first source keeps it.
func (c *Catalog) Upsert(s Spec) error { return c.upsert(s, nil) }

// Claim registers or updates a plugin on behalf of its owner (s.Owner),
// within lim. An active plugin of the same source that another owner
// announced is ErrNotOwner; a lost one is taken over. A plugin that is new
// to its owner is refused with ErrCatalogFull or ErrOwnerFull when that
// would pass lim.
func (c *Catalog) Claim(s Spec, lim Limits) error {
	return c.upsert(s, func(p *AIPlugin) error {
		if p != nil && p.Source == s.Source {
			if p.Owner == s.Owner {
				return nil
			}
			if p.Presence != PresenceLost {
				return fmt.Errorf("ai plugin %q: %w (%s)", s.ID, ErrNotOwner, p.Owner)
			}
		}
		total, mine := c.held[holder{src: s.Source, all: true}], c.held[holder{src: s.Source, owner: s.Owner}]
		if p != nil && p.Source == s.Source {
			total-- // taken over, not added
		}
		if lim.Max > 0 && total >= lim.Max {
			return fmt.Errorf("ai plugin %q: %w (%d)", s.ID, ErrCatalogFull, lim.Max)
		}
		if lim.PerOwner > 0 && mine >= lim.PerOwner {
			return fmt.Errorf("ai plugin %q: %w %s (%d)", s.ID, ErrOwnerFull, s.Owner, lim.PerOwner)
		}
		return nil
	})
}

// upsert is Upsert with check, when set, called under the lock with the
// plugin already there (nil if none); its error refuses the change.
func (c *Catalog) upsert(s Spec, check func(*AIPlugin) error) error {
	if err := ValidID(s.ID); err != nil {
		return err
	}
	if s.Kind == "" {
		s.Kind = probes.KindAuto
	}
	now := c.now()
	var evs []Event
	c.mu.Lock()
	p, ok := c.plugins[s.ID]
	if check != nil {
		if err := check(p); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	switch {
	case !ok:
		p = &AIPlugin{ID: s.ID, Name: s.ID, FirstSeen: now, Detection: DetectionInfo{State: DetectPending}}
		apply(p, s)
		p.LastSeen, p.Presence = now, PresenceActive
		if s.Endpoint == "" {
			p.Detection.State = DetectDeclared
		}
		c.plugins[s.ID] = p
		c.hold(p, 1)
		evs = append(evs, c.event(EventRegistered, p, ""))
	case p.Source != s.Source:
		c.mu.Unlock()
		return fmt.Errorf("ai plugin %q is already registered by source %s", s.ID, p.Source)
	default:
		c.hold(p, -1) // the owner may change
		old := p.Spec()
		wasLost := p.Presence == PresenceLost
		p.LastSeen, p.Presence = now, PresenceActive
		if s.Version != "" && old.Version != "" && s.Version != old.Version {
			oldVersion := p.Version
			apply(p, s)
			ev := c.event(EventVersionChanged, p, "")
			ev.OldVersion = oldVersion
			evs = append(evs, ev)
		} else if !reflect.DeepEqual(old, s) || wasLost {
			apply(p, s)
			reason := "changed at its source"
			if wasLost && reflect.DeepEqual(old, s) {
				reason = "heard from again"
			}
			evs = append(evs, c.event(EventUpdated, p, reason))
		}
		c.hold(p, 1)
	}
	c.mu.Unlock()
	c.emit(evs...)
	return nil
}

// apply copies what the source says onto p, keeping what detection found
// unless the source says otherwise.
func apply(p *AIPlugin, s Spec) {
	p.declared = declared{kind: s.Kind, model: s.Model, version: s.Version, capabilities: s.Capabilities, heartbeatInterval: s.HeartbeatInterval}
	p.Source, p.Endpoint, p.MetricsURL, p.PID = s.Source, s.Endpoint, s.MetricsURL, s.PID
	p.Labels, p.Dependencies, p.Manifest, p.Owner = s.Labels, s.Dependencies, s.Manifest, s.Owner
	p.HTTPConfig = s.HTTPConfig
	if p.Kind == "" || p.Detection.State != DetectDone || (s.Kind != probes.KindAuto && s.Kind != p.Kind) {
		p.Kind = s.Kind
	}
	if s.Version != "" {
		p.Version = s.Version
	}
	if len(s.Capabilities) > 0 && p.Detection.State != DetectDone {
		p.Capabilities = probes.SortCapabilities(slices.Clone(s.Capabilities))
	}
	if p.Capabilities == nil {
		p.Capabilities = []probes.Capability{}
	}
	if p.Models == nil {
		p.Models = []probes.Model{}
	}
}

func (c *Catalog) event(t EventType, p *AIPlugin, reason string) Event {
	return Event{Type: t, ID: p.ID, Source: p.Source, Version: p.Version, Reason: reason, Time: c.now(), Plugin: clone(p)}
}

// Remove deregisters a plugin of the given source.
func (c *Catalog) Remove(id string, src Source, reason string) bool {
	c.mu.Lock()
	p, ok := c.plugins[id]
	if !ok || p.Source != src {
		c.mu.Unlock()
		return false
	}
	delete(c.plugins, id)
	c.hold(p, -1)
	ev := c.event(EventDeregistered, p, reason)
	c.mu.Unlock()
	c.emit(ev)
	return true
}

// Leave deregisters a plugin of src on behalf of owner: a plugin that
// another owner announced is ErrNotOwner and stays. It reports whether the
// plugin was there.
func (c *Catalog) Leave(id string, src Source, owner, reason string) (bool, error) {
	c.mu.Lock()
	p, ok := c.plugins[id]
	if !ok || p.Source != src {
		c.mu.Unlock()
		return false, nil
	}
	if p.Owner != owner {
		c.mu.Unlock()
		return true, fmt.Errorf("ai plugin %q: %w (%s)", id, ErrNotOwner, p.Owner)
	}
	delete(c.plugins, id)
	c.hold(p, -1)
	ev := c.event(EventDeregistered, p, reason)
	c.mu.Unlock()
	c.emit(ev)
	return true, nil
}

// Reconcile makes the plugins of one source exactly specs: new ones are
// registered, changed ones updated, missing ones deregistered. It returns
// the errors of specs it could not take.
func (c *Catalog) Reconcile(src Source, specs []Spec, reason string) []error {
	keep := map[string]bool{}
	var errs []error
	for _, s := range specs {
		s.Source = src
		if err := c.Upsert(s); err != nil {
			errs = append(errs, err)
			continue
		}
		keep[s.ID] = true
	}
	for _, p := range c.List(Filter{Source: src}) {
		if !keep[p.ID] {
			c.Remove(p.ID, src, reason)
		}
	}
	return errs
}

// SetDetection records what detection found. A changed version is an
// event; so is a first detection or a change of kind, capabilities or
// models (any model renamed, added or removed).
func (c *Catalog) SetDetection(id string, d probes.Detection, err error) {
	c.mu.Lock()
	p, ok := c.plugins[id]
	if !ok {
		c.mu.Unlock()
		return
	}
	before := clone(p)
	p.Detection = DetectionInfo{Attempts: d.Attempts, At: c.now(), Reason: d.Reason}
	switch {
	case err != nil:
		p.Detection.State = DetectFailed
		if p.Detection.Reason == "" {
			p.Detection.Reason = err.Error()
		}
	case d.Kind == probes.KindUnknown || d.Kind == "":
		p.Detection.State = DetectUnknown
		p.Kind = probes.KindUnknown
	default:
		p.Detection.State = DetectDone
		p.Kind, p.Server = d.Kind, d.Server
		if d.Version != "" {
			p.Version = d.Version
		}
		// What the server says wins; where it said nothing (the models of
		// a server that was not asked), what the source declared stays.
		p.Capabilities = probes.SortCapabilities(slices.Clone(d.Capabilities))
		if len(p.Capabilities) == 0 {
			p.Capabilities = probes.SortCapabilities(slices.Clone(p.declared.capabilities))
		}
		p.Models = slices.Clone(d.Models)
		if p.Capabilities == nil {
			p.Capabilities = []probes.Capability{}
		}
		if p.Models == nil {
			p.Models = []probes.Model{}
		}
	}
	var evs []Event
	switch {
	case before.Version != "" && p.Version != before.Version:
		ev := c.event(EventVersionChanged, p, "detected")
		ev.OldVersion, ev.FromDetection = before.Version, true
		evs = append(evs, ev)
	case before.Kind != p.Kind || !slices.Equal(before.Capabilities, p.Capabilities) ||
		!sameModels(before.Models, p.Models) || before.Detection.State != p.Detection.State || before.Version != p.Version:
		ev := c.event(EventUpdated, p, "detection: "+string(p.Detection.State))
		ev.FromDetection = true
		evs = append(evs, ev)
	}
	c.mu.Unlock()
	c.emit(evs...)
}

// sameModels reports whether two model lists name the same models with the
// same capabilities, in the same order: a model renamed is a change even
// when the count stays.
func sameModels(a, b []probes.Model) bool {
	return slices.EqualFunc(a, b, func(x, y probes.Model) bool {
		return x.ID == y.ID && slices.Equal(x.Capabilities, y.Capabilities)
	})
}

// SetHealth records a plugin's latest health verdict: the engine's status,
// or the plugin's own report (health.Reported). The catalog keeps its own
// copy of the status, overwritten in place, and its last check as it is:
// a check record is not changed once made (the engine makes one a check),
// so the engine and the catalog hold one, not a copy each. Every reader
// copies both under the lock (clone).
func (c *Catalog) SetHealth(id string, s health.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.plugins[id]
	if !ok {
		return
	}
	if p.Health == nil {
		p.Health = new(health.Status)
	}
	*p.Health = s
}

func cloneCheck(c *health.CheckRecord) *health.CheckRecord {
	if c == nil {
		return nil
	}
	out := *c
	out.Probes = slices.Clone(c.Probes)
	return &out
}

// Touch records that a plugin was heard from (a heartbeat) from its owner.
// A lost plugin becomes active again. It reports whether the plugin is
// known as owner's.
func (c *Catalog) Touch(id string, src Source, owner string) bool {
	c.mu.Lock()
	p, ok := c.plugins[id]
	if !ok || p.Source != src || p.Owner != owner {
		c.mu.Unlock()
		return false
	}
	p.LastSeen = c.now()
	var evs []Event
	if p.Presence == PresenceLost {
		p.Presence = PresenceActive
		evs = append(evs, c.event(EventUpdated, p, "heard from again"))
	}
	c.mu.Unlock()
	c.emit(evs...)
	return true
}

// MarkLost marks a plugin lost, once.
func (c *Catalog) MarkLost(id, reason string) {
	c.mu.Lock()
	p, ok := c.plugins[id]
	if !ok || p.Presence == PresenceLost {
		c.mu.Unlock()
		return
	}
	p.Presence = PresenceLost
	ev := c.event(EventLost, p, reason)
	c.mu.Unlock()
	c.emit(ev)
}

// Get returns one plugin.
func (c *Catalog) Get(id string) (AIPlugin, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.plugins[id]
	if !ok {
		return AIPlugin{}, false
	}
	return clone(p), true
}

// Filter selects plugins; zero fields match everything.
type Filter struct {
	Capability probes.Capability
	Kind       probes.Kind
	Source     Source
	// Health matches the health status in the host's vocabulary ("ok",
	// "degraded", "failing"), or "unknown" for plugins not checked yet.
	Health string
}

func (f Filter) match(p *AIPlugin) bool {
	if f.Kind != "" && p.Kind != f.Kind {
		return false
	}
	if f.Source != "" && p.Source != f.Source {
		return false
	}
	if f.Capability != "" && !slices.Contains(p.Capabilities, f.Capability) {
		return false
	}
	if f.Health != "" {
		status := "unknown"
		if p.Health != nil {
			status = string(p.Health.State.AgentStatus())
		}
		if status != f.Health {
			return false
		}
	}
	return true
}

// Each calls f with every plugin, in no order, under the catalog's read
// lock, without the copies List makes: f must not keep p or change it,
// and must not call the catalog.
func (c *Catalog) Each(f func(p *AIPlugin)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, p := range c.plugins {
		f(p)
	}
}

// List returns the plugins that match f, sorted by id.
func (c *Catalog) List(f Filter) []AIPlugin {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]AIPlugin, 0, len(c.plugins))
	for _, p := range c.plugins {
		if f.match(p) {
			out = append(out, clone(p))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func clone(p *AIPlugin) AIPlugin {
	out := *p
	out.Capabilities = slices.Clone(p.Capabilities)
	out.Models = slices.Clone(p.Models)
	out.Labels = maps.Clone(p.Labels)
	out.Dependencies = slices.Clone(p.Dependencies)
	if p.Health != nil {
		h := *p.Health
		h.Last = cloneCheck(h.Last)
		out.Health = &h
	}
	return out
}
