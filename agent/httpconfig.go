package agent

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// HTTPConfig bounds the HTTP front's connections:
//
//	core:
//	  api_gateway:
//	    http:
//	      read_header_timeout: 10s  # a request's headers must arrive within this
//	      read_timeout: 30s         # the whole request, body included
//	      write_timeout: 2m         # from the end of the headers to the end of the response
//	      idle_timeout: 90s         # a keep-alive connection idle this long is closed
//	      max_header_bytes: 65536   # larger request headers: 431
//	      max_connections: 512      # past it the longest-idle connection is closed
//
// They take effect at the next start.
type HTTPConfig struct {
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	ReadTimeout       Duration `yaml:"read_timeout"`
	WriteTimeout      Duration `yaml:"write_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	MaxConnections    int      `yaml:"max_connections"`
}

// DefaultHTTPConfig returns the HTTP front's default bounds.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{
		ReadHeaderTimeout: Duration(10 * time.Second),
		ReadTimeout:       Duration(30 * time.Second),
		WriteTimeout:      Duration(2 * time.Minute),
		IdleTimeout:       Duration(90 * time.Second),
		MaxHeaderBytes:    64 << 10,
		MaxConnections:    512,
	}
}

// maxHTTPConnections bounds max_connections.
const maxHTTPConnections = 1 << 20

// validateGateway checks the HTTP front's settings; bad reports a problem
// at a key.
func validateGateway(g GatewayConfig, bad func(key, format string, args ...any)) {
	for _, t := range []struct {
		key string
		d   Duration
	}{
		{"core.api_gateway.http.read_header_timeout", g.HTTP.ReadHeaderTimeout},
		{"core.api_gateway.http.read_timeout", g.HTTP.ReadTimeout},
		{"core.api_gateway.http.write_timeout", g.HTTP.WriteTimeout},
		{"core.api_gateway.http.idle_timeout", g.HTTP.IdleTimeout},
	} {
		if d := t.d.D(); d <= 0 || d > time.Hour {
			bad(t.key, "must be between 0 and 1h, got %s", d)
		}
	}
	if g.HTTP.ReadHeaderTimeout.D() > g.HTTP.ReadTimeout.D() && g.HTTP.ReadTimeout.D() > 0 {
		bad("core.api_gateway.http.read_header_timeout", "%s is longer than read_timeout %s", g.HTTP.ReadHeaderTimeout.D(), g.HTTP.ReadTimeout.D())
	}
	if n := g.HTTP.MaxHeaderBytes; n < 1<<10 || n > 1<<20 {
		bad("core.api_gateway.http.max_header_bytes", "must be between 1024 and 1048576, got %d", n)
	}
	if n := g.HTTP.MaxConnections; n < 1 || n > maxHTTPConnections {
		bad("core.api_gateway.http.max_connections", "must be between 1 and %d, got %d", maxHTTPConnections, n)
	}
	for i, h := range g.AllowedHosts {
		if err := checkAllowedHost(h); err != nil {
			bad("core.api_gateway.allowed_hosts", "entry %d: %q: %v", i, h, err)
		}
	}
	for i, o := range g.AllowedOrigins {
		if _, err := normOrigin(o); err != nil {
			bad("core.api_gateway.allowed_origins", "entry %d: %q: %v", i, o, err)
		}
	}
}

// checkAllowedHost accepts "*", a host name, or ".example.com" (that
// domain's subdomains); no port, scheme or path.
func checkAllowedHost(h string) error {
	if h == "*" {
		return nil
	}
	name := strings.TrimPrefix(h, ".")
	if name == "" || strings.ContainsAny(name, ":/ @*") {
		return fmt.Errorf(`want a host name (vitals.example.com), a domain (.example.com) or "*", without port or scheme`)
	}
	return nil
}

// normOrigin returns an origin as browsers send it, scheme://host[:port]
// in lower case, or an error.
func normOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("want scheme://host[:port], such as https://grafana.example.com")
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// hostPolicy is what the front accepts in a request's Host header.
type hostPolicy struct {
	check   bool     // false: any Host
	names   []string // exact names, lower case
	domains []string // ".example.com"
	any     bool
}

// newHostPolicy builds the Host check for a listen address: a loopback
// listener (the DNS rebinding target) always checks; others check only when
// allowed_hosts is set. IP literals and localhost are always accepted.
func newHostPolicy(g GatewayConfig) hostPolicy {
	p := hostPolicy{check: len(g.AllowedHosts) > 0}
	host, _, err := net.SplitHostPort(g.Listen)
	if err == nil {
		if a, err := netip.ParseAddr(host); (err == nil && a.IsLoopback()) || strings.EqualFold(host, "localhost") {
			p.check = true
		} else if err != nil && host != "" {
			p.names = append(p.names, strings.ToLower(host))
		}
	}
	for _, h := range g.AllowedHosts {
		switch h = strings.ToLower(h); {
		case h == "*":
			p.any = true
		case strings.HasPrefix(h, "."):
			p.domains = append(p.domains, h)
		default:
			p.names = append(p.names, h)
		}
	}
	return p
}

// allows reports whether a Host header value passes.
func (p hostPolicy) allows(hostport string) bool {
	if !p.check || p.any {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, n := range p.names {
		if host == n {
			return true
		}
	}
	for _, d := range p.domains {
		if strings.HasSuffix(host, d) {
			return true
		}
	}
	return false
}
