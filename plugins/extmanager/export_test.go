package extmanager

import "github.com/prometheus/client_golang/prometheus"

// ProbeRequests is vitals_probe_requests_total, for the tests.
func (e *ExtManager) ProbeRequests() *prometheus.CounterVec { return e.probe.requests }

// NewDefaultClient is the client of targets with no http_config.
var NewDefaultClient = newDefaultClient
