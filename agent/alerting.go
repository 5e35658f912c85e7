package agent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"reflect"
	"time"

	"github.com/prometheus/common/config"

	"github.com/vitals-dev/vitals/exporters/alertmanager"
)

// pusher is the running Alertmanager push of core.alerting.
type pusher struct {
	cfg      AlertingConfig
	client   *http.Client
	notifier *alertmanager.Notifier
	cancel   context.CancelFunc
	done     chan struct{}
}

// alertLabels are the labels every pushed alert carries: job="vitals" and
// instance=host:port of the listener (the host's name when it listens on
// every address), as Prometheus would label a scrape of the agent;
// core.alerting.labels overrides them.
func alertLabels(cfg AlertingConfig, addr string) map[string]string {
	labels := map[string]string{"job": "vitals", "instance": addr}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			if name, err := os.Hostname(); err == nil && name != "" {
				labels["instance"] = net.JoinHostPort(name, port)
			}
		}
	}
	maps.Copy(labels, cfg.Labels)
	return labels
}

// startAlerting starts the push when cfg enables it. It is called with
// alertMu held.
func (a *Agent) startAlerting(cfg AlertingConfig, addr string) error {
	if !cfg.Enabled() {
		return nil
	}
	client, err := config.NewClientFromConfig(cfg.HTTPConfig, "alertmanager")
	if err != nil {
		return fmt.Errorf("core.alerting.http_config: %w", err)
	}
	n, err := alertmanager.NewNotifier(alertmanager.NotifierOptions{
		Alertmanagers: cfg.Alertmanagers, Client: client, Timeout: cfg.Timeout.D(),
		QueueCapacity: cfg.QueueCapacity, UserAgent: "vitals/" + a.o.Version,
		Metrics: a.alertMetrics, Logger: a.log.With("component", "alertmanager"),
	})
	if err != nil {
		return fmt.Errorf("core.alerting: %w", err)
	}
	e, err := alertmanager.NewEvaluator(alertmanager.EvaluatorOptions{
		Gatherer: a.gatherer, Sender: n, Labels: alertLabels(cfg, addr),
		Interval: cfg.EvaluationInterval.D(), ResendInterval: cfg.ResendInterval.D(),
		Metrics: a.alertMetrics, Logger: a.log.With("component", "alertmanager"),
	})
	if err != nil {
		return fmt.Errorf("core.alerting: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pusher{cfg: cfg, client: client, notifier: n, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		evalDone := make(chan struct{})
		go func() { defer close(evalDone); e.Run(ctx) }()
		n.Run(ctx)
		<-evalDone
	}()
	a.pusher = p
	a.log.Info("pushing the agent's alerts to Alertmanager", "alertmanagers", cfg.Alertmanagers,
		"labels", alertLabels(cfg, addr), "evaluation_interval", cfg.EvaluationInterval, "resend_interval", cfg.ResendInterval)
	return nil
}

// stopAlerting stops the push and sends what is still queued, within the
// push's timeout. It is called with alertMu held.
func (a *Agent) stopAlerting() {
	p := a.pusher
	if p == nil {
		return
	}
	a.pusher = nil
	p.cancel()
	<-p.done
	ctx, cancel := context.WithTimeout(context.Background(), min(p.cfg.Timeout.D(), 5*time.Second))
	defer cancel()
	p.notifier.Drain(ctx)
	p.client.CloseIdleConnections()
}

// reloadAlerting restarts the push when core.alerting changed. Firing
// alerts are found again at the first evaluation and sent with a new
// start; Alertmanager keeps them as the same alerts (same labels).
func (a *Agent) reloadAlerting(cfg AlertingConfig) {
	a.alertMu.Lock()
	defer a.alertMu.Unlock()
	addr := a.listenAddr
	if addr == "" { // not started yet, or shutting down
		return
	}
	var running AlertingConfig
	if a.pusher != nil {
		running = a.pusher.cfg
	}
	if reflect.DeepEqual(running, cfg) || (!running.Enabled() && !cfg.Enabled()) {
		return
	}
	a.stopAlerting()
	if err := a.startAlerting(cfg, addr); err != nil {
		a.log.Error("Alertmanager push not restarted", "err", err)
	}
}
