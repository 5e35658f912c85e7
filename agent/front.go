package agent

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// frontMetrics count what the HTTP front refuses and sheds.
type frontMetrics struct {
	rejected *prometheus.CounterVec
	conns    prometheus.Gauge
	shed     *prometheus.CounterVec
}

func newFrontMetrics(reg prometheus.Registerer) (*frontMetrics, error) {
	m := &frontMetrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_http_rejected_total",
			Help: "Requests the HTTP front refused before any handler, by reason (host, origin, cross_site).",
		}, []string{"reason"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_http_connections",
			Help: "Open connections to the HTTP front.",
		}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_http_connections_shed_total",
			Help: "Connections the HTTP front closed to make room, by reason (idle: at max_connections, the one idle longest; busy: none was idle, the one whose request ran longest; header: more than 4x max_connections wait for their request header, the one waiting longest).",
		}, []string{"reason"}),
	}
	for _, r := range []string{"host", "origin", "cross_site"} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{"idle", "busy", "header"} {
		m.shed.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rejected, m.conns, m.shed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// sitePolicy is the front's defence against cross-site use from a
// browser: the Host check against DNS rebinding, the Origin check, and a
// JSON content type or a custom header on every state-changing request
// (which a form or a simple cross-origin fetch cannot send).
type sitePolicy struct {
	hosts   hostPolicy
	origins map[string]bool
}

func newSitePolicy(g GatewayConfig) *sitePolicy {
	p := &sitePolicy{hosts: newHostPolicy(g), origins: map[string]bool{}}
	for _, o := range g.AllowedOrigins {
		if n, err := normOrigin(o); err == nil {
			p.origins[n] = true
		}
	}
	return p
}

// CustomHeader is the header that marks a state-changing request without
// a JSON body as sent by a program, not by a browser form.
const CustomHeader = "X-Requested-With"

// check returns the reason (a metric label) and message when r must be
// refused, or "".
func (p *sitePolicy) check(r *http.Request) (reason, msg string) {
	if !p.hosts.allows(r.Host) {
		return "host", fmt.Sprintf("Host %q is not served here; add it to core.api_gateway.allowed_hosts if clients use that name", r.Host)
	}
	if o := r.Header.Get("Origin"); o != "" {
		n, err := normOrigin(o)
		if err != nil || (!strings.EqualFold(strings.TrimPrefix(strings.TrimPrefix(n, "http://"), "https://"), r.Host) && !p.origins[n]) {
			return "origin", fmt.Sprintf("cross-origin request from %q refused; add the origin to core.api_gateway.allowed_origins to allow it", o)
		}
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return "", ""
	}
	if r.Header.Get(CustomHeader) != "" {
		return "", ""
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && mt == "application/json" {
		return "", ""
	}
	return "cross_site", fmt.Sprintf("a %s needs Content-Type: application/json or an %s header (cross-site request protection)", r.Method, CustomHeader)
}
