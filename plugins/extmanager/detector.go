package extmanager

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/internal/backoff"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// firstRetry is the wait before the first repeat of a detection that did
// not identify its server; it doubles up to detection.max_backoff.
const firstRetry = time.Second

// detector runs capability detection for catalog entries, at most limit at
// once and never twice at once for one plugin; a request for a plugin being
// detected runs once more after. Requests wait in a queue for one of at
// most limit workers, not in a goroutine each: every server is asked at
// start and again each redetect_interval, and a goroutine a server (its
// stack while it waits, its descriptor kept by the runtime for good) was
// most of what detection cost a target.
//
// A server whose kind is not known after a detection (it failed, or no
// family recognised it) is asked again and again, after waits that double
// from firstRetry up to max_backoff, until it is identified: a server
// started after the agent is identified within seconds of answering. An
// identified server is asked again every redetect_interval, when the
// health engine sees it recover, when its probes fail in a way that says
// it changed (nudge), and on reload.
type detector struct {
	catalog *catalog.Catalog
	client  func(id string) *http.Client
	log     *slog.Logger
	tracer  trace.Tracer
	limit   int           // workers at most
	reset   chan struct{} // redetect_interval changed

	mu         sync.Mutex
	opts       probes.DetectOptions
	every      time.Duration
	maxBackoff time.Duration
	ctx        context.Context
	inflight   map[string]bool // queued or being detected
	again      map[string]bool // asked for while being detected
	queue      []string        // waiting for a worker, oldest first
	workers    int
	retries    map[string]*retry    // plugins whose kind is not known yet
	nudged     map[string]time.Time // when nudge last asked, by plugin
	wg         sync.WaitGroup
}

// retry is the pending repeat of a detection that did not identify its
// server.
type retry struct {
	n     int // detections that failed in a row
	timer *time.Timer
}

func newDetector(c *catalog.Catalog, client func(string) *http.Client, log *slog.Logger, tracer trace.Tracer, cfg DetectionConfig) *detector {
	d := &detector{
		catalog: c, client: client, log: log, tracer: tracer, limit: max(cfg.Concurrency, 1),
		reset: make(chan struct{}, 1), inflight: map[string]bool{}, again: map[string]bool{},
		retries: map[string]*retry{}, nudged: map[string]time.Time{},
	}
	d.setOptions(cfg)
	return d
}

// detectable reports whether detection asks p: a server with an endpoint
// that is not an in-process plugin (those describe themselves).
func detectable(p catalog.AIPlugin) bool {
	return p.Endpoint != "" && p.Source != catalog.SourceInProcess
}

// loop enables requests until ctx ends, and re-detects every server each
// redetect_interval so that version changes of servers are seen.
func (d *detector) loop(ctx context.Context) {
	d.mu.Lock()
	d.ctx = ctx
	pending := make([]string, 0)
	for id := range d.again {
		pending = append(pending, id)
	}
	d.again = map[string]bool{}
	every := d.every
	d.mu.Unlock()
	defer d.stopRetries()
	for _, id := range pending {
		d.request(id)
	}
	for _, p := range d.catalog.List(catalog.Filter{}) {
		if detectable(p) && p.Detection.State == catalog.DetectPending {
			d.request(p.ID)
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.reset:
			d.mu.Lock()
			every = d.every
			d.mu.Unlock()
			t.Reset(every)
		case <-t.C:
			d.requestAll()
		}
	}
}

// requestAll asks for a detection of every server.
func (d *detector) requestAll() {
	for _, p := range d.catalog.List(catalog.Filter{}) {
		if detectable(p) {
			d.request(p.ID)
		}
	}
}

// stopRetries ends the pending repeats once the loop ends.
func (d *detector) stopRetries() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, r := range d.retries {
		r.timer.Stop()
		delete(d.retries, id)
	}
}

// setOptions changes the options of later detections; a changed
// redetect_interval restarts its ticker.
func (d *detector) setOptions(c DetectionConfig) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opts.Attempts, d.opts.StepTimeout = c.Attempts, c.Timeout.D()
	d.maxBackoff = c.MaxBackoff.D()
	if every := c.RedetectInterval.D(); every != d.every {
		d.every = every
		select {
		case d.reset <- struct{}{}:
		default:
		}
	}
}

func (d *detector) request(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx == nil || d.inflight[id] {
		d.again[id] = true // before the loop runs, or while one runs
		return
	}
	if d.ctx.Err() != nil {
		return
	}
	d.inflight[id] = true
	d.queue = append(d.queue, id)
	if d.workers < d.limit {
		d.workers++
		d.wg.Add(1)
		go d.work(d.ctx)
	}
}

