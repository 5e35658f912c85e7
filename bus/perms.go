package bus

import (
	"fmt"
	"slices"
	"strings"
)

// Permissions are the topic prefixes a client may publish and subscribe
// to. The prefix "*" allows everything.
type Permissions struct {
	Publish   []string `yaml:"publish"`
	Subscribe []string `yaml:"subscribe"`
}

// DefaultPermissions is what a plugin gets when config says nothing: its own
// namespace and logs.
func DefaultPermissions(plugin string) Permissions {
	return Permissions{
		Publish:   []string{plugin + ".", "logs."},
		Subscribe: []string{plugin + ".", "logs."},
	}
}

// TopicUser is implemented by plugins that use the bus beyond their own
// namespace and logs. When config gives such a plugin no permissions of its
// own, the broker grants DefaultPermissions plus its Uses; when config
// does, they are the operator's restriction, and a config that leaves out
// part of Needs is refused (check-config, start and reload alike).
type TopicUser interface {
	BusTopics() Topics
}

// Topics are the topic prefixes a plugin uses, as its config stands.
type Topics struct {
	// Uses is every prefix the plugin publishes or subscribes to.
	Uses Permissions
	// Needs is the part of Uses it cannot start without.
	Needs Permissions
}

// With returns p with o's prefixes added.
func (p Permissions) With(o Permissions) Permissions {
	out := Permissions{Publish: slices.Clone(p.Publish), Subscribe: slices.Clone(p.Subscribe)}
	for _, pre := range o.Publish {
		if !slices.Contains(out.Publish, pre) {
			out.Publish = append(out.Publish, pre)
		}
	}
	for _, pre := range o.Subscribe {
		if !slices.Contains(out.Subscribe, pre) {
			out.Subscribe = append(out.Subscribe, pre)
		}
	}
	return out
}

// Lacks returns what of need p does not allow source, as `publish
// "health.request."` and `subscribe "plugin."`; nil when p covers need.
func (p Permissions) Lacks(source string, need Permissions) []string {
	var out []string
	for _, pre := range need.Publish {
		if !p.CanPublish(pre) {
			out = append(out, fmt.Sprintf("publish %q", pre))
		}
	}
	for _, pre := range need.Subscribe {
		if !p.CanSubscribe(source, pre) {
			out = append(out, fmt.Sprintf("subscribe %q", pre))
		}
	}
	return out
}

// AllowAll allows every topic.
var AllowAll = Permissions{Publish: []string{"*"}, Subscribe: []string{"*"}}

// CanPublish reports whether topic may be published. Replies (ReplyPrefix)
// may always be published.
func (p Permissions) CanPublish(topic string) bool {
	if strings.HasPrefix(topic, ReplyPrefix) {
		return true
	}
	return covered(p.Publish, topic)
}

// CanSubscribe reports whether prefix may be subscribed to by source: every
// topic the prefix matches must be allowed, so the prefix must itself start
// with an allowed prefix. A plugin may always subscribe to its own replies.
func (p Permissions) CanSubscribe(source, prefix string) bool {
	if source != "" && strings.HasPrefix(prefix, ReplyPrefix+source+".") {
		return true
	}
	return covered(p.Subscribe, prefix)
}

func covered(allowed []string, s string) bool {
	if slices.Contains(allowed, "*") {
		return true
	}
	for _, a := range allowed {
		if strings.HasPrefix(s, a) {
			return true
		}
	}
	return false
}
