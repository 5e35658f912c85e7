package health

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/probes"
)

// CheckRecord is one check in history.
type CheckRecord struct {
	// Seq numbers the checks of one engine run; with Plugin and Time it
	// identifies a record.
	Seq    int64  `json:"seq"`
	Plugin string `json:"plugin"`
	// Time is when the check decided its verdict, after its probes;
	// Started is when it began and Duration how long it took.
	Time     time.Time         `json:"time"`
	Started  time.Time         `json:"started"`
	Duration time.Duration     `json:"duration_ns"`
	State    State             `json:"state"`
	OK       bool              `json:"ok"`
	Probe    string            `json:"failed_probe,omitempty"`
	Class    probes.ErrorClass `json:"class,omitempty"`
	Latency  time.Duration     `json:"latency_ns"`
	TTFT     time.Duration     `json:"ttft_ns,omitempty"`
	TPS      float64           `json:"output_tokens_per_second,omitempty"`
	Probes   []ProbeOutcome    `json:"probes,omitempty"`
}

// Transition is one change of state in history.
type Transition struct {
	Plugin string `json:"plugin"`
	// Time is when the change was decided, at the end of the check that
	// made it; Started is when that check began and Duration how long it
	// took.
	Time     time.Time     `json:"time"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	From     State         `json:"from"`
	To       State         `json:"to"`
	Reason   string        `json:"reason,omitempty"`
}

// Uptime sums up one window of a plugin's history.
type Uptime struct {
	Window      string  `json:"window"`
	Checks      int64   `json:"checks"`
	UptimeRatio float64 `json:"uptime_ratio"`
	Transitions int64   `json:"transitions"`
	// MeanLatencySeconds is over the good checks.
	MeanLatencySeconds float64 `json:"mean_latency_seconds"`
}

// UptimeWindows are the windows of the uptime report.
var UptimeWindows = []struct {
	Name string
	D    time.Duration
}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

// History keeps checks and transitions: the last Ring of each per plugin
// in memory, and all of them in a SQLite store when it has one.
//
// Writes to the store go through one writer goroutine in batches, one
// transaction per batch, each gathered for up to commitDelay. A record is
// acknowledged when the transaction holding it committed (tests can hook
// onPersisted to see it). The store runs in WAL mode with synchronous=NORMAL:
// an acknowledged record survives the agent being killed (SIGKILL, a
// crash), not a power loss of the host before the next WAL checkpoint.
type History struct {
	ring int
	db   *store.DB
	log  *slog.Logger
	ret  HistoryConfig

	mu   sync.Mutex
	kept map[string]*kept // by plugin
	sym  symbols
	// encodeCheck's scratch
	key, vary []byte

	queue       chan any
	onPersisted func(any) // tests set it before Start; called from the writer
	dropped     int64
	done        chan struct{}
	started     bool

	// records counts what became of the records sent to the store, by
	// outcome: stored, failed (the transaction failed), dropped (the
	// queue was full).
	records *prometheus.CounterVec
}

// History outcomes, the outcome label of
// vitals_ai_health_history_records_total.
const (
	historyStored  = "stored"
	historyFailed  = "failed"
	historyDropped = "dropped"
)

// HistoryMigrations is the schema of the health history, owner "ai_health".
// ts is the decision time of a check or transition; version 2 adds the
// check's start (started_ns, Unix nanoseconds) and duration, 0 in rows
// written before it.
var HistoryMigrations = []store.Migration{{Version: 1, SQL: `
CREATE TABLE ai_health_checks (
	ts INTEGER NOT NULL, plugin TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
	ok INTEGER NOT NULL, probe TEXT NOT NULL, class TEXT NOT NULL, latency_ns INTEGER NOT NULL,
	ttft_ns INTEGER NOT NULL, tps REAL NOT NULL, detail TEXT NOT NULL);
CREATE INDEX ai_health_checks_plugin_ts ON ai_health_checks (plugin, ts);
CREATE INDEX ai_health_checks_ts ON ai_health_checks (ts);
CREATE TABLE ai_health_transitions (
	ts INTEGER NOT NULL, plugin TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL,
	reason TEXT NOT NULL);
CREATE INDEX ai_health_transitions_plugin_ts ON ai_health_transitions (plugin, ts);
CREATE INDEX ai_health_transitions_ts ON ai_health_transitions (ts);`}, {Version: 2, SQL: `
ALTER TABLE ai_health_checks ADD COLUMN started_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ai_health_checks ADD COLUMN duration_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ai_health_transitions ADD COLUMN started_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ai_health_transitions ADD COLUMN duration_ns INTEGER NOT NULL DEFAULT 0;`}}

// historyOwner owns the migrations in a shared store file.
const historyOwner = "ai_health"

// queueSize bounds the records waiting for the store.
const queueSize = 8192

// commitDelay is how long the writer gathers records after the first one
// of a batch before it commits them together (or sooner, at 256). One
// transaction per record cost more than the checks themselves at a few
// thousand checks per second.
const commitDelay = 100 * time.Millisecond

// OpenHistory returns a History; db may be nil for the ring only. It
// migrates db.
func OpenHistory(ctx context.Context, db *store.DB, cfg HistoryConfig, log *slog.Logger) (*History, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &History{ring: cfg.Ring, db: db, log: log, ret: cfg, kept: map[string]*kept{},
		done: make(chan struct{}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_ai_health_history_records_total",
			Help: "Health checks and transitions sent to the history store, by outcome: stored, failed (the write failed), dropped (the write queue was full).",
		}, []string{"outcome"})}
	for _, o := range []string{historyStored, historyFailed, historyDropped} {
		h.records.WithLabelValues(o)
	}
	if db != nil {
		if err := db.Migrate(ctx, historyOwner, HistoryMigrations); err != nil {
			return nil, fmt.Errorf("health history: %w", err)
		}
		h.queue = make(chan any, queueSize)
	}
	return h, nil
}

// Start runs the writer and the pruner until ctx ends; then the writer
// commits what is queued and Wait returns.
func (h *History) Start(ctx context.Context) {
	if h.db == nil {
		close(h.done)
		return
	}
	h.started = true
	go h.write(ctx)
}

// Wait returns when the writer has finished.
func (h *History) Wait() { <-h.done }

// kept is what the ring keeps of one plugin: its last checks, encoded by
// History.sym (record.go), and its last transitions.
type kept struct {
	checks checkRing
	trans  ringBuf[Transition]
}

// of returns the rings of plugin, made on its first record. Call with
// h.mu held.
func (h *History) of(plugin string) *kept {
	k := h.kept[plugin]
	if k == nil {
		n := max(h.ring, 1)
		k = &kept{checks: checkRing{n: n}, trans: ringBuf[Transition]{n: n}}
		h.kept[plugin] = k
	}
	return k
}

// Record keeps a check and its transition, if any.
func (h *History) Record(c CheckRecord, t *Transition) {
	h.mu.Lock()
	h.key, h.vary = h.sym.encodeCheck(h.key[:0], h.vary[:0], c)
	h.of(c.Plugin).checks.add(h.key, h.vary, c.Seq, c.Time.UnixMicro())
	if t != nil {
		h.of(t.Plugin).trans.add(keptTransition(*t))
	}
	h.mu.Unlock()
	if h.queue == nil {
		return
	}
	h.enqueue(c)
	if t != nil {
		h.enqueue(*t)
	}
}

func (h *History) enqueue(v any) {
	select {
	case h.queue <- v:
	default:
		h.records.WithLabelValues(historyDropped).Inc()
		h.mu.Lock()
		h.dropped++
		n := h.dropped
		h.mu.Unlock()
		if n == 1 || n%1000 == 0 {
			h.log.Warn("health history queue full; records not stored", "dropped", n)
		}
	}
}

// Describe implements prometheus.Collector: the store's record counts.
// Register a History only when it has a store: without one it describes
// nothing, and a registry cannot unregister such a collector.
func (h *History) Describe(ch chan<- *prometheus.Desc) {
	if h.db != nil {
		h.records.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (h *History) Collect(ch chan<- prometheus.Metric) {
	if h.db != nil {
		h.records.Collect(ch)
	}
}

// Forget drops the in-memory history of a plugin (the store keeps it).
func (h *History) Forget(plugin string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.kept, plugin)
}

func (h *History) write(ctx context.Context) {
	defer close(h.done)
	prune := time.NewTicker(h.ret.PruneInterval.D())
	defer prune.Stop()
	h.prune()
	batch := make([]any, 0, 256)
	gather := time.NewTimer(commitDelay)
	gather.Stop()
	for {
		select {
		case v := <-h.queue:
			batch = append(batch[:0], v)
			gather.Reset(commitDelay)
		gather:
			for len(batch) < cap(batch) {
				select {
				case v := <-h.queue:
					batch = append(batch, v)
				case <-gather.C:
					break gather
				case <-ctx.Done():
					break gather // the shutdown path below drains the rest
				}
			}
			gather.Stop()
			h.commit(batch)
		case <-prune.C:
			h.prune()
		case <-ctx.Done():
			for {
				batch = batch[:0]
			rest:
				for len(batch) < cap(batch) {
					select {
					case v := <-h.queue:
						batch = append(batch, v)
					default:
						break rest
					}
				}
				if len(batch) == 0 {
					return
				}
				h.commit(batch)
			}
		}
	}
}

// commit writes a batch in one transaction and acknowledges it.
func (h *History) commit(batch []any) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.insert(ctx, batch); err != nil {
		h.records.WithLabelValues(historyFailed).Add(float64(len(batch)))
		h.log.Error("health history not stored", "path", h.db.Path(), "records", len(batch), "err", err)
		return
	}
	h.records.WithLabelValues(historyStored).Add(float64(len(batch)))
	if h.onPersisted != nil {
		for _, v := range batch {
			h.onPersisted(v)
		}
	}
}

func (h *History) insert(ctx context.Context, batch []any) error {
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	ci, err := tx.PrepareContext(ctx, `INSERT INTO ai_health_checks
		(ts, plugin, seq, state, ok, probe, class, latency_ns, ttft_ns, tps, detail, started_ns, duration_ns)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer ci.Close()
	ti, err := tx.PrepareContext(ctx, `INSERT INTO ai_health_transitions (ts, plugin, from_state, to_state, reason, started_ns, duration_ns)
		VALUES (?,?,?,?,?,?,?)`)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer ti.Close()
	for _, v := range batch {
		switch r := v.(type) {
		case CheckRecord:
			detail, _ := json.Marshal(r.Probes)
			ok := 0
			if r.OK {
				ok = 1
			}
			if _, err := ci.ExecContext(ctx, r.Time.UnixNano(), r.Plugin, r.Seq, string(r.State), ok, r.Probe,
				string(r.Class), int64(r.Latency), int64(r.TTFT), r.TPS, string(detail), unixNano(r.Started), int64(r.Duration)); err != nil {
				return fmt.Errorf("insert check: %w", err)
			}
		case Transition:
			if _, err := ti.ExecContext(ctx, r.Time.UnixNano(), r.Plugin, string(r.From), string(r.To), r.Reason,
				unixNano(r.Started), int64(r.Duration)); err != nil {
				return fmt.Errorf("insert transition: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (h *History) prune() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	for _, r := range []store.Retention{
		{Table: "ai_health_checks", TimeColumn: "ts", MaxAge: h.ret.MaxAge.D(), MaxRows: h.ret.MaxRows, SizeColumn: "detail", MaxBytes: h.ret.MaxBytes},
		{Table: "ai_health_transitions", TimeColumn: "ts", MaxAge: h.ret.MaxAge.D(), MaxRows: h.ret.MaxRows},
	} {
		if _, err := h.db.Prune(ctx, r, now); err != nil {
			h.log.Warn("health history not pruned", "table", r.Table, "err", err)
		}
	}
}

// Query returns the checks and transitions of plugin in [since, until),
// newest first, at most limit of each: from the store when there is one,
// else from the ring.
func (h *History) Query(ctx context.Context, plugin string, since, until time.Time, limit int) ([]CheckRecord, []Transition, error) {
	if h.db == nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		var cs []CheckRecord
		var ts []Transition
		if k := h.kept[plugin]; k != nil {
			k.checks.each(k.checks.count, func(key, vary []byte, seq, us int64) {
				if c := h.sym.decodeCheck(plugin, key, vary, seq, us); !c.Time.Before(since) && c.Time.Before(until) {
					cs = append(cs, c)
				}
			})
			for _, t := range k.trans.items() {
				if !t.Time.Before(since) && t.Time.Before(until) {
					ts = append(ts, t)
				}
			}
		}
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].Time.After(cs[j].Time) })
		sort.SliceStable(ts, func(i, j int) bool { return ts[i].Time.After(ts[j].Time) })
		return head(cs, limit), head(ts, limit), nil
	}
	rows, err := h.db.QueryContext(ctx, `SELECT ts, seq, state, ok, probe, class, latency_ns, ttft_ns, tps, detail, started_ns, duration_ns
		FROM ai_health_checks WHERE plugin = ? AND ts >= ? AND ts < ? ORDER BY ts DESC LIMIT ?`,
		plugin, since.UnixNano(), until.UnixNano(), limit)
	if err != nil {
		return nil, nil, fmt.Errorf("health history: %w", err)
	}
	var cs []CheckRecord
	for rows.Next() {
		var (
			ts, lat, ttft int64
			started, dur  int64
			c             CheckRecord
			ok            int
			state, class  string
			detail        string
		)
		if err := rows.Scan(&ts, &c.Seq, &state, &ok, &c.Probe, &class, &lat, &ttft, &c.TPS, &detail, &started, &dur); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("health history: %w", err)
		}
		c.Plugin, c.Time, c.State, c.OK, c.Class = plugin, time.Unix(0, ts), State(state), ok == 1, probes.ErrorClass(class)
		c.Latency, c.TTFT = time.Duration(lat), time.Duration(ttft)
		c.Started, c.Duration = fromUnixNano(started), time.Duration(dur)
		_ = json.Unmarshal([]byte(detail), &c.Probes)
		cs = append(cs, c)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, nil, fmt.Errorf("health history: %w", err)
	}
	trows, err := h.db.QueryContext(ctx, `SELECT ts, from_state, to_state, reason, started_ns, duration_ns FROM ai_health_transitions
		WHERE plugin = ? AND ts >= ? AND ts < ? ORDER BY ts DESC LIMIT ?`, plugin, since.UnixNano(), until.UnixNano(), limit)
	if err != nil {
		return nil, nil, fmt.Errorf("health history: %w", err)
	}
	defer trows.Close()
	var ts []Transition
	for trows.Next() {
		var t Transition
		var at, started, dur int64
		var from, to string
		if err := trows.Scan(&at, &from, &to, &t.Reason, &started, &dur); err != nil {
			return nil, nil, fmt.Errorf("health history: %w", err)
		}
		t.Plugin, t.Time, t.From, t.To = plugin, time.Unix(0, at), State(from), State(to)
		t.Started, t.Duration = fromUnixNano(started), time.Duration(dur)
		ts = append(ts, t)
	}
	return cs, ts, trows.Err()
}

