package logtap

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Record is one log record as sinks see it: attributes flattened to
// "group.key" strings.
type Record struct {
	Time    time.Time
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

// Attr returns the value of a flattened attribute.
func (r Record) Attr(key string) string { return r.Attrs[key] }

// Tap is the slog.Handler. The handlers that WithAttrs and WithGroup derive
// from a Tap share its sinks.
type Tap struct {
	next   slog.Handler
	hub    *hub
	prefix string      // open groups, "a.b."
	attrs  []slog.Attr // already prefixed
}

type hub struct {
	mu    sync.RWMutex
	sinks map[uint64]func(Record)
	seq   uint64
}

// New returns a Tap that passes records on to next.
func New(next slog.Handler) *Tap {
	return &Tap{next: next, hub: &hub{sinks: map[uint64]func(Record){}}}
}

// Find returns the Tap behind h, if h is one (or derived from one).
func Find(h slog.Handler) (*Tap, bool) {
	t, ok := h.(*Tap)
	return t, ok
}

// Attach adds a sink for every later record that the next handler is
// enabled for. The sink runs on the goroutine that logs: it must not block
// and must not log. detach removes it; calling it twice is harmless.
func (t *Tap) Attach(sink func(Record)) (detach func()) {
	t.hub.mu.Lock()
	t.hub.seq++
	id := t.hub.seq
	t.hub.sinks[id] = sink
	t.hub.mu.Unlock()
	return func() {
		t.hub.mu.Lock()
		delete(t.hub.sinks, id)
		t.hub.mu.Unlock()
	}
}

// Enabled implements slog.Handler.
func (t *Tap) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (t *Tap) Handle(ctx context.Context, r slog.Record) error {
	err := t.next.Handle(ctx, r)
	t.hub.mu.RLock()
	defer t.hub.mu.RUnlock()
	if len(t.hub.sinks) == 0 {
		return err
	}
	rec := Record{Time: r.Time, Level: r.Level, Message: r.Message, Attrs: make(map[string]string, len(t.attrs)+r.NumAttrs())}
	for _, a := range t.attrs {
		flatten(rec.Attrs, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		flatten(rec.Attrs, t.prefix, a)
		return true
	})
	for _, s := range t.hub.sinks {
		s(rec)
	}
	return err
}

func flatten(into map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			flatten(into, p, g)
		}
		return
	}
	if a.Key == "" {
		return
	}
	switch v.Kind() {
	case slog.KindString:
		into[prefix+a.Key] = v.String()
	default:
		into[prefix+a.Key] = fmt.Sprint(v.Any())
	}
}

// WithAttrs implements slog.Handler.
func (t *Tap) WithAttrs(as []slog.Attr) slog.Handler {
	n := *t
	n.next = t.next.WithAttrs(as)
	n.attrs = append([]slog.Attr(nil), t.attrs...)
	for _, a := range as {
		if t.prefix != "" {
			a = slog.Attr{Key: t.prefix + a.Key, Value: a.Value}
		}
		n.attrs = append(n.attrs, a)
	}
	return &n
}

// WithGroup implements slog.Handler.
func (t *Tap) WithGroup(name string) slog.Handler {
	if name == "" {
		return t
	}
	n := *t
	n.next = t.next.WithGroup(name)
	n.prefix = t.prefix + name + "."
	return &n
}

var _ slog.Handler = (*Tap)(nil)
