package alertmanager

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/config"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAM is an Alertmanager's POST /api/v2/alerts on a loopback server: it
// keeps every batch it took and answers status.
type fakeAM struct {
	*httptest.Server
	mu      sync.Mutex
	batches [][]Alert
	status  int
	got     chan struct{}
}

func newAM(t *testing.T, status int) *fakeAM {
	am := &fakeAM{status: status, got: make(chan struct{}, 100)}
	am.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		var batch []Alert
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		am.mu.Lock()
		am.batches = append(am.batches, batch)
		am.mu.Unlock()
		w.WriteHeader(am.status)
		am.got <- struct{}{}
	}))
	t.Cleanup(am.Close)
	return am
}

func (am *fakeAM) names() []string {
	am.mu.Lock()
	defer am.mu.Unlock()
	var out []string
	for _, b := range am.batches {
		for _, a := range b {
			out = append(out, a.Name())
		}
	}
	return out
}

func alertsNamed(names ...string) []Alert {
	var out []Alert
	for _, n := range names {
		out = append(out, Alert{Labels: map[string]string{"alertname": n}, StartsAt: time.Unix(1e9, 0).UTC()})
	}
	return out
}

func TestNotifierBatchesToEveryAlertmanager(t *testing.T) {
	good, bad := newAM(t, http.StatusOK), newAM(t, http.StatusBadRequest)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNotifier(NotifierOptions{Alertmanagers: []string{good.URL, bad.URL + "/"}, MaxBatch: 2, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	n.Send(alertsNamed("a", "b", "c", "d", "e")...)
	n.Drain(t.Context())
	if got := strings.Join(good.names(), ","); got != "a,b,c,d,e" {
		t.Errorf("good Alertmanager got %s", got)
	}
	good.mu.Lock()
	if len(good.batches) != 3 {
		t.Errorf("%d batches, want 3 of at most 2", len(good.batches))
	}
	good.mu.Unlock()
	want := fmt.Sprintf(`
# HELP vitals_alertmanager_alerts_dropped_total Alerts dropped: the queue was full, or no Alertmanager took the batch.
# TYPE vitals_alertmanager_alerts_dropped_total counter
vitals_alertmanager_alerts_dropped_total 0
# HELP vitals_alertmanager_alerts_errors_total Alerts in sends to each Alertmanager that failed (connection error, timeout or non-2xx answer).
# TYPE vitals_alertmanager_alerts_errors_total counter
vitals_alertmanager_alerts_errors_total{alertmanager=%[1]q} 0
vitals_alertmanager_alerts_errors_total{alertmanager=%[2]q} 5
# HELP vitals_alertmanager_alerts_sent_total Alerts the agent delivered to each Alertmanager (a 2xx answer to POST /api/v2/alerts).
# TYPE vitals_alertmanager_alerts_sent_total counter
vitals_alertmanager_alerts_sent_total{alertmanager=%[1]q} 5
vitals_alertmanager_alerts_sent_total{alertmanager=%[2]q} 0
# HELP vitals_alertmanager_alertmanagers Alertmanagers the agent sends its alerts to (core.alerting.alertmanagers).
# TYPE vitals_alertmanager_alertmanagers gauge
vitals_alertmanager_alertmanagers 2
# HELP vitals_alertmanager_queue_length Alerts waiting to be sent.
# TYPE vitals_alertmanager_queue_length gauge
vitals_alertmanager_queue_length 0
`, good.URL, bad.URL+"/")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"vitals_alertmanager_alerts_dropped_total", "vitals_alertmanager_alerts_errors_total", "vitals_alertmanager_alerts_sent_total",
		"vitals_alertmanager_alertmanagers", "vitals_alertmanager_queue_length"); err != nil {
		t.Error(err)
	}
}

func TestNotifierDropsWhatNoAlertmanagerTook(t *testing.T) {
	bad := newAM(t, http.StatusInternalServerError)
	m, _ := NewMetrics(nil)
	n, err := NewNotifier(NotifierOptions{Alertmanagers: []string{bad.URL}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	n.Send(alertsNamed("a", "b")...)
	n.Drain(t.Context())
	if got := testutil.ToFloat64(m.dropped); got != 2 {
		t.Errorf("dropped %v, want 2", got)
	}
}

func TestNotifierQueueIsBounded(t *testing.T) {
	am := newAM(t, http.StatusOK)
	m, _ := NewMetrics(nil)
	n, err := NewNotifier(NotifierOptions{Alertmanagers: []string{am.URL}, QueueCapacity: 3, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	n.Send(alertsNamed("a", "b")...)
	n.Send(alertsNamed("c", "d")...) // a is dropped
	n.Send(alertsNamed("e", "f", "g", "h")...)
	if got := n.QueueLength(); got != 3 {
		t.Errorf("queue %d, want 3", got)
	}
	if got := testutil.ToFloat64(m.dropped); got != 5 {
		t.Errorf("dropped %v, want 5", got)
	}
	n.Drain(t.Context())
	if got := strings.Join(am.names(), ","); got != "f,g,h" {
		t.Errorf("sent %s, want the newest: f,g,h", got)
	}
}

func TestNotifierTimesOutEachSend(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hung.Close()
	defer close(release)
	good := newAM(t, http.StatusOK)
	m, _ := NewMetrics(nil)
	n, err := NewNotifier(NotifierOptions{Alertmanagers: []string{hung.URL, good.URL}, Timeout: 100 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	n.Send(alertsNamed("a")...)
	select {
	case <-good.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the good Alertmanager got nothing")
	}
	err = e2etest.Poll(t.Context(), 10*time.Second, 10*time.Millisecond, "the hung send times out", func(context.Context) error {
		if got := testutil.ToFloat64(m.errors.WithLabelValues(hung.URL)); got != 1 {
			return fmt.Errorf("errors %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{"http://am:9093", ""},
		{"https://host/alertmanager", ""},
		{"ftp://am", "scheme"},
		{"am:9093", "scheme"},
		{"http://", "no host"},
		{"http://u:p@am:9093", "credentials"},
		{"http://am:9093/?x=1", "query"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseURL(tc.in)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one about %s", err, tc.err)
			}
		})
	}
}

// TestNotifierTLSAndAuth sends through a client built from Prometheus'
// http_config: an Alertmanager behind TLS and basic auth takes the alerts
// only with its CA and the right password; without them every send fails
// and is counted.
func TestNotifierTLSAndAuth(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "vitals" || p != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		got.Add(1)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the test makes fail
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cfg    config.HTTPClientConfig
		errors float64
	}{
		{"CA and password", config.HTTPClientConfig{TLSConfig: config.TLSConfig{CAFile: ca}, BasicAuth: &config.BasicAuth{Username: "vitals", Password: "s3cret"}}, 0},
		{"no CA", config.HTTPClientConfig{BasicAuth: &config.BasicAuth{Username: "vitals", Password: "s3cret"}}, 1},
		{"wrong password", config.HTTPClientConfig{TLSConfig: config.TLSConfig{CAFile: ca}, BasicAuth: &config.BasicAuth{Username: "vitals", Password: "guess"}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := config.NewClientFromConfig(tc.cfg, "alertmanager")
			if err != nil {
				t.Fatal(err)
			}
			m, _ := NewMetrics(nil)
			n, err := NewNotifier(NotifierOptions{Alertmanagers: []string{srv.URL}, Client: client, Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			before := got.Load()
			n.Send(alertsNamed("a")...)
			n.Drain(t.Context())
			client.CloseIdleConnections()
			if e := testutil.ToFloat64(m.errors.WithLabelValues(srv.URL)); e != tc.errors {
				t.Errorf("errors %v, want %v", e, tc.errors)
			}
			if delivered := got.Load() - before; delivered != int64(1-tc.errors) {
				t.Errorf("delivered %d", delivered)
			}
		})
	}
}