// nudge asks for a detection of an identified server whose probes fail in
// a way that says it may have changed under the agent (a model renamed or
// gone: 404, not ready), at most once per max_backoff. Servers not yet
// identified are retried anyway.
func (d *detector) nudge(id string) {
	p, ok := d.catalog.Get(id)
	if !ok || !detectable(p) || p.Detection.State != catalog.DetectDone {
		return
	}
	d.mu.Lock()
	gap := d.maxBackoff
	now := time.Now()
	if now.Sub(d.nudged[id]) < gap || now.Sub(p.Detection.At) < gap {
		d.mu.Unlock()
		return
	}
	d.nudged[id] = now
	d.mu.Unlock()
	d.log.Debug("probes failing; asking the server what it is again", "id", id)
	d.request(id)
}

// forget drops what the detector keeps about a plugin that left the
// catalog.
func (d *detector) forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.retries[id]; r != nil {
		r.timer.Stop()
		delete(d.retries, id)
	}
	delete(d.nudged, id)
}

// work detects the queued plugins until the queue is empty or ctx ends;
// then it drops what is still queued. A plugin asked for again while it
// was detected goes to the back of the queue.
func (d *detector) work(ctx context.Context) {
	defer d.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.queue) > 0 && ctx.Err() == nil {
		id := d.queue[0]
		d.queue[0] = ""
		d.queue = d.queue[1:]
		d.mu.Unlock()
		d.detectOnce(ctx, id)
		d.settle(ctx, id)
		d.mu.Lock()
		if d.again[id] && ctx.Err() == nil {
			delete(d.again, id)
			d.queue = append(d.queue, id)
			continue
		}
		delete(d.inflight, id)
		delete(d.again, id)
	}
	for _, id := range d.queue { // ctx ended
		delete(d.inflight, id)
		delete(d.again, id)
	}
	d.queue = nil // its array held every server at start
	d.workers--
	if len(d.inflight) == 0 {
		// Maps keep their room when emptied; these held every server.
		d.inflight, d.again = map[string]bool{}, map[string]bool{}
	}
}

// settle schedules the next try of a server detection did not identify,
// and drops the pending try of one it did.
func (d *detector) settle(ctx context.Context, id string) {
	p, ok := d.catalog.Get(id)
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.retries[id]
	if r != nil {
		r.timer.Stop()
	}
	if !ok || !detectable(p) || p.Detection.State == catalog.DetectDone || ctx.Err() != nil {
		delete(d.retries, id)
		return
	}
	if r == nil {
		r = &retry{}
		d.retries[id] = r
	}
	wait := backoff.Jitter(backoff.Exponential(r.n, firstRetry, d.maxBackoff))
	r.n++
	r.timer = time.AfterFunc(wait, func() { d.request(id) })
}

func (d *detector) detectOnce(ctx context.Context, id string) {
	p, ok := d.catalog.Get(id)
	if !ok || p.Endpoint == "" {
		return
	}
	d.mu.Lock()
	opts := d.opts
	d.mu.Unlock()
	opts.Kind = p.Spec().Kind
	opts.MetricsURL = p.MetricsURL // read when the server's API does not say what it is
	ctx, span := d.tracer.Start(ctx, "ai.detect", trace.WithAttributes(attribute.String("vitals.ai.plugin", id)))
	defer span.End()
	began := time.Now()
	det, err := engines.Registry().Detect(ctx, d.client(id), p.Endpoint, opts)
	if ctx.Err() != nil {
		return // stopping; the result may be partial
	}
	span.SetAttributes(attribute.String("vitals.ai.kind", string(det.Kind)), attribute.Int("vitals.ai.detect.attempts", det.Attempts),
		attribute.Bool("vitals.ai.detect.from_metrics", det.FromMetrics))
	if err != nil {
		class := probes.Classify(err)
		span.SetStatus(codes.Error, string(class))
		span.SetAttributes(attribute.String("error.type", string(class)))
		// Said once per cause: a server that stays down is asked every
		// few seconds, and the log says so at debug level.
		level := slog.LevelWarn
		if p.Detection.State == catalog.DetectFailed && p.Detection.Reason == det.Reason {
			level = slog.LevelDebug
		}
		d.log.Log(ctx, level, "capability detection failed; retrying", "id", id, "endpoint", p.Endpoint,
			"attempts", det.Attempts, "class", class, "err", err)
	} else {
		d.log.DebugContext(ctx, "capabilities detected", "id", id, "kind", det.Kind, "version", det.Version,
			"capabilities", det.Capabilities, "from_metrics", det.FromMetrics, "took", time.Since(began).Round(time.Millisecond))
	}
	d.catalog.SetDetection(id, det, err)
}

// wait waits for the detections running once loop has returned. Taking
// the lock first orders every earlier request's wg.Add before the Wait;
// later requests see the loop's ctx done and start nothing.
func (d *detector) wait() {
	d.mu.Lock()
	d.mu.Unlock() //nolint:staticcheck // an empty critical section, for ordering
	d.wg.Wait()
}
