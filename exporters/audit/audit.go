package audit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vitals-dev/vitals/exporters/store"
)

// ServiceName is the agent service under which the security plugin
// provides its *Log; other plugins record with it when it is there.
const ServiceName = "audit"

// Actions that more than one package records or reads. Whoever decides
// records: the bus broker its denials and failed logins, the encryption
// plugin its key rotations.
const (
	// ActionBusDenied: a bus publish or subscribe refused by permissions.
	ActionBusDenied = "bus.denied"
	// ActionBusAuth: a failed PLAIN login on the bus.
	ActionBusAuth = "bus.auth"
	// ActionKeysReload: the encryption keys were reloaded.
	ActionKeysReload = "encryption.reload"
)

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// Record is one audit record.
type Record struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`            // token name, bus user or plugin, "anonymous", "system"
	Action  string    `json:"action"`           // plugin.enable, config.reload, http.denied, bus.denied, plugin.register, ...
	Target  string    `json:"target,omitempty"` // plugin name, path or topic
	Outcome string    `json:"outcome"`          // success, failure, denied
	Remote  string    `json:"remote,omitempty"` // client address
	Detail  string    `json:"detail,omitempty"`
}

// Recorder is what plugins record with; *Log implements it.
type Recorder interface {
	Record(r Record)
}

var migrations = []store.Migration{{Version: 1, SQL: `
CREATE TABLE audit (
	id      INTEGER PRIMARY KEY,
	ts      INTEGER NOT NULL,
	actor   TEXT NOT NULL,
	action  TEXT NOT NULL,
	target  TEXT NOT NULL,
	outcome TEXT NOT NULL,
	remote  TEXT NOT NULL,
	detail  TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit (ts);
CREATE INDEX audit_action_ts ON audit (action, ts);`}}

// Options configure a Log.
type Options struct {
	// Publish, if set, receives every record after it is stored; it runs on
	// the writer goroutine and should only queue.
	Publish func(Record)
	// QueueSize bounds records waiting to be written (default 4096).
	QueueSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Log is an audit log over a store. Record is safe for concurrent use.
type Log struct {
	db      *store.DB
	o       Options
	q       chan Record
	done    chan struct{}
	closed  atomic.Bool
	started atomic.Bool
	mu      sync.RWMutex // held for reading by Record while it queues
	dropped atomic.Int64
	written atomic.Int64
}

// New migrates the audit table in db. Records queue until Start runs the
// writer; Close stops it. db stays open (its owner closes it).
func New(ctx context.Context, db *store.DB, o Options) (*Log, error) {
	if err := db.Migrate(ctx, "audit", migrations); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Log{db: db, o: o, q: make(chan Record, o.QueueSize), done: make(chan struct{})}, nil
}

// Start runs the writer. Calling it again, or after Close, does nothing.
func (l *Log) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() || l.started.Swap(true) {
		return
	}
	go l.run()
}

// Record queues r; a full queue drops it (counted in Dropped). The time
// defaults to now and the outcome to success.
func (l *Log) Record(r Record) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	if r.Time.IsZero() {
		r.Time = l.o.Now()
	}
	if r.Outcome == "" {
		r.Outcome = OutcomeSuccess
	}
	if r.Actor == "" {
		r.Actor = "system"
	}
	select {
	case l.q <- r:
	default:
		l.dropped.Add(1)
	}
}

// Dropped returns how many records were dropped on a full queue.
func (l *Log) Dropped() int64 { return l.dropped.Load() }

// Written returns how many records were stored.
func (l *Log) Written() int64 { return l.written.Load() }

func (l *Log) run() {
	defer close(l.done)
	for r := range l.q {
		batch := []Record{r}
	more:
		for len(batch) < 256 {
			select {
			case r, ok := <-l.q:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		l.write(batch)
	}
}

func (l *Log) write(batch []Record) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		l.dropped.Add(int64(len(batch)))
		return
	}
	for i := range batch {
		r := &batch[i]
		res, err := tx.ExecContext(ctx, `INSERT INTO audit (ts, actor, action, target, outcome, remote, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			r.Time.UnixNano(), r.Actor, r.Action, r.Target, r.Outcome, r.Remote, r.Detail)
		if err != nil {
			_ = tx.Rollback()
			l.dropped.Add(int64(len(batch)))
			return
		}
		r.ID, _ = res.LastInsertId()
	}
	if err := tx.Commit(); err != nil {
		l.dropped.Add(int64(len(batch)))
		return
	}
	l.written.Add(int64(len(batch)))
	if l.o.Publish != nil {
		for _, r := range batch {
			l.o.Publish(r)
		}
	}
}

// Close writes what is queued and stops the writer, bounded by ctx; without
// Start, queued records are dropped. Later records are dropped. Safe twice.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if !l.closed.Swap(true) {
		close(l.q)
	}
	started := l.started.Load()
	l.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit close: %w", ctx.Err())
	}
}

// Filter selects records; zero fields match everything.
type Filter struct {
	Actor   string
	Action  string // exact, or a prefix ending in "." ("plugin.")
	Outcome string
	Since   time.Time
	Until   time.Time
	Limit   int
}

// Query returns matching records, newest first.
func (l *Log) Query(ctx context.Context, f Filter) ([]Record, error) {
	where, args := []string{"1=1"}, []any{}
	if f.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, f.Actor)
	}
	if f.Action != "" {
		if strings.HasSuffix(f.Action, ".") {
			where, args = append(where, "substr(action, 1, ?) = ?"), append(args, len(f.Action), f.Action)
		} else {
			where, args = append(where, "action = ?"), append(args, f.Action)
		}
	}
	if f.Outcome != "" {
		where, args = append(where, "outcome = ?"), append(args, f.Outcome)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "ts >= ?"), append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "ts < ?"), append(args, f.Until.UnixNano())
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	args = append(args, f.Limit)
	rows, err := l.db.QueryContext(ctx, `SELECT id, ts, actor, action, target, outcome, remote, detail FROM audit WHERE `+strings.Join(where, " AND ")+` ORDER BY ts DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Record{}
	for rows.Next() {
		var r Record
		var ts int64
		if err := rows.Scan(&r.ID, &ts, &r.Actor, &r.Action, &r.Target, &r.Outcome, &r.Remote, &r.Detail); err != nil {
			return nil, err
		}
		r.Time = time.Unix(0, ts).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// Retention returns the store retention rule for the audit table.
func Retention(maxAge time.Duration, maxRows int64) store.Retention {
	return store.Retention{Table: "audit", TimeColumn: "ts", MaxAge: maxAge, MaxRows: maxRows}
}
