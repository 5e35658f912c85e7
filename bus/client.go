package bus

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/internal/backoff"
	"github.com/vitals-dev/vitals/internal/zmtp"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
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

// recvSlack is what a message from the broker may have beyond
// MaxMessageBytes: the publisher's identity that the broker stamps on it.
const recvSlack = 4 << 10

// dial connects with backoff until it succeeds or ctx is done.
func (c *Client) dial(ctx context.Context, ep string, typ string, first *bool) *zmtp.Conn {
	sock := zmtp.Pub
	if typ == "sub" {
		sock = zmtp.Sub
	}
	for attempt := 0; ; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var conn *zmtp.Conn
		var err error
		if c.opts.Connect != nil {
			var raw net.Conn
			if raw, err = c.opts.Connect(dctx, typ); err == nil {
				conn, err = zmtp.Client(dctx, raw, sock, c.cred)
			}
		} else {
			conn, err = zmtp.Dial(dctx, ep, sock, c.cred)
		}
		cancel()
		if err == nil {
			// The broker adds the publisher's identity to each envelope.
			conn.Limit(c.opts.MaxMessageBytes+recvSlack, 16)
			heartbeat(conn, c.opts.Heartbeat)
			if !*first {
				c.opts.Metrics.reconnect(typ)
				c.opts.Logger.Info("bus reconnected", "socket", typ, "endpoint", ep)
			}
			*first = false
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		if attempt == 0 || attempt%50 == 0 {
			c.opts.Logger.Debug("bus dial failed", "socket", typ, "endpoint", ep, "err", err)
		}
		if !c.backoff(ctx, attempt) {
			return nil
		}
	}
}

// runPub sends queued messages, reconnecting as needed. On close it sends
// what is left while it can, then closes the connection.
func (c *Client) runPub(ctx context.Context) {
	defer c.wg.Done()
	defer close(c.stopped)
	var (
		conn    *zmtp.Conn
		first   = true
		pending *outMsg
		closing bool
	)
	defer func() {
		if conn != nil {
			_ = conn.Flush()
			_ = conn.Close()
		}
	}()
	for {
		if pending == nil {
			select {
			case m := <-c.pubq:
				pending = &m
			default:
				if conn != nil {
					if err := conn.Flush(); err != nil {
						_ = conn.Close()
						conn = nil
					}
				}
				if closing {
					return
				}
				select {
				case m := <-c.pubq:
					pending = &m
				case <-c.closing:
					closing = true
					continue
				case <-ctx.Done():
					return
				}
			}
		}
		if conn == nil {
			conn = c.dial(ctx, c.opts.PublishEndpoint, "pub", &first)
			if conn == nil {
				for range len(c.pubq) + 1 {
					c.opts.Metrics.drop(DropDisconnected)
				}
				return
			}
			c.wg.Add(1)
			go c.watch(conn)
		}
		if err := conn.Send(pending.topic, pending.env); err != nil {
			_ = conn.Close()
			conn = nil
			if pending.tries++; pending.tries > 1 {
				c.opts.Metrics.drop(DropDisconnected)
				pending = nil
			}
			continue
		}
		pending = nil
	}
}

// watch reads the publisher connection (the broker only sends its
// subscription) so that a broker going away is noticed at once.
func (c *Client) watch(conn *zmtp.Conn) {
	defer c.wg.Done()
	for {
		if _, err := conn.Recv(); err != nil {
			_ = conn.Close()
			return
		}
	}
}

func (c *Client) runSub(ctx context.Context) {
	defer c.wg.Done()
	first := true
	for {
		conn := c.dial(ctx, c.opts.SubscribeEndpoint, "sub", &first)
		if conn == nil {
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = conn.Close()
			return
		}
		c.subConn = conn
		type po struct {
			p string
			o uint64
		}
		var ps []po
		for p, r := range c.prefixes {
			ps = append(ps, po{p, r.order})
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].o < ps[j].o })
		var err error
		for _, p := range ps {
			if err = conn.Send(append([]byte{1}, p.p...)); err != nil {
				break
			}
		}
		if err == nil {
			err = conn.Flush()
		}
		c.mu.Unlock()
		if err == nil {
			c.readLoop(conn)
		}
		c.mu.Lock()
		c.subConn = nil
		c.mu.Unlock()
		_ = conn.Close()
		if ctx.Err() != nil {
			return
		}
	}
}

func (c *Client) readLoop(conn *zmtp.Conn) {
	var env busv1.Envelope
	for {
		frames, err := conn.Recv()
		if err != nil {
			if errors.Is(err, zmtp.ErrTooLarge) {
				c.opts.Metrics.Malform(MalformedOversize)
				c.tooLarge.Do(func() {
					c.opts.Logger.Warn("bus message from the broker too large; reconnecting", "endpoint", c.opts.SubscribeEndpoint, "err", err)
				})
			}
			return
		}
		if malformed := decodeFrames(frames, &env); malformed != "" {
			c.opts.Metrics.Malform(malformed)
			continue
		}
		c.dispatch(string(frames[0]), &env, len(frames[1]))
	}
}

