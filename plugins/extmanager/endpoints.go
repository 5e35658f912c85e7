package extmanager

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
)

// Entries of bus.allowed_endpoints that are not addresses.
const (
	// AllowLoopback allows loopback addresses and "localhost".
	AllowLoopback = "loopback"
	// AllowPeer allows the address the announcement came from.
	AllowPeer = "peer"
)

var hostnameRE = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// checkAllowed checks one entry of bus.allowed_endpoints.
func checkAllowed(a string) error {
	switch {
	case a == AllowLoopback || a == AllowPeer:
		return nil
	case strings.Contains(a, "://"):
		return fmt.Errorf("%q is a URL: give the host, an IP address or a CIDR prefix", a)
	case strings.Contains(a, "/"):
		if _, err := netip.ParsePrefix(a); err != nil {
			return fmt.Errorf("%q is not a CIDR prefix: %v", a, err)
		}
		return nil
	}
	if _, err := netip.ParseAddr(a); err == nil {
		return nil
	}
	if len(a) > 253 || !hostnameRE.MatchString(a) {
		return fmt.Errorf("%q: want %s, %s, an IP address, a CIDR prefix or a host name", a, AllowLoopback, AllowPeer)
	}
	return nil
}

// endpointAllowed reports whether endpoint's host is in allowed, for an
// announcement that came from peerAddr (host:port; "" for the agent's own
// plugins). Entries were checked by checkAllowed.
func endpointAllowed(allowed []string, endpoint, peerAddr string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("endpoint %q: %v", endpoint, err)
	}
	// The probes append their paths to the endpoint: with a query or a
	// fragment the announcer would choose the whole path of each request.
	switch {
	case u.User != nil:
		return fmt.Errorf("endpoint %q: user info is not allowed", truncate(endpoint, 128))
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(endpoint, "?#"):
		return fmt.Errorf("endpoint %q: a base URL takes no query or fragment", truncate(endpoint, 128))
	}
	host := strings.ToLower(u.Hostname())
	ip, ipErr := netip.ParseAddr(host)
	ip = ip.Unmap()
	var from netip.Addr
	if h, _, err := net.SplitHostPort(peerAddr); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			from = a.Unmap()
		}
	}
	for _, a := range allowed {
		switch {
		case a == AllowLoopback:
			if host == "localhost" || (ipErr == nil && ip.IsLoopback()) {
				return nil
			}
		case a == AllowPeer:
			if ipErr == nil && from.IsValid() && ip == from {
				return nil
			}
		case strings.Contains(a, "/"):
			if pre, err := netip.ParsePrefix(a); err == nil && ipErr == nil && pre.Contains(ip) {
				return nil
			}
		default:
			if want, err := netip.ParseAddr(a); err == nil {
				if ipErr == nil && want.Unmap() == ip {
					return nil
				}
			} else if strings.EqualFold(a, host) {
				return nil
			}
		}
	}
	return fmt.Errorf("endpoint host %q is not allowed (bus.allowed_endpoints: %s)", host, strings.Join(allowed, ", "))
}
