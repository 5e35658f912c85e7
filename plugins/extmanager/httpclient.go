package extmanager

import (
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/common/config"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/internal/h1"
	"github.com/vitals-dev/vitals/probes"
)

// clientName names the clients built from an http_config (Prometheus'
// code uses it for its connection tracing).
const clientName = "vitals_ai_plugin"

// connBuffer is the size of the read and write buffers a request uses
// (net/http's default is 4 KiB each). Requests and the answers probes read
// are short, and a longer body is read past the buffer straight into the
// reader's own slice.
const connBuffer = 1 << 10

// newDefaultClient is the client of targets with no http_config.
//
// Plain HTTP goes through h1's transport: the check's own goroutine sends
// the request and reads the answer, and an idle kept connection is its
// socket alone. net/http's transport gave each kept connection a read and
// a write goroutine and handed every request between them and the check
// (8 KiB of stacks a connection, and three goroutines woken a probe);
// https goes to net/http's, as before. It sends each request's trace
// context itself (probes.WithTraceContext then adds no copy of the
// request to carry it).
//
// No gzip: probe bodies are small, and decompressing them cost the health
// checks a tenth of their CPU. Keep-alive: a check at 1 s reuses its
// connection rather than opening one (a TCP handshake and, with TLS, a key
// exchange per probe); as many idle connections are kept per server as
// checks may run at once (several AI plugins often share one server), or
// each extra check opens and closes one. There is no bound on the idle
// connections of all servers together beyond that: a pool that drops the
// least recently used one past its bound, with checks going round more
// servers than it holds, would drop at every check the one the next check
// needs. A connection idle for a minute (checks further apart than that)
// is closed.
func newDefaultClient(concurrency int) *http.Client {
	perHost := max(concurrency, 4)
	return &http.Client{Transport: &h1.Transport{
		MaxIdleConnsPerHost: perHost,
		IdleConnTimeout:     time.Minute,
		BufferSize:          connBuffer,
		Propagator:          probes.Propagator,
		Fallback: &http.Transport{
			MaxIdleConnsPerHost: perHost,
			IdleConnTimeout:     time.Minute, DisableCompression: true,
			ReadBufferSize: connBuffer, WriteBufferSize: connBuffer,
		},
	}, CheckRedirect: probes.SameHostRedirect}
}

// newHTTPClient builds the client of a target's http_config, with
// Prometheus' own code: credentials (authorization, basic_auth, OAuth 2),
// http_headers, tls_config, proxy. Redirects, when followed, stay on the
// target's host, as with the default client.
func newHTTPClient(hc config.HTTPClientConfig) (*http.Client, error) {
	c, err := config.NewClientFromConfig(hc, clientName, config.WithIdleConnTimeout(time.Minute))
	if err != nil {
		return nil, err
	}
	if hc.FollowRedirects {
		c.CheckRedirect = probes.SameHostRedirect
	}
	return c, nil
}

// fileDir is the directory of the file s was read from, "" when it came
// from none (the built-in config, the environment).
func fileDir(s agent.Section) string {
	if s.File() == "" {
		return ""
	}
	return s.Dir()
}

// checkHTTPConfig checks an http_config as a config load should: its
// keys, and that the files it names (CA, client certificate and key) can
// be read and make a client, so that a bad one rejects the config rather
// than failing every check later. Its relative file paths are first taken
// to be in dir, unless dir is "".
func checkHTTPConfig(hc *config.HTTPClientConfig, dir string) error {
	if hc == nil {
		return nil
	}
	if dir != "" {
		hc.SetDirectory(dir)
	}
	if err := hc.Validate(); err != nil {
		return err
	}
	c, err := newHTTPClient(*hc)
	if err != nil {
		return err
	}
	c.CloseIdleConnections()
	return nil
}

// clients holds the HTTP clients of the targets: the default one, and one
// per distinct http_config, shared by every target that has an equal one
// (the discovered targets share the section's).
type clients struct {
	def *http.Client

	mu   sync.Mutex
	made []madeClient
}

type madeClient struct {
	cfg    *config.HTTPClientConfig
	client *http.Client
}

// failing is a transport that fails every request with err: the client of
// an http_config that could not be built (a CA file removed since the
// config was loaded), so that every check says why.
type failing struct{ err error }

func (f failing) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// get returns the client of hc, nil for the default one.
func (c *clients) get(hc *config.HTTPClientConfig) *http.Client {
	if hc == nil {
		return c.def
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.made {
		if m.cfg == hc || reflect.DeepEqual(*m.cfg, *hc) {
			return m.client
		}
	}
	client, err := newHTTPClient(*hc)
	if err != nil {
		client = &http.Client{Transport: failing{fmt.Errorf("http_config: %w", err)}}
	}
	c.made = append(c.made, madeClient{cfg: hc, client: client})
	return client
}

// of returns the client of a catalog entry.
func (c *clients) of(p catalog.AIPlugin) *http.Client { return c.get(p.Spec().HTTPConfig) }

// keep drops the clients of the http_configs neither an entry of the
// catalog nor one of also has any more, closing their idle connections.
func (c *clients) keep(cat *catalog.Catalog, also []*config.HTTPClientConfig) {
	used := map[*config.HTTPClientConfig]bool{}
	for _, p := range cat.List(catalog.Filter{}) {
		if hc := p.Spec().HTTPConfig; hc != nil {
			used[hc] = true
		}
	}
	for _, hc := range also {
		used[hc] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.made[:0]
	for _, m := range c.made {
		if inUse(m.cfg, used) {
			kept = append(kept, m)
		} else {
			m.client.CloseIdleConnections()
		}
	}
	clear(c.made[len(kept):])
	c.made = kept
}

func inUse(hc *config.HTTPClientConfig, used map[*config.HTTPClientConfig]bool) bool {
	if used[hc] {
		return true
	}
	for u := range used {
		if reflect.DeepEqual(*u, *hc) {
			return true
		}
	}
	return false
}

// closeIdle closes the idle connections of every client.
func (c *clients) closeIdle() {
	c.def.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.made {
		m.client.CloseIdleConnections()
	}
}
