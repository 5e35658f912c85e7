package encryption

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
)

// selfSigned writes a certificate for 127.0.0.1 with the given common name.
func selfSigned(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Rename(keyFile+".tmp", keyFile)
	_ = os.Rename(certFile+".tmp", certFile)
	return certFile, keyFile
}

func TestWrapListenerServesTLSAndReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir, "first")
	k := writeKey(t, dir, "k")
	conf := "core:\n  api_gateway:\n    plugins:\n      encryption:\n        keys: [{id: k1, file: " + k + "}]\n        tls: {cert_file: " + certFile + ", key_file: " + keyFile + "}\n"
	reg := agent.NewRegistry()
	if err := reg.Register(Name, Factory); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(conf), reg, envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := WrapListener(cfg, raw)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })

	cn := func() string {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // self-signed test certificate
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("https://" + raw.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if got := cn(); got != "first" {
		t.Fatalf("served certificate %q", got)
	}
	// Renewal: new files, later mtimes; the next handshake uses them.
	later := time.Now().Add(2 * time.Second)
	selfSigned(t, dir, "second")
	_ = os.Chtimes(certFile, later, later)
	_ = os.Chtimes(keyFile, later, later)
	if got := cn(); got != "second" {
		t.Fatalf("after renewal served %q", got)
	}
	// Plain HTTP on a TLS listener fails.
	resp, err := http.Get("http://" + raw.Addr().String() + "/")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served on the TLS listener")
		}
	}
}

func TestWrapListenerOff(t *testing.T) {
	for _, tc := range []struct{ name, conf string }{
		{"plugin absent", "core: {}\n"},
		{"no tls section", "core:\n  api_gateway:\n    plugins:\n      encryption:\n        keys: [{id: k1, env: VITALS_K1}]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := agent.NewRegistry()
			_ = reg.Register(Name, Factory)
			cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(tc.conf), reg, envconfig.MapLookuper(nil))
			if err != nil {
				t.Fatal(err)
			}
			var ln net.Listener = &net.TCPListener{}
			got, err := WrapListener(cfg, ln)
			if err != nil || got != ln {
				t.Fatalf("WrapListener = %v, %v; want the listener unchanged", got, err)
			}
		})
	}
	if _, err := ServerTLS("/nonexistent.crt", "/nonexistent.key"); err == nil {
		t.Fatal("ServerTLS with missing files succeeded")
	}
}
