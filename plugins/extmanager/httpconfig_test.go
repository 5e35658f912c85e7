package extmanager_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/probes"
)

// Every request to a target carries its http_config's credentials:
// authorization inline (a static target), from a file beside a manifest,
// and a custom header (the discovered targets, from the section's
// http_config; llama.cpp reads its key from X-Api-Key too and leaves
// /health and /v1/models open, so only the synthetic chat needs it). The secrets show nowhere: not in the admin API (where the
// http_config is "<secret>"), not in the logs, not in the metrics.
func TestHTTPConfigCredentials(t *testing.T) {
	const vllmKey, gwKey, sdKey = "sk-vllm-0123456789", "sk-gateway-abcdef", "sk-discovered-42"
	_, vllm := listenSim(t, aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{APIKey: vllmKey}}, "127.0.0.1:0")
	_, gw := listenSim(t, aisim.Config{Kind: probes.KindOpenAI, Knobs: aisim.Knobs{APIKey: gwKey}}, "127.0.0.1:0")
	_, sdURL := listenSim(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{APIKey: sdKey}}, "127.0.0.1:0")

	dir := t.TempDir()
	manifests := filepath.Join(dir, "plugins.d")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(manifests, "gw.key"), []byte(gwKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The token file is relative to the manifest.
	writeManifest(t, manifests, "gw.yaml", fmt.Sprintf("endpoint: %q\nhttp_config:\n  authorization: {credentials_file: gw.key}\n", gw))
	sdFile := filepath.Join(dir, "sd.json")
	u, _ := url.Parse(sdURL)
	writeSD(t, sdFile, []map[string]any{{"targets": []string{u.Host}, "labels": map[string]string{"__vitals_id__": "found"}}})

	var logs agenttest.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := startWith(t, fmt.Sprintf(`
directory: %q
bus: {enabled: false}
health: {interval: 20ms, unhealthy_interval: 20ms, start_spread: 0, jitter: 0, synthetic: true}
targets:
  - id: v
    endpoint: %q
    http_config:
      authorization: {type: Bearer, credentials: %s}
file_sd_configs: [{files: [%q]}]
http_config:
  http_headers:
    X-Api-Key: {secrets: [%s]}
`, manifests, vllm, vllmKey, sdFile, sdKey), map[string]any{hostLogger: log})

	for _, tt := range []struct {
		id   string
		kind probes.Kind
	}{{"v", probes.KindVLLM}, {"gw", probes.KindOpenAI}, {"found", probes.KindLlamaCpp}} {
		p := r.awaitDetected(tt.id)
		if p.Detection.State != catalog.DetectDone || p.Kind != tt.kind {
			t.Errorf("%s: detection %s kind %s (%s), want %s", tt.id, p.Detection.State, p.Kind, p.Detection.Reason, tt.kind)
		}
		// Healthy with a synthetic inference: every probe was let in.
		r.awaitHealth(tt.id, func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	}

	mux := http.NewServeMux()
	for _, rt := range r.e.Routes() {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var api strings.Builder
	for _, path := range []string{"/api/v1/admin/ai-plugins", "/api/v1/admin/ai-plugins/v", "/api/v1/admin/ai-plugins/found"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		api.Write(b)
	}
	resp, err := http.Get(srv.URL + "/api/v1/admin/ai-plugins/v")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		HTTPConfig struct {
			Authorization struct{ Type, Credentials string }
		} `json:"http_config"`
	}
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if a := v.HTTPConfig.Authorization; err != nil || a.Type != "Bearer" || a.Credentials != "<secret>" {
		t.Errorf("the admin API shows v's authorization as %+v (%v), want Bearer <secret>", a, err)
	}
	mfs, err := r.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	enc := expfmt.NewEncoder(&metrics, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		_ = enc.Encode(mf)
	}
	for _, key := range []string{vllmKey, gwKey, sdKey} {
		for what, text := range map[string]string{"admin API": api.String(), "logs": logs.String(), "metrics": metrics.String()} {
			if strings.Contains(text, key) {
				t.Errorf("the %s show the secret %q", what, key)
			}
		}
	}
}

// pki is a CA, a server certificate it signed for 127.0.0.1 and the name
// aisim.test, and a client certificate it signed, written as PEM files.
type pki struct {
	dir                         string
	caFile, certFile, keyFile   string // the CA, and the client's certificate and key
	serverCert                  tls.Certificate
	pool                        *x509.CertPool
	otherCAFile                 string // a CA that signed nothing the server has
	otherCertFile, otherKeyFile string // a client certificate of the other CA
	serverName                  string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), serverName: "aisim.test"}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	serial := int64(0)
	newCert := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, key, der
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	caTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "vitals test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	ca, caKey, caDER := newCert(caTmpl, nil, nil)
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)

	_, srvKey, srvDER := newCert(&x509.Certificate{Subject: pkix.Name{CommonName: p.serverName}, DNSNames: []string{p.serverName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	p.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}

	_, cliKey, cliDER := newCert(&x509.Certificate{Subject: pkix.Name{CommonName: "vitals"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	p.certFile, p.keyFile = write("client.pem", "CERTIFICATE", cliDER), write("client-key.pem", "EC PRIVATE KEY", keyDER(cliKey))

	other, otherKey, otherDER := newCert(&x509.Certificate{Subject: pkix.Name{CommonName: "another CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, nil)
	p.otherCAFile = write("other-ca.pem", "CERTIFICATE", otherDER)
	_, oKey, oDER := newCert(&x509.Certificate{Subject: pkix.Name{CommonName: "intruder"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, other, otherKey)
	p.otherCertFile, p.otherKeyFile = write("other.pem", "CERTIFICATE", oDER), write("other-key.pem", "EC PRIVATE KEY", keyDER(oKey))
	return p
}

// TLS to a target: a server whose certificate a private CA signed for a
// name that is not its address, and that wants a client certificate of
// that CA. The target with the CA, the client certificate and the server
// name is detected and healthy; without the CA, with another client
// certificate or with no server name, it is the tls class, never healthy.
// insecure_skip_verify with the client certificate gets in.
func TestHTTPConfigTLS(t *testing.T) {
	p := newPKI(t)
	sim, err := aisim.New(aisim.Config{Kind: probes.KindLlamaCpp})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(sim)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the refused handshakes are the test
	srv.StartTLS()
	t.Cleanup(func() { sim.Close(); srv.Close() })
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	endpoint := "https://127.0.0.1:" + port

	tlsTarget := func(id, tlsConfig string) string {
		return fmt.Sprintf("  - id: %s\n    endpoint: %q\n    http_config:\n      tls_config: %s\n", id, endpoint, tlsConfig)
	}
	section := "directory: \"\"\nbus: {enabled: false}\ndetection: {attempts: 1}\n" +
		"health: {interval: 20ms, unhealthy_interval: 20ms, start_spread: 0, jitter: 0, synthetic: true}\ntargets:\n" +
		tlsTarget("good", fmt.Sprintf("{ca_file: %q, cert_file: %q, key_file: %q, server_name: %s}", p.caFile, p.certFile, p.keyFile, p.serverName)) +
		tlsTarget("insecure", fmt.Sprintf("{insecure_skip_verify: true, cert_file: %q, key_file: %q}", p.certFile, p.keyFile)) +
		tlsTarget("wrong-ca", fmt.Sprintf("{ca_file: %q, cert_file: %q, key_file: %q, server_name: %s}", p.otherCAFile, p.certFile, p.keyFile, p.serverName)) +
		tlsTarget("no-name", fmt.Sprintf("{ca_file: %q, cert_file: %q, key_file: %q}", p.caFile, p.certFile, p.keyFile)) +
		tlsTarget("intruder", fmt.Sprintf("{ca_file: %q, cert_file: %q, key_file: %q, server_name: %s}", p.caFile, p.otherCertFile, p.otherKeyFile, p.serverName)) +
		fmt.Sprintf("  - {id: plain, endpoint: %q}\n", endpoint)
	r := start(t, section)

	for _, id := range []string{"good", "insecure"} {
		pl := r.awaitDetected(id)
		if pl.Detection.State != catalog.DetectDone || pl.Kind != probes.KindLlamaCpp {
			t.Errorf("%s: detection %s kind %s: %s", id, pl.Detection.State, pl.Kind, pl.Detection.Reason)
		}
		r.awaitHealth(id, func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	}
	for _, id := range []string{"wrong-ca", "no-name", "intruder", "plain"} {
		pl := r.awaitDetected(id)
		if pl.Detection.State != catalog.DetectFailed {
			t.Errorf("%s: detection %s kind %s, want failed", id, pl.Detection.State, pl.Kind)
		}
		r.awaitHealth(id, func(h *health.Status) bool {
			if h != nil && h.State == health.StateHealthy {
				t.Fatalf("%s healthy: %+v", id, h)
			}
			return h != nil && h.State == health.StateUnhealthy
		})
		if pl, _ := r.e.Catalog().Get(id); id != "intruder" && pl.Health.Class != probes.ClassTLS {
			// A client certificate the server refuses fails the handshake on
			// the server's side, which TLS 1.3 reports to the client as a
			// reset or an alert on the first read.
			t.Errorf("%s: class %s, want tls (%s)", id, pl.Health.Class, pl.Health.Reason)
		}
	}
}

// A bad http_config is a config error that names the key: a CA file that
// cannot be read, two credentials at once.
func TestHTTPConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name, section, want string
	}{
		{"missing CA", "targets: [{id: a, endpoint: \"https://127.0.0.1:1\", http_config: {tls_config: {ca_file: /nonexistent/ca.pem}}}]",
			"targets[0].http_config"},
		{"two credentials", "targets: [{id: a, endpoint: \"http://127.0.0.1:1\", http_config: {basic_auth: {username: u, password: p}, authorization: {credentials: x}}}]",
			"targets[0]"},
		{"credentials in the URL", "targets: [{id: a, endpoint: \"http://user:hunter2@127.0.0.1:1\"}]", "credentials in the URL"},
		{"section's CA", "http_config: {tls_config: {ca_file: /nonexistent/ca.pem}}", "http_config"},
		{"a probe module's CA", "probe: {enabled: true, modules: {tls: {probes: [liveness], timeout: 5s, http_config: {tls_config: {ca_file: /nonexistent/ca.pem}}}}}",
			"probe.modules.tls.http_config"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := agent.NewSection(tt.section)
			if err != nil {
				t.Fatal(err)
			}
			_, err = extmanager.Factory(s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}
