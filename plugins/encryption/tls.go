package encryption

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/agent"
)

// WrapListener serves TLS on ln when cfg enables the encryption plugin with
// a tls section; otherwise it returns ln unchanged. The certificate is read
// now (a bad pair is an error) and again whenever either file changes, so
// certificate renewals need no restart. The agent binary calls it on its
// listener before agent.New.
func WrapListener(cfg *agent.Config, ln net.Listener) (net.Listener, error) {
	pc := cfg.Plugin(Name)
	if !pc.Enabled {
		return ln, nil
	}
	c, err := decode(pc.Section)
	if err != nil {
		return nil, err
	}
	if c.TLS == nil {
		return ln, nil
	}
	tc, err := ServerTLS(c.TLS.CertFile, c.TLS.KeyFile)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, tc), nil
}

// ServerTLS returns a server TLS config (TLS 1.2 or later) that reloads the
// certificate and key files when they change.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	r := &certReloader{cert: certFile, key: keyFile}
	if _, err := r.get(nil); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get}, nil
}

type certReloader struct {
	cert, key string

	mu     sync.Mutex
	loaded *tls.Certificate
	mtimes [2]time.Time
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	var mt [2]time.Time
	for i, f := range []string{r.cert, r.key} {
		fi, err := os.Stat(f)
		if err != nil {
			return r.fallback(fmt.Errorf("tls: %w", err))
		}
		mt[i] = fi.ModTime()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded != nil && mt == r.mtimes {
		return r.loaded, nil
	}
	c, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		if r.loaded != nil { // keep serving the last good pair
			return r.loaded, nil
		}
		return nil, fmt.Errorf("tls: %w", err)
	}
	r.loaded, r.mtimes = &c, mt
	return r.loaded, nil
}

func (r *certReloader) fallback(err error) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded != nil {
		return r.loaded, nil
	}
	return nil, err
}
