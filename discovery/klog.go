//go:build !nokubernetes

package discovery

import (
	"context"
	"log/slog"
	"sync"

	"k8s.io/klog/v2"
)

// client-go, under the kubernetes discoverer, reports list and watch
// failures through klog, the global logger of Kubernetes' libraries, and
// without saying which config they belong to. While a kubernetes source
// runs, klog's records go to its Manager's logger, and each error record
// counts as an error of every kubernetes source running.
var kube struct {
	once    sync.Once
	mu      sync.Mutex
	sources map[kubeSource]bool
}

// kubeSource is one running kubernetes source of one Manager.
type kubeSource struct {
	m *Manager
	r *runner
}

func routeKlog(m *Manager, r *runner) {
	kube.once.Do(func() {
		kube.sources = map[kubeSource]bool{}
		klog.SetSlogLogger(slog.New(klogHandler{}))
	})
	kube.mu.Lock()
	kube.sources[kubeSource{m, r}] = true
	kube.mu.Unlock()
}

func unrouteKlog(m *Manager, r *runner) {
	kube.mu.Lock()
	delete(kube.sources, kubeSource{m, r})
	kube.mu.Unlock()
}

// klogHandler forwards klog's records to the logger of a Manager that
// runs a kubernetes source, and counts its errors.
type klogHandler struct {
	attrs []slog.Attr
	group string
}

func (h klogHandler) target() (*slog.Logger, []func()) {
	kube.mu.Lock()
	defer kube.mu.Unlock()
	var log *slog.Logger
	var incs []func()
	for s := range kube.sources {
		if log == nil {
			log = s.m.log
		}
		incs = append(incs, s.m.metrics.errors.WithLabelValues(s.r.name).Inc)
	}
	return log, incs
}

func (h klogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h klogHandler) Handle(ctx context.Context, r slog.Record) error {
	log, incs := h.target()
	if log == nil {
		return nil
	}
	if r.Level >= slog.LevelError {
		for _, inc := range incs {
			inc()
		}
	}
	hd := log.Handler().WithAttrs(append([]slog.Attr{slog.String("from", "client-go")}, h.attrs...))
	if h.group != "" {
		hd = hd.WithGroup(h.group)
	}
	if !hd.Enabled(ctx, r.Level) {
		return nil
	}
	return hd.Handle(ctx, r)
}

func (h klogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return klogHandler{attrs: append(append([]slog.Attr{}, h.attrs...), as...), group: h.group}
}

func (h klogHandler) WithGroup(g string) slog.Handler {
	return klogHandler{attrs: h.attrs, group: g}
}
