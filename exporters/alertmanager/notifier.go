package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Notifier defaults, as Prometheus' notifier has them.
const (
	DefaultQueueCapacity = 10000
	DefaultMaxBatch      = 256
	DefaultTimeout       = 10 * time.Second
)

// apiPath is where Alertmanager's v2 API takes alerts, below its base URL.
const apiPath = "/api/v2/alerts"

// NotifierOptions configures a Notifier.
type NotifierOptions struct {
	// Alertmanagers are the base URLs (http://am:9093, or with a path
	// prefix: https://host/alertmanager); alerts go to URL + /api/v2/alerts.
	Alertmanagers []string
	// Client sends the requests; build it from Prometheus' http_config
	// (config.NewClientFromConfig) for auth and TLS. Nil: a plain client.
	Client *http.Client
	// Timeout bounds each POST to each Alertmanager.
	Timeout time.Duration
	// QueueCapacity bounds the alerts waiting; past it the oldest are
	// dropped and counted.
	QueueCapacity int
	// MaxBatch bounds the alerts in one POST.
	MaxBatch  int
	UserAgent string
	Metrics   *Metrics
	Logger    *slog.Logger
}

// Notifier sends alerts to Alertmanagers. Send queues; Run sends.
type Notifier struct {
	o   NotifierOptions
	ams []*target

	mu    sync.Mutex
	queue []Alert
	more  chan struct{}
}

// target is one Alertmanager.
type target struct {
	name     string // the configured URL, the metrics' alertmanager label
	endpoint string
	failing  bool // the last send failed; guarded by being used by one goroutine at a time
}

// ParseURL checks an Alertmanager base URL: http or https, a host, no
// query, fragment or credentials (those go in http_config).
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q, want http or https", u.Scheme)
	case u.Host == "":
		return nil, errors.New("no host")
	case u.User != nil:
		return nil, errors.New("credentials in the URL; put them in http_config (basic_auth, authorization)")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("a query or fragment; give the base URL, e.g. http://alertmanager:9093")
	}
	return u, nil
}

// NewNotifier checks the options and returns a Notifier; nothing runs
// until Run.
func NewNotifier(o NotifierOptions) (*Notifier, error) {
	if len(o.Alertmanagers) == 0 {
		return nil, errors.New("no Alertmanagers")
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.QueueCapacity <= 0 {
		o.QueueCapacity = DefaultQueueCapacity
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.UserAgent == "" {
		o.UserAgent = "vitals"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics, _ = NewMetrics(nil)
	}
	n := &Notifier{o: o, more: make(chan struct{}, 1)}
	for _, s := range o.Alertmanagers {
		u, err := ParseURL(s)
		if err != nil {
			return nil, fmt.Errorf("alertmanager %q: %w", s, err)
		}
		n.ams = append(n.ams, &target{name: s, endpoint: strings.TrimSuffix(u.String(), "/") + apiPath})
	}
	o.Metrics.use(o.Alertmanagers)
	o.Metrics.queueCap.Set(float64(o.QueueCapacity))
	o.Metrics.queueLength.Set(0)
	return n, nil
}

// Send queues alerts for every Alertmanager; it never blocks. When the
// queue would overflow, the oldest alerts are dropped and counted.
func (n *Notifier) Send(alerts ...Alert) {
	if len(alerts) == 0 {
		return
	}
	n.mu.Lock()
	capacity := n.o.QueueCapacity
	if d := len(alerts) - capacity; d > 0 {
		alerts = alerts[d:]
		n.o.Metrics.dropped.Add(float64(d))
	}
	if d := len(n.queue) + len(alerts) - capacity; d > 0 {
		n.queue = n.queue[d:]
		n.o.Metrics.dropped.Add(float64(d))
	}
	n.queue = append(n.queue, alerts...)
	n.o.Metrics.queueLength.Set(float64(len(n.queue)))
	n.mu.Unlock()
	select {
	case n.more <- struct{}{}:
	default:
	}
}

// QueueLength returns the number of alerts waiting.
func (n *Notifier) QueueLength() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue)
}

// nextBatch takes up to MaxBatch alerts off the queue.
func (n *Notifier) nextBatch() []Alert {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := min(len(n.queue), n.o.MaxBatch)
	if k == 0 {
		return nil
	}
	batch := make([]Alert, k)
	copy(batch, n.queue)
	n.queue = append(n.queue[:0:0], n.queue[k:]...)
	n.o.Metrics.queueLength.Set(float64(len(n.queue)))
	return batch
}

// Run sends queued alerts in batches until ctx ends. Call it once.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.more:
		}
		for ctx.Err() == nil {
			batch := n.nextBatch()
			if batch == nil {
				break
			}
			n.sendAll(ctx, batch)
		}
	}
}

// Drain sends what is still queued, until the queue is empty or ctx ends;
// call it after Run returned, to flush at shutdown.
func (n *Notifier) Drain(ctx context.Context) {
	for ctx.Err() == nil {
		batch := n.nextBatch()
		if batch == nil {
			return
		}
		n.sendAll(ctx, batch)
	}
}

// sendAll posts one batch to every Alertmanager at once and waits for all.
// A batch that no Alertmanager took is counted as dropped; it is not
// retried: the evaluator resends firing alerts every resend interval.
func (n *Notifier) sendAll(ctx context.Context, batch []Alert) {
	body, err := json.Marshal(batch)
	if err != nil { // maps of strings and times: cannot happen
		n.o.Metrics.dropped.Add(float64(len(batch)))
		n.o.Logger.Error("alerts not encoded", "err", err)
		return
	}
	var wg sync.WaitGroup
	ok := make([]bool, len(n.ams))
	for i, am := range n.ams {
		wg.Go(func() { ok[i] = n.send(ctx, am, body, len(batch)) })
	}
	wg.Wait()
	for _, v := range ok {
		if v {
			return
		}
	}
	n.o.Metrics.dropped.Add(float64(len(batch)))
}

func (n *Notifier) send(ctx context.Context, am *target, body []byte, count int) bool {
	ctx, cancel := context.WithTimeout(ctx, n.o.Timeout)
	defer cancel()
	began := time.Now()
	err := n.post(ctx, am.endpoint, body)
	n.o.Metrics.duration.WithLabelValues(am.name).Observe(time.Since(began).Seconds())
	if err != nil {
		n.o.Metrics.errors.WithLabelValues(am.name).Add(float64(count))
		if !am.failing {
			n.o.Logger.Warn("alerts not sent to Alertmanager; retried at the next resend", "alertmanager", am.name, "alerts", count, "err", err)
		} else {
			n.o.Logger.Debug("alerts not sent to Alertmanager", "alertmanager", am.name, "alerts", count, "err", err)
		}
		am.failing = true
		return false
	}
	if am.failing {
		n.o.Logger.Info("alerts reach Alertmanager again", "alertmanager", am.name)
	}
	am.failing = false
	n.o.Metrics.sent.WithLabelValues(am.name).Add(float64(count))
	return true
}

func (n *Notifier) post(ctx context.Context, endpoint string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.o.UserAgent)
	resp, err := n.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Bounded: the first KiB names the problem; the rest is drained up to
	// 64 KiB so the connection can be reused.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", endpoint, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
