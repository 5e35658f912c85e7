package bus

import (
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
