package bus

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"

	"github.com/vitals-dev/vitals/internal/backoff"
	"github.com/vitals-dev/vitals/internal/zmtp"
)

// Defaults of Options.
const (
	DefaultPublishEndpoint   = "tcp://127.0.0.1:5555"
	DefaultSubscribeEndpoint = "tcp://127.0.0.1:5556"
	DefaultQueueSize         = 10000
	DefaultSubscriptionSize  = 1024
	DefaultMaxMessageBytes   = 1 << 20
)

// Options configure a Client.
type Options struct {
	// PublishEndpoint is the broker's socket that publishers connect to.
	PublishEndpoint string
	// SubscribeEndpoint is the broker's socket that subscribers connect to.
	SubscribeEndpoint string
	// Name is the source of the messages this client publishes.
	Name string
	// Username and Password are ZeroMQ PLAIN credentials; empty means NULL.
	Username, Password string
	// QueueSize is the publish queue's high-water mark: past it, Publish
	// drops and returns ErrQueueFull.
	QueueSize int
	// SubscriptionSize is each subscription channel's high-water mark:
	// past it, deliveries to that subscription are dropped.
	SubscriptionSize int
	// MaxMessageBytes bounds topic plus envelope.
	MaxMessageBytes int
	// TracerProvider makes a PRODUCER span per publish and a CONSUMER span
	// per delivery; nil turns tracing off.
	TracerProvider trace.TracerProvider
	// Metrics, if set, counts drops, reconnects and delivery latency.
	Metrics *Metrics
	// Logger; nil discards.
	Logger *slog.Logger
	// ReconnectMin and ReconnectMax bound the reconnection backoff.
	ReconnectMin, ReconnectMax time.Duration
	// DrainTimeout bounds how long Close tries to send what is queued.
	DrainTimeout time.Duration
	// Connect, if set, makes each connection instead of dialing the
	// endpoints; socket is "pub" or "sub". The broker uses it to connect
	// the agent's own plugins over an in-process socket pair.
	Connect func(ctx context.Context, socket string) (net.Conn, error)
	// Heartbeat is how often each connection sends a ZMTP PING, so that
	// the broker's idle_timeout never closes a quiet client; default 30s,
	// negative turns heartbeats off.
	Heartbeat time.Duration
}

func (o *Options) defaults() {
	if o.PublishEndpoint == "" {
		o.PublishEndpoint = DefaultPublishEndpoint
	}
	if o.SubscribeEndpoint == "" {
		o.SubscribeEndpoint = DefaultSubscribeEndpoint
	}
	if o.Name == "" {
		o.Name = "anonymous"
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.SubscriptionSize <= 0 {
		o.SubscriptionSize = DefaultSubscriptionSize
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 20 * time.Millisecond
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = 2 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 30 * time.Second
	}
}

// Client is a connection to the broker: one ZeroMQ PUB-side connection for
// publishing and one SUB-side connection for subscriptions, both redialled
// with backoff when the broker goes away. Subscriptions are re-sent on
// reconnect. A Client is itself a Bus that may publish and subscribe to
// every topic as Options.Name; Scope makes restricted views on the same
// connections.
type Client struct {
	opts    Options
	cred    zmtp.Credentials
	tracer  trace.Tracer
	tracing bool
	prop    propagation.TraceContext
	idBase  string
	seq     atomic.Uint64

	pubq    chan outMsg
	closing chan struct{}
	stopped chan struct{} // closed when the publisher loop has drained
	cancel  context.CancelFunc
	once    sync.Once
	wg      sync.WaitGroup

	mu       sync.RWMutex
	closed   bool
	subs     map[*subscription]struct{}
	prefixes map[string]*prefixRef
	subConn  *zmtp.Conn
	nextRef  uint64

	def *View

	tooLarge rate.Sometimes // spaces the warnings about oversized messages
}

type prefixRef struct {
	n     int
	order uint64
}

type outMsg struct {
	topic []byte
	env   []byte
	tries int
}

type subscription struct {
	prefix string
	ch     chan Message
	view   *View
	stop   func() bool
}

// Dial returns a Client that connects to the broker in the background: it
// does not wait for the broker, and what is published before the
// connection is up waits in the bounded queue.
func Dial(opts Options) *Client {
	opts.defaults()
	c := &Client{
		opts:     opts,
		cred:     zmtp.Credentials{Username: opts.Username, Password: opts.Password},
		idBase:   newIDBase(),
		pubq:     make(chan outMsg, opts.QueueSize),
		closing:  make(chan struct{}),
		tooLarge: rate.Sometimes{Interval: 10 * time.Second},
		stopped:  make(chan struct{}),
		subs:     map[*subscription]struct{}{},
		prefixes: map[string]*prefixRef{},
	}
	if opts.TracerProvider != nil {
		c.tracer = opts.TracerProvider.Tracer("github.com/vitals-dev/vitals/bus")
		c.tracing = true
	} else {
		c.tracer = noop.NewTracerProvider().Tracer("")
	}
	c.def = c.Scope(opts.Name, AllowAll, nil)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(2)
	go c.runPub(ctx)
	go c.runSub(ctx)
	return c
}

func newIDBase() string {
	var b [6]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Client) newID() string {
	return c.idBase + "-" + strconv.FormatUint(c.seq.Add(1), 10)
}

// Publish publishes as Options.Name.
func (c *Client) Publish(ctx context.Context, topic string, msg Message) error {
	return c.def.Publish(ctx, topic, msg)
}

// Subscribe subscribes with no restriction.
func (c *Client) Subscribe(ctx context.Context, prefix string) (<-chan Message, error) {
	return c.def.Subscribe(ctx, prefix)
}

// Request sends a request as Options.Name.
func (c *Client) Request(ctx context.Context, topic string, msg Message) (Message, error) {
	return c.def.Request(ctx, topic, msg)
}

// Sync returns once every subscription made before it is active at the
// broker, or when ctx is done.
func (c *Client) Sync(ctx context.Context) error { return c.def.Sync(ctx) }

// Close sends what is queued (bounded by Options.DrainTimeout), closes the
// connections and every subscription, and waits for its goroutines.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.closing)
		t := time.NewTimer(c.opts.DrainTimeout)
		select {
		case <-c.stopped:
		case <-t.C:
		}
		t.Stop()
		c.cancel()
		c.mu.Lock()
		if c.subConn != nil {
			_ = c.subConn.Close()
		}
		for s := range c.subs {
			c.removeLocked(s)
		}
		c.mu.Unlock()
		c.wg.Wait()
	})
	return nil
}

// Scope returns a view of the client that publishes as source and may use
// only the topics perms allow. onDenied, if set, is called for each refused
// operation ("publish" or "subscribe"). Closing a view ends its
// subscriptions only.
func (c *Client) Scope(source string, perms Permissions, onDenied func(op, topic string)) *View {
	return &View{c: c, source: source, perms: perms, onDenied: onDenied, subs: map[*subscription]struct{}{}}
}

func (c *Client) backoff(ctx context.Context, attempt int) bool {
	t := time.NewTimer(backoff.Jitter(backoff.Exponential(attempt, c.opts.ReconnectMin, c.opts.ReconnectMax)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// heartbeat pings conn every interval until a ping fails (the connection
// is closed).
func heartbeat(conn *zmtp.Conn, interval time.Duration) {
	if interval <= 0 {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(time.Hour, func() {
		if conn.Ping() == nil {
			t.Reset(interval)
		}
	})
	t.Reset(interval)
}
