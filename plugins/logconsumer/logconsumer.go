package logconsumer

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/logtap"
	"github.com/vitals-dev/vitals/exporters/store"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// Name is the plugin's name in config and in the registry.
const Name = "log_consumer"

// Version of the plugin.
const Version = "0.1.0"

var migrations = []store.Migration{{Version: 1, SQL: `
CREATE TABLE logs (
	id     INTEGER PRIMARY KEY,
	ts     INTEGER NOT NULL,
	level  TEXT    NOT NULL,
	rank   INTEGER NOT NULL,
	source TEXT    NOT NULL,
	topic  TEXT    NOT NULL,
	sealed INTEGER NOT NULL,
	body   BLOB    NOT NULL
);
CREATE INDEX logs_ts ON logs (ts);
CREATE INDEX logs_source_ts ON logs (source, ts);`}}

// Plugin is the log_consumer plugin.
type Plugin struct {
	agent.Base
	cfg Config

	mu     sync.Mutex
	host   agent.Host
	log    *slog.Logger
	m      *metrics
	db     *store.DB
	bus    bus.Bus
	cipher store.Cipher // required mode: fixed; auto: looked up per batch
	// plain is set while encrypt: auto stores records in plaintext because
	// the encryption service failed; the writer warns when it changes.
	plain   atomic.Bool
	queue   chan Entry
	agentQ  chan logtap.Record
	detach  func()
	flushed chan struct{} // closed when the writer has written what was queued
	now     func() time.Time
}

type metrics struct {
	records  *prometheus.CounterVec // outcome
	pruned   prometheus.Counter
	size     prometheus.GaugeFunc
	fallback prometheus.Counter
}

// Factory builds the plugin from its section; it opens nothing.
func Factory(s agent.Section) (agent.Plugin, error) {
	cfg, err := decode(s)
	if err != nil {
		return nil, err
	}
	return New(cfg), nil
}

// New returns the plugin with a validated config.
func New(cfg Config) *Plugin {
	deps := []string{bus.ServiceName}
	if cfg.Encrypt == EncryptRequired {
		deps = append(deps, store.CipherService)
	}
	return &Plugin{
		Base: agent.NewBase(agent.Metadata{
			Name:         Name,
			Version:      Version,
			Description:  "Stores logs.* bus records, the agent's own included, in the embedded SQLite store with retention",
			Priority:     agent.PriorityInfrastructure,
			Dependencies: deps,
		}),
		cfg: cfg,
		now: time.Now,
	}
}

// Routes implements agent.RouteProvider.
func (p *Plugin) Routes() []agent.Route {
	return []agent.Route{{Pattern: "GET /api/v1/admin/logs", Handler: httpHandler{p}}}
}

// Initialize opens and migrates the store, gets a bus client and
// registers the metrics.
func (p *Plugin) Initialize(ctx context.Context, h agent.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.host, p.log = h, h.Logger()
	provider, err := agent.Require[bus.Provider](ctx, h, bus.ServiceName)
	if err != nil {
		return err
	}
	if p.cfg.Encrypt == EncryptRequired {
		if p.cipher, err = agent.Require[store.Cipher](ctx, h, store.CipherService); err != nil {
			return err
		}
	}
	db, err := store.Open(ctx, p.cfg.Path)
	if err != nil {
		return fmt.Errorf("log_consumer: %w", err)
	}
	if err := db.Migrate(ctx, "logs", migrations); err != nil {
		_ = db.Close()
		return fmt.Errorf("log_consumer: %w", err)
	}
	b, err := provider.ClientFor(h.Name(), p.cfg.topics().Uses)
	if err != nil {
		_ = db.Close()
		return err
	}
	p.db, p.bus = db, b
	p.m = &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_log_consumer_records_total",
			Help: "Log records received by log_consumer, by outcome (stored, dropped, filtered, malformed, failed).",
		}, []string{"outcome"}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vitals_log_consumer_pruned_total",
			Help: "Stored log records deleted by retention.",
		}),
		size: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vitals_log_consumer_store_bytes",
			Help: "Size of the log store file and its write-ahead log.",
		}, func() float64 { return float64(db.SizeBytes()) }),
		fallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vitals_log_consumer_plaintext_fallback_total",
			Help: "Log records that encrypt: auto stored in plaintext because the encryption service is configured but failed.",
		}),
	}
	for _, o := range []string{"stored", "dropped", "filtered", "malformed", "failed"} {
		p.m.records.WithLabelValues(o)
	}
	for _, col := range []prometheus.Collector{p.m.records, p.m.pruned, p.m.size, p.m.fallback} {
		if err := h.Metrics().Register(col); err != nil {
			_ = b.Close()
			_ = db.Close()
			p.db, p.bus = nil, nil
			return fmt.Errorf("log_consumer: %w", err)
		}
	}
	return nil
}

