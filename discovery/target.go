package discovery

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// The reserved labels that set a target's fields. Other labels starting
// with "__" (the __meta_* labels of each mechanism among them) are
// dropped after relabeling; the rest become the target's labels.
const (
	LabelAddress     = model.AddressLabel       // host:port, required
	LabelScheme      = model.SchemeLabel        // http (default) or https
	LabelMetricsPath = model.MetricsPathLabel   // the base path the probes append to; default none
	LabelMetricsURL  = "__vitals_metrics_url__" // where the server's metrics are; default the endpoint's /metrics
	LabelKind        = "__vitals_kind__"        // the engine kind; default auto (detected)
	LabelModel       = "__vitals_model__"       // the model synthetic checks use
	LabelID          = "__vitals_id__"          // the target's id; default from the address
)

// Bounds of a target's labels after relabeling; a target past them is
// dropped as invalid.
const (
	MaxLabels          = 32
	MaxLabelNameBytes  = 128
	MaxLabelValueBytes = 1024
)

// Target is one discovered AI server, in the fields of a target in the
// extmanager's config.
type Target struct {
	ID         string
	Endpoint   string
	MetricsURL string // "" is the endpoint's /metrics (kserve: see the extmanager)
	Kind       string // "" is auto
	Model      string
	Labels     map[string]string
	// Source is the config entry that found it: "file_sd_configs[0]".
	Source string
}

// Reasons a discovered target is not a target, the values of the reason
// label of vitals_discovery_dropped_targets.
const (
	DropRelabel   = "relabel"   // a relabel rule dropped it
	DropInvalid   = "invalid"   // no usable address, scheme, path or id
	DropDuplicate = "duplicate" // another target has its id
	DropLimit     = "limit"     // past the bound on targets
)

// build applies the relabel rules to one discovered label set and makes
// a target of what is left. A false keep with a nil error is a relabel
// drop.
func build(lb *labels.Builder, rules []*relabel.Config) (t Target, keep bool, err error) {
	if lb.Get(LabelScheme) == "" {
		lb.Set(LabelScheme, "http")
	}
	if !relabel.ProcessBuilder(lb, rules...) {
		return t, false, nil
	}
	addr, scheme, path := lb.Get(LabelAddress), strings.ToLower(lb.Get(LabelScheme)), lb.Get(LabelMetricsPath)
	switch {
	case addr == "":
		return t, false, fmt.Errorf("no %s", LabelAddress)
	case scheme != "http" && scheme != "https":
		return t, false, fmt.Errorf("%s %q: want http or https", LabelScheme, scheme)
	case path != "" && !strings.HasPrefix(path, "/"):
		return t, false, fmt.Errorf("%s %q: want a path starting with /", LabelMetricsPath, path)
	case strings.ContainsAny(addr, "/?#@ ") || strings.ContainsAny(path, "?#"):
		return t, false, fmt.Errorf("%s %q with path %q is not a host:port and a path", LabelAddress, addr, path)
	}
	u, perr := url.Parse(scheme + "://" + addr + path)
	if perr != nil || u.Host == "" {
		return t, false, fmt.Errorf("%s %q: not a host:port", LabelAddress, addr)
	}
	t = Target{
		Endpoint:   strings.TrimSuffix(u.String(), "/"),
		MetricsURL: lb.Get(LabelMetricsURL),
		Kind:       lb.Get(LabelKind),
		Model:      lb.Get(LabelModel),
		ID:         lb.Get(LabelID),
	}
	if t.ID == "" {
		t.ID = idFromAddress(addr + path)
	}
	var big string
	lb.Range(func(l labels.Label) {
		if strings.HasPrefix(l.Name, "__") {
			return
		}
		if len(l.Name) > MaxLabelNameBytes || len(l.Value) > MaxLabelValueBytes {
			big = l.Name
		}
		if t.Labels == nil {
			t.Labels = map[string]string{}
		}
		t.Labels[l.Name] = l.Value
	})
	switch {
	case len(t.Labels) > MaxLabels:
		return Target{}, false, fmt.Errorf("%d labels; at most %d", len(t.Labels), MaxLabels)
	case big != "":
		return Target{}, false, fmt.Errorf("label %.64q: names at most %d bytes, values %d", big, MaxLabelNameBytes, MaxLabelValueBytes)
	}
	return t, true, nil
}

// idFromAddress makes an id from host:port[/path]: lower case, every
// character other than a-z, 0-9, '.', '_' and '-' a '-', at most 63.
func idFromAddress(a string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(a) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	id := strings.Trim(b.String(), "-._")
	if len(id) > 63 {
		id = id[:63]
	}
	return id
}

// built is what one target group made: its targets, how many of its
// label sets were dropped and why, and the first few reasons.
type built struct {
	targets []Target
	dropped map[string]int
	errs    []error
}

// buildGroup relabels one target group's label sets and makes targets of
// them, vetted by check (nil: none).
func buildGroup(name string, g *targetgroup.Group, rules []*relabel.Config, check func(Target) error, lb *labels.Builder) built {
	var b built
	drop := func(reason string, err error) {
		if b.dropped == nil {
			b.dropped = map[string]int{}
		}
		b.dropped[reason]++
		if err != nil && len(b.errs) < 5 {
			b.errs = append(b.errs, err)
		}
	}
	for _, tl := range g.Targets {
		lb.Reset(labels.EmptyLabels())
		for n, v := range g.Labels {
			lb.Set(string(n), string(v))
		}
		for n, v := range tl {
			lb.Set(string(n), string(v))
		}
		t, keep, err := build(lb, rules)
		switch {
		case err != nil:
			drop(DropInvalid, fmt.Errorf("%s: %w", tl[model.AddressLabel], err))
			continue
		case !keep:
			drop(DropRelabel, nil)
			continue
		}
		if check != nil {
			if err := check(t); err != nil {
				drop(DropInvalid, fmt.Errorf("target %s (%s): %w", t.ID, t.Endpoint, err))
				continue
			}
		}
		t.Source = name
		b.targets = append(b.targets, t)
	}
	return b
}

// rebuild brings a source's built groups up to date, rebuilding only the
// groups that changed since the last call (all of them when the rules
// changed), and returns the source's targets in group order with the
// drop counts and the first few reasons.
func (r *runner) rebuild(rules []*relabel.Config, check func(Target) error) ([]Target, map[string]int, []error) {
	if r.built == nil || r.allDirty {
		r.built = make(map[string]built, len(r.groups))
		for k := range r.groups {
			r.changed[k] = true
		}
	}
	lb := labels.NewBuilder(labels.EmptyLabels())
	for k := range r.changed {
		if g, ok := r.groups[k]; ok {
			r.built[k] = buildGroup(r.name, g, rules, check, lb)
		} else {
			delete(r.built, k)
		}
	}
	clear(r.changed)
	r.allDirty = false
	keys := make([]string, 0, len(r.built))
	n := 0
	for k, b := range r.built {
		keys = append(keys, k)
		n += len(b.targets)
	}
	sort.Strings(keys)
	out := make([]Target, 0, n)
	dropped := map[string]int{}
	var errs []error
	for _, k := range keys {
		b := r.built[k]
		out = append(out, b.targets...)
		for reason, c := range b.dropped {
			dropped[reason] += c
		}
		if len(errs) < 5 {
			errs = append(errs, b.errs[:min(len(b.errs), 5-len(errs))]...)
		}
	}
	return out, dropped, errs
}