// Uptime sums up plugin's history over each of UptimeWindows before now.
func (h *History) Uptime(ctx context.Context, plugin string, now time.Time) ([]Uptime, error) {
	out := make([]Uptime, 0, len(UptimeWindows))
	for _, w := range UptimeWindows {
		u := Uptime{Window: w.Name}
		since := now.Add(-w.D)
		if h.db == nil {
			cs, ts, _ := h.Query(ctx, plugin, since, now.Add(1), h.ring)
			var good int64
			var lat time.Duration
			for _, c := range cs {
				if c.OK {
					good++
					lat += c.Latency
				}
			}
			u.Checks, u.Transitions = int64(len(cs)), int64(len(ts))
			if u.Checks > 0 {
				u.UptimeRatio = float64(good) / float64(u.Checks)
			}
			if good > 0 {
				u.MeanLatencySeconds = (lat / time.Duration(good)).Seconds()
			}
		} else {
			var ratio, meanLat sql.NullFloat64
			err := h.db.QueryRowContext(ctx, `SELECT COUNT(*), AVG(ok), AVG(CASE WHEN ok = 1 THEN latency_ns END)
				FROM ai_health_checks WHERE plugin = ? AND ts >= ? AND ts <= ?`, plugin, since.UnixNano(), now.UnixNano()).
				Scan(&u.Checks, &ratio, &meanLat)
			if err == nil {
				err = h.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM ai_health_transitions WHERE plugin = ? AND ts >= ? AND ts <= ?`,
					plugin, since.UnixNano(), now.UnixNano()).Scan(&u.Transitions)
			}
			if err != nil {
				return nil, fmt.Errorf("health uptime: %w", err)
			}
			u.UptimeRatio, u.MeanLatencySeconds = ratio.Float64, meanLat.Float64/1e9
		}
		out = append(out, u)
	}
	return out, nil
}

// unixNano is t in Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the inverse of unixNano.
func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func head[T any](s []T, n int) []T {
	if n > 0 && len(s) > n {
		return s[:n]
	}
	return s
}