// BusTopics implements bus.TopicUser: the log consumer cannot start
// without subscribing to its prefixes.
func (p *Plugin) BusTopics() bus.Topics {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.topics()
}

// Start subscribes, starts the writer and retention, and taps the agent's
// logger when publish_agent_logs is on and the binary installed a tap.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db == nil {
		return errors.New("log_consumer: Start before Initialize")
	}
	p.queue = make(chan Entry, p.cfg.Queue)
	// The subscriptions end when Stop closes the bus client.
	var subs []<-chan bus.Message
	for _, prefix := range p.cfg.Subscribe {
		ch, err := p.bus.Subscribe(context.Background(), prefix)
		if err != nil {
			_ = p.bus.Close() // ends the subscriptions made so far
			return fmt.Errorf("log_consumer: subscribe %s: %w", prefix, err)
		}
		subs = append(subs, ch)
	}
	// The goroutines keep the store and client they started with: Stop
	// takes them from the plugin.
	db, b := p.db, p.bus
	var readers sync.WaitGroup // the writer drains the queue once they end
	readers.Add(len(subs))
	for _, ch := range subs {
		p.host.Go(func(context.Context) {
			defer readers.Done()
			p.read(ch)
		})
	}
	flushed := make(chan struct{})
	p.flushed = flushed
	p.host.Go(func(ctx context.Context) {
		defer close(flushed)
		p.write(ctx, db, &readers)
	})
	p.host.Go(func(ctx context.Context) { p.retain(ctx, db) })
	if p.cfg.PublishAgentLogs {
		if tap, ok := logtap.Find(p.log.Handler()); ok {
			p.agentQ = make(chan logtap.Record, 1024)
			p.detach = tap.Attach(p.tapSink)
			p.host.Go(func(ctx context.Context) { p.publishAgentLogs(ctx, b) })
		}
	}
	return nil
}

// read moves messages from one subscription to the write queue, through
// the bus filters; it ends when the subscription closes.
func (p *Plugin) read(ch <-chan bus.Message) {
	for m := range ch {
		e, err := parse(m, p.now())
		if err != nil {
			p.m.records.WithLabelValues("malformed").Inc()
			continue
		}
		select {
		case p.queue <- e:
		default:
			p.m.records.WithLabelValues("dropped").Inc()
		}
	}
}