// decodeFrames decodes a message from the broker, topic and envelope, into
// env. It returns what was malformed (a Malformed reason), or "".
func decodeFrames(frames [][]byte, env *busv1.Envelope) string {
	if len(frames) != 2 {
		return MalformedFrames
	}
	proto.Reset(env)
	if err := proto.Unmarshal(frames[1], env); err != nil {
		return MalformedEnvelope
	}
	return ""
}

// messageOf is the message an envelope received on topic carries.
func messageOf(topic string, env *busv1.Envelope) Message {
	msg := Message{
		Topic:         topic,
		ID:            env.GetId(),
		Source:        env.GetSource(),
		Peer:          env.GetPeer(),
		PeerAddress:   env.GetPeerAddress(),
		ContentType:   env.GetContentType(),
		CorrelationID: env.GetCorrelationId(),
		ReplyTo:       env.GetReplyTo(),
		Payload:       env.GetPayload(),
	}
	if env.Time != nil {
		msg.Time = env.Time.AsTime()
	}
	return msg
}

// envelopeOf is the envelope that publishes msg as source; the broker
// stamps the peer fields.
func envelopeOf(source string, msg Message) *busv1.Envelope {
	return &busv1.Envelope{
		Id:            msg.ID,
		Source:        source,
		Time:          timestamppb.New(msg.Time),
		ContentType:   msg.ContentType,
		CorrelationId: msg.CorrelationID,
		ReplyTo:       msg.ReplyTo,
		Payload:       msg.Payload,
	}
}

func (c *Client) dispatch(topic string, env *busv1.Envelope, size int) {
	msg := messageOf(topic, env)
	if env.Time != nil {
		if m := c.opts.Metrics; m != nil {
			m.Latency.WithLabelValues(Family(topic)).Observe(time.Since(msg.Time).Seconds())
		}
	}
	var parent context.Context
	if c.tracing {
		parent = c.prop.Extract(context.Background(), envCarrier{env})
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for s := range c.subs {
		if !strings.HasPrefix(topic, s.prefix) {
			continue
		}
		m := msg
		var span trace.Span
		if c.tracing {
			m.SpanContext, span = c.consumerSpan(parent, s, &m, size)
		}
		// Only this goroutine sends on s.ch, so room now is room at send
		// time; the span ends before the subscriber can see the message.
		if len(s.ch) == cap(s.ch) {
			c.opts.Metrics.drop(DropSubscriptionQueueFull)
			if span != nil {
				span.SetAttributes(attrDropped)
				span.End()
			}
			continue
		}
		if span != nil {
			span.End()
		}
		s.ch <- m
	}
}

// addLocked registers s and tells the broker about a new prefix.
func (c *Client) addLocked(s *subscription) {
	c.subs[s] = struct{}{}
	r := c.prefixes[s.prefix]
	if r == nil {
		c.nextRef++
		r = &prefixRef{order: c.nextRef}
		c.prefixes[s.prefix] = r
		if c.subConn != nil {
			if err := c.subConn.SendFlush(append([]byte{1}, s.prefix...)); err != nil {
				_ = c.subConn.Close() // the reader reconnects and resubscribes
			}
		}
	}
	r.n++
}

// removeLocked ends s and tells the broker when its prefix is unused.
func (c *Client) removeLocked(s *subscription) {
	if _, ok := c.subs[s]; !ok {
		return
	}
	delete(c.subs, s)
	close(s.ch)
	if s.stop != nil {
		s.stop()
	}
	if r := c.prefixes[s.prefix]; r != nil {
		if r.n--; r.n <= 0 {
			delete(c.prefixes, s.prefix)
			if c.subConn != nil {
				if err := c.subConn.SendFlush(append([]byte{0}, s.prefix...)); err != nil {
					_ = c.subConn.Close()
				}
			}
		}
	}
}

// View is a Client restricted to a source name and topic permissions.
type View struct {
	c        *Client
	source   string
	perms    Permissions
	onDenied func(op, topic string)

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
}

// Source returns the name the view publishes as.
func (v *View) Source() string { return v.source }

func (v *View) deny(op, topic string) error {
	if v.onDenied != nil {
		v.onDenied(op, topic)
	}
	return fmt.Errorf("%w: %s may not %s %q", ErrDenied, v.source, op, topic)
}

func (v *View) isClosed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.closed
}

// Publish implements Bus.
func (v *View) Publish(ctx context.Context, topic string, msg Message) error {
	if v.isClosed() {
		return ErrClosed
	}
	if err := ValidTopic(topic); err != nil {
		return err
	}
	if !v.perms.CanPublish(topic) {
		return v.deny("publish", topic)
	}
	return v.c.publish(ctx, v.source, topic, msg)
}

