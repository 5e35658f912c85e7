package agent

import (
	"net"
	"os"
	"testing"
)

func TestAlertLabels(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name, addr string
		labels     map[string]string
		want       map[string]string
	}{
		{"loopback keeps its address", "127.0.0.1:9464", nil, map[string]string{"job": "vitals", "instance": "127.0.0.1:9464"}},
		{"every address: the host's name", "0.0.0.0:9464", nil, map[string]string{"job": "vitals", "instance": net.JoinHostPort(host, "9464")}},
		{"every IPv6 address too", "[::]:9464", nil, map[string]string{"job": "vitals", "instance": net.JoinHostPort(host, "9464")}},
		{"config wins and adds", "0.0.0.0:9464", map[string]string{"instance": "gpu-1:9464", "team": "ml"},
			map[string]string{"job": "vitals", "instance": "gpu-1:9464", "team": "ml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := alertLabels(AlertingConfig{Labels: tc.labels}, tc.addr)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}