// write batches the queue into transactions until ctx ends and every
// reader is done (Stop closes their subscriptions), then writes what is
// left.
func (p *Plugin) write(ctx context.Context, db *store.DB, readers *sync.WaitGroup) {
	t := time.NewTicker(p.cfg.FlushInterval.D())
	defer t.Stop()
	batch := make([]Entry, 0, p.cfg.BatchSize)
	flush := func() {
		if len(batch) > 0 {
			p.insert(db, batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case e := <-p.queue:
			batch = append(batch, e)
			if len(batch) >= p.cfg.BatchSize {
				flush()
			}
		case <-t.C:
			flush()
		case <-ctx.Done():
			readers.Wait()
			for {
				select {
				case e := <-p.queue:
					batch = append(batch, e)
					if len(batch) >= p.cfg.BatchSize {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}

// currentCipher returns the cipher to seal with now: the required one, the
// running encryption service in auto mode, or none. In auto mode no
// encryption plugin at all means plaintext, as configured; an encryption
// service that is there but cannot be had (failed, stopped, not a cipher)
// means plaintext too, since logs must not be lost, but that is a fault:
// the returned error says why, and the caller counts the records.
func (p *Plugin) currentCipher() (store.Cipher, error) {
	switch p.cfg.Encrypt {
	case EncryptRequired:
		return p.cipher, nil
	case EncryptAuto:
		v, err := p.host.Get(context.Background(), store.CipherService)
		if errors.Is(err, agent.ErrServiceNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		c, ok := v.(store.Cipher)
		if !ok {
			return nil, fmt.Errorf("service %q is a %T, not a cipher", store.CipherService, v)
		}
		return c, nil
	}
	return nil, nil
}

// noteFallback warns when encrypt: auto starts storing plaintext because
// encryption failed, and says when it stops.
func (p *Plugin) noteFallback(err error) {
	if err != nil {
		if !p.plain.Swap(true) {
			p.log.Warn("encrypt is auto and the encryption service failed: storing log records in plaintext until it is back",
				"path", p.cfg.Path, "err", err)
		}
		return
	}
	if p.plain.Swap(false) {
		p.log.Info("the encryption service is back: log records are encrypted again", "path", p.cfg.Path)
	}
}

func aad(ts int64, level, source string) []byte {
	return fmt.Appendf(nil, "logs|%d|%s|%s", ts, level, source)
}

func (p *Plugin) insert(db *store.DB, batch []Entry) {
	ciph, fallback := p.currentCipher()
	p.noteFallback(fallback)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		p.m.records.WithLabelValues("failed").Add(float64(len(batch)))
		return
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO logs (ts, level, rank, source, topic, sealed, body) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		_ = tx.Rollback()
		p.m.records.WithLabelValues("failed").Add(float64(len(batch)))
		return
	}
	stored, failed := 0, 0
	for _, e := range batch {
		ts := e.Time.UnixNano()
		raw, _ := json.Marshal(body{Message: e.Message, Attributes: e.Attributes, TraceID: e.TraceID, SpanID: e.SpanID})
		data, sealed, err := store.Seal(ciph, raw, aad(ts, e.Level, e.Source))
		if err == nil {
			_, err = stmt.ExecContext(ctx, ts, e.Level, levelRank[e.Level], e.Source, e.Topic, sealed, data)
		}
		if err != nil {
			failed++
			continue
		}
		stored++
	}
	_ = stmt.Close()
	if err := tx.Commit(); err != nil {
		failed, stored = failed+stored, 0
	}
	p.m.records.WithLabelValues("stored").Add(float64(stored))
	p.m.records.WithLabelValues("failed").Add(float64(failed))
	if fallback != nil {
		p.m.fallback.Add(float64(stored))
	}
}

// retain applies retention now and at every interval.
func (p *Plugin) retain(ctx context.Context, db *store.DB) {
	r := storeRetention(p.cfg)
	t := time.NewTicker(p.cfg.Retention.Interval.D())
	defer t.Stop()
	for {
		if n, err := db.Prune(ctx, r, p.now()); err == nil {
			p.m.pruned.Add(float64(n))
		} else if ctx.Err() == nil {
			p.log.Warn("log retention failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func storeRetention(cfg Config) store.Retention {
	return store.Retention{
		Table: "logs", TimeColumn: "ts", SizeColumn: "body",
		MaxAge: cfg.Retention.MaxAge.D(), MaxRows: cfg.Retention.MaxRows, MaxBytes: cfg.Retention.MaxBytes,
	}
}

// tapSink runs on the goroutine that logs: it only queues.
func (p *Plugin) tapSink(r logtap.Record) {
	select {
	case p.agentQ <- r:
	default:
		p.m.records.WithLabelValues("dropped").Inc()
	}
}

// publishAgentLogs publishes the agent's records on logs.<level>.<source>.
func (p *Plugin) publishAgentLogs(ctx context.Context, b bus.Bus) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.agentQ:
			source := r.Attr("plugin")
			if !sourceRE().MatchString(source) || strings.ContainsAny(source, ".") {
				source = "agent"
			}
			level := normLevel(r.Level.String())
			m, err := bus.NewProto(&busv1.LogRecord{
				Time: timestamppb.New(r.Time), Level: level, Source: source,
				Message: r.Message, Attributes: r.Attrs,
				TraceId: r.Attr("trace_id"), SpanId: r.Attr("span_id"),
			})
			if err != nil {
				continue
			}
			if err := b.Publish(ctx, "logs."+level+"."+source, m); err != nil {
				p.m.records.WithLabelValues("dropped").Inc()
			}
		}
	}
}

// Stop detaches from the logger, closes the subscriptions, waits until the
// writer has written what is queued, and closes the store. Safe without
// Start and twice.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	detach, b, flushed, db := p.detach, p.bus, p.flushed, p.db
	p.detach, p.bus, p.flushed, p.db = nil, nil, nil, nil
	p.mu.Unlock()
	if detach != nil {
		detach()
	}
	if b != nil {
		_ = b.Close() // ends the readers; the writer then drains the queue
	}
	if flushed != nil {
		select {
		case <-flushed:
		case <-ctx.Done():
			// The writer still writes: the store stays open for it.
			return fmt.Errorf("log_consumer stop: the queue is not written yet: %w", ctx.Err())
		}
	}
	if db != nil {
		return db.Close()
	}
	return nil
}

// Query is a read of the stored logs.
type Query struct {
	Source string    // exact source; "" for all
	Level  string    // minimum level; "" for all
	Since  time.Time // inclusive; zero for no bound
	Until  time.Time // exclusive; zero for no bound
	Limit  int
}

// Query returns matching records, newest first. Sealed records are opened
// with the running encryption service; one that cannot be opened (no
// service, retired key, tampered) is returned with Encrypted set and an
// explanatory message rather than failing the whole read.
func (p *Plugin) Query(ctx context.Context, q Query) ([]Entry, error) {
	p.mu.Lock()
	db := p.db
	p.mu.Unlock()
	if db == nil {
		return nil, errors.New("log_consumer is not running")
	}
	where, args := []string{"1=1"}, []any{}
	if q.Source != "" {
		where, args = append(where, "source = ?"), append(args, q.Source)
	}
	if q.Level != "" {
		where, args = append(where, "rank >= ?"), append(args, levelRank[normLevel(q.Level)])
	}
	if !q.Since.IsZero() {
		where, args = append(where, "ts >= ?"), append(args, q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		where, args = append(where, "ts < ?"), append(args, q.Until.UnixNano())
	}
	args = append(args, q.Limit)
	rows, err := db.QueryContext(ctx, `SELECT id, ts, level, source, topic, sealed, body FROM logs WHERE `+strings.Join(where, " AND ")+` ORDER BY ts DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ciph store.Cipher
	if v, err := p.host.Get(ctx, store.CipherService); err == nil {
		ciph, _ = v.(store.Cipher)
	}
	out := []Entry{}
	for rows.Next() {
		var (
			e      Entry
			ts     int64
			sealed bool
			data   []byte
		)
		if err := rows.Scan(&e.ID, &ts, &e.Level, &e.Source, &e.Topic, &sealed, &data); err != nil {
			return nil, err
		}
		e.Time = time.Unix(0, ts).UTC()
		raw, err := store.Unseal(ciph, data, aad(ts, e.Level, e.Source), sealed)
		if err != nil {
			e.Encrypted, e.Message = true, "<"+err.Error()+">"
			out = append(out, e)
			continue
		}
		var b body
		if json.Unmarshal(raw, &b) == nil {
			e.Message, e.Attributes, e.TraceID, e.SpanID = b.Message, b.Attributes, b.TraceID, b.SpanID
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DB returns the plugin's store (nil before Initialize), for tests and
// tools.
func (p *Plugin) DB() *sql.DB {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db == nil {
		return nil
	}
	return p.db.DB
}

// HealthCheck adds the store's size to the state report.
func (p *Plugin) HealthCheck(ctx context.Context) agent.Health {
	h := p.Base.HealthCheck(ctx)
	p.mu.Lock()
	db := p.db
	p.mu.Unlock()
	if db != nil {
		h.Details = map[string]string{"path": p.cfg.Path, "store_bytes": fmt.Sprint(db.SizeBytes()), "encrypt": p.cfg.Encrypt}
	}
	return h
}

var (
	_ agent.Plugin        = (*Plugin)(nil)
	_ agent.RouteProvider = (*Plugin)(nil)
	_ agent.HealthChecker = (*Plugin)(nil)
)