func (c *Client) publish(ctx context.Context, source, topic string, msg Message) error {
	c.mu.RLock()
	closed := c.closed
	c.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if msg.ID == "" {
		msg.ID = c.newID()
	}
	if msg.Time.IsZero() {
		msg.Time = time.Now()
	}
	env := envelopeOf(source, msg)
	var span trace.Span
	if c.tracing {
		ctx, span = c.producerSpan(ctx, topic, &msg)
		defer span.End()
		c.prop.Inject(ctx, envCarrier{env})
	}
	b, err := proto.Marshal(env)
	if err != nil {
		return fmt.Errorf("bus: encode envelope for %s: %w", topic, err)
	}
	if len(b)+len(topic) > c.opts.MaxMessageBytes {
		err := fmt.Errorf("%w: %d bytes on %s, limit %d", ErrTooLarge, len(b)+len(topic), topic, c.opts.MaxMessageBytes)
		recordErr(span, err)
		return err
	}
	select {
	case c.pubq <- outMsg{topic: []byte(topic), env: b}:
		return nil
	default:
		c.opts.Metrics.drop(DropPublishQueueFull)
		recordErr(span, ErrQueueFull)
		return fmt.Errorf("%w (%s, high-water mark %d)", ErrQueueFull, topic, c.opts.QueueSize)
	}
}

// Subscribe implements Bus.
func (v *View) Subscribe(ctx context.Context, prefix string) (<-chan Message, error) {
	if !v.perms.CanSubscribe(v.source, prefix) {
		return nil, v.deny("subscribe", prefix)
	}
	return v.subscribe(ctx, prefix)
}

func (v *View) subscribe(ctx context.Context, prefix string) (<-chan Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &subscription{prefix: prefix, ch: make(chan Message, v.c.opts.SubscriptionSize), view: v}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, ErrClosed
	}
	c := v.c
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.addLocked(s)
	c.mu.Unlock()
	v.subs[s] = struct{}{}
	s.stop = context.AfterFunc(ctx, func() { v.unsubscribe(s) })
	return s.ch, nil
}

func (v *View) unsubscribe(s *subscription) {
	v.mu.Lock()
	delete(v.subs, s)
	v.mu.Unlock()
	v.c.mu.Lock()
	v.c.removeLocked(s)
	v.c.mu.Unlock()
}

// Close implements Bus: it ends the view's subscriptions; the connection
// stays with its Client.
func (v *View) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	subs := v.subs
	v.subs = nil
	v.mu.Unlock()
	v.c.mu.Lock()
	for s := range subs {
		v.c.removeLocked(s)
	}
	v.c.mu.Unlock()
	return nil
}

// Sync returns once every subscription the client made before it is active
// at the broker: it subscribes to a private reply topic and publishes
// probes on it until one comes back.
func (v *View) Sync(ctx context.Context) error {
	_, err := v.syncTopic(ctx, "sync")
	return err
}

// syncTopic subscribes to a private reply topic, waits until it is live,
// and returns the channel; the subscription ends with ctx.
func (v *View) syncTopic(ctx context.Context, kind string) (<-chan Message, error) {
	topic := ReplyPrefix + v.source + "." + kind + "." + v.c.newID()
	ch, err := v.subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	probe := "probe-" + v.c.newID()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := v.c.publish(ctx, v.source, topic, Message{ID: probe}); err != nil && !errors.Is(err, ErrQueueFull) {
			return nil, err
		}
		for {
			select {
			case m, ok := <-ch:
				if !ok {
					return nil, ErrClosed
				}
				if m.ID == probe {
					return ch, nil
				}
				continue
			case <-tick.C:
			case <-ctx.Done():
				return nil, fmt.Errorf("bus: sync: %w", ctx.Err())
			}
			break
		}
	}
}

// Request implements Bus. The reply topic is private to the view
// (reply.<source>.req.<id>); it is live before the request is sent.
func (v *View) Request(ctx context.Context, topic string, msg Message) (Message, error) {
	if v.isClosed() {
		return Message{}, ErrClosed
	}
	if err := ValidTopic(topic); err != nil {
		return Message{}, err
	}
	if !v.perms.CanPublish(topic) {
		return Message{}, v.deny("publish", topic)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := v.syncTopic(rctx, "req")
	if err != nil {
		return Message{}, fmt.Errorf("bus: request on %s: %w", topic, err)
	}
	if msg.ID == "" {
		msg.ID = v.c.newID()
	}
	msg.ReplyTo = replyTopicOf(ch, v)
	if msg.ReplyTo == "" {
		return Message{}, fmt.Errorf("bus: request on %s: no reply topic", topic)
	}
	if err := v.c.publish(ctx, v.source, topic, msg); err != nil {
		return Message{}, err
	}
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return Message{}, ErrClosed
			}
			if m.CorrelationID == msg.ID {
				return m, nil
			}
		case <-ctx.Done():
			return Message{}, fmt.Errorf("bus: request %s on %s: %w", msg.ID, topic, ctx.Err())
		}
	}
}

// replyTopicOf finds the prefix of the view's subscription whose channel
// is ch.
func replyTopicOf(ch <-chan Message, v *View) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	for s := range v.subs {
		if (<-chan Message)(s.ch) == ch {
			return s.prefix
		}
	}
	return ""
}

var (
	_ Bus = (*Client)(nil)
	_ Bus = (*View)(nil)
)
