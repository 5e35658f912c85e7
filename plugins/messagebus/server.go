package messagebus

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"golang.org/x/time/rate"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/internal/zmtp"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// server is the broker proper: two listeners and the forwarding between
// them. It knows nothing of the plugin host.
type server struct {
	cfg     Config
	log     *slog.Logger
	m       *bus.Metrics
	users   map[string]userEntry // PLAIN users; nil: NULL security
	counter map[string]familyCounters

	front, back net.Listener

	mu     sync.Mutex
	closed bool
	done   chan struct{}     // closed by close
	conns  map[net.Conn]bool // open connections; true: the agent's own
	// external counts the connections in conns that are not the
	// agent's, each holding one of the max_connections slots.
	external int
	slots    chan struct{}
	budget   *zmtp.Budget  // read_bytes, shared by the external connections
	nconn    atomic.Uint64 // numbers unauthenticated connections for their Peer
	subs     atomic.Pointer[[]*subscriber]
	queued   atomic.Int64 // cost of what all subscriber queues hold
	wg       sync.WaitGroup

	// warn logs a bound's first breach and then at most one line per
	// warnInterval, by reason: a flood of breaches must not flood the
	// log. The metrics count every one.
	warn map[string]*rate.Sometimes

	// filters are the running bus filters (validation, rate limits), applied
	// to every message before fan-out.
	filters atomic.Pointer[[]bus.Filter]
	// recorder is the running audit recorder (audit.ServiceName), nil
	// while none runs.
	recorder atomic.Pointer[audit.Recorder]
}

// record gives r to the audit recorder, when one runs. The broker records
// what it refuses itself: nobody turns its log lines into audit records.
func (s *server) record(r audit.Record) {
	if rec := s.recorder.Load(); rec != nil {
		(*rec).Record(r)
	}
}

type userEntry struct {
	password string
	perms    *bus.Permissions
}

type familyCounters struct {
	inMsgs, inBytes, outMsgs, outBytes prometheus.Counter
}

var families = []string{"logs", "plugin", "health", "alerts", "lifecycle", "reply", "other"}

// newServer prepares a server; users nil means NULL security.
func newServer(cfg Config, log *slog.Logger, m *bus.Metrics, users map[string]userEntry) *server {
	s := &server{cfg: cfg, log: log, m: m, users: users, conns: map[net.Conn]bool{}, done: make(chan struct{}), slots: make(chan struct{}, cfg.MaxConnections),
		budget: zmtp.NewBudget(int64(cfg.ReadBytes), cfg.ReadWait.D())}
	if m != nil {
		s.counter = map[string]familyCounters{}
		for _, f := range families {
			s.counter[f] = familyCounters{
				inMsgs:   m.Messages.WithLabelValues("in", f),
				inBytes:  m.Bytes.WithLabelValues("in", f),
				outMsgs:  m.Messages.WithLabelValues("out", f),
				outBytes: m.Bytes.WithLabelValues("out", f),
			}
		}
		m.Conns.WithLabelValues("pub")
		m.Conns.WithLabelValues("sub")
	}
	s.warn = map[string]*rate.Sometimes{}
	for _, r := range []string{bus.DisconnectOversized, bus.DisconnectIdle, bus.DisconnectStalled, bus.DisconnectReadBytes, bus.DisconnectMessageTimeout, bus.ThrottleConnectionLimit, bus.RefusedSubscriptionLimit} {
		s.warn[r] = &rate.Sometimes{Interval: warnInterval}
	}
	empty := []*subscriber{}
	s.subs.Store(&empty)
	return s
}

// start binds both addresses and starts accepting. An address in use is an
// error that names it.
func (s *server) start() error {
	front, err := zmtp.Listen(s.cfg.PublishAddress)
	if err != nil {
		return fmt.Errorf("message bus publish_address: %w", err)
	}
	back, err := zmtp.Listen(s.cfg.SubscribeAddress)
	if err != nil {
		_ = front.Close()
		return fmt.Errorf("message bus subscribe_address: %w", err)
	}
	s.front, s.back = front, back
	s.wg.Add(2)
	go s.accept(front, true)
	go s.accept(back, false)
	return nil
}

// close stops accepting, closes every connection and waits for the
// goroutines. Safe to call twice.
func (s *server) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	if s.front != nil {
		_ = s.front.Close()
		_ = s.back.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// track registers an accepted external connection, which holds a slot;
// false when the server is closed.
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = false
	s.external++
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	if agent, ok := s.conns[c]; ok && !agent {
		s.external--
		<-s.slots
	}
	delete(s.conns, c)
	s.mu.Unlock()
	_ = c.Close()
}

// warnInterval spaces the log lines about one kind of breached bound.
const warnInterval = 10 * time.Second

// Accept backoff after an error, as net/http's server does: 5 ms doubling
// to 1 s, reset by the next accepted connection.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

func (s *server) accept(l net.Listener, publishers bool) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		raw, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Such as EMFILE: the pending connection stays queued, so
			// retrying at once would spin. Wait, and give up on close.
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			s.m.AcceptError()
			s.log.Warn("bus accept failed", "address", l.Addr().String(), "err", err, "retry_in", delay.String())
			select {
			case <-time.After(delay):
			case <-s.done:
				return
			}
			continue
		}
		delay = 0
		// A slot for it: with max_connections open, wait until one
		// closes. Meanwhile this loop accepts nothing: new connections
		// wait in the kernel's backlog, which costs the agent nothing,
		// and are served in turn.
		select {
		case s.slots <- struct{}{}:
		default:
			s.m.Throttle(bus.ThrottleConnectionLimit)
			s.warn[bus.ThrottleConnectionLimit].Do(func() {
				s.log.Warn("bus connections wait: max_connections reached", "address", l.Addr().String(), "max_connections", s.cfg.MaxConnections)
			})
			select {
			case s.slots <- struct{}{}:
			case <-s.done:
				_ = raw.Close()
				return
			}
		}
		if !s.track(raw) {
			<-s.slots
			_ = raw.Close()
			return
		}
		s.wg.Add(1)
		go s.serve(raw, publishers, false)
	}
}

// closeIdle closes c once nothing moved either way for a whole timeout:
// each time the timer fires it compares c's activity with the last
// reading, so an idle connection goes after one to two timeouts and a busy
// one costs a counter per message. The returned func stops the watch.
func (s *server) closeIdle(c *zmtp.Conn, timeout time.Duration) func() {
	var t *time.Timer
	last := c.Activity()
	t = time.AfterFunc(time.Hour, func() {
		if n := c.Activity(); n != last {
			last = n
			t.Reset(timeout)
			return
		}
		s.m.Disconnect(bus.DisconnectIdle)
		s.warn[bus.DisconnectIdle].Do(func() {
			s.log.Info("bus connection closed: idle", "remote", c.RemoteAddr().String(), "user", c.User, "idle_timeout", timeout.String())
		})
		_ = c.Close()
	})
	t.Reset(timeout)
	return func() { t.Stop() }
}

// connectAgent returns the client end of a new in-process connection to
// the publish (socket "pub") or subscribe ("sub") side, for the agent's
// own plugins. It is a socket pair no other process can open, so what
// arrives on it is the agent's (bus.PeerAgent).
func (s *server) connectAgent(socket string) (net.Conn, error) {
	mine, theirs, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("message bus: in-process connection: %w", err)
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.conns[theirs] = true // not counted against max_connections
	}
	s.mu.Unlock()
	if closed {
		_ = mine.Close()
		_ = theirs.Close()
		return nil, fmt.Errorf("message bus: %w", bus.ErrClosed)
	}
	s.wg.Add(1)
	go s.serve(theirs, socket == "pub", true)
	return mine, nil
}

func (s *server) authenticate(user, pass, remote string) bool {
	u, ok := s.users[user]
	ok = ok && subtle.ConstantTimeCompare([]byte(u.password), []byte(pass)) == 1
	if !ok {
		if s.m != nil {
			s.m.AuthFail.Inc()
		}
		s.log.Warn("bus authentication failed", "user", user, "remote", remote)
		s.record(audit.Record{Actor: user, Remote: remote, Action: audit.ActionBusAuth, Target: "(PLAIN login)",
			Outcome: audit.OutcomeDenied, Detail: "bus authentication failed"})
	}
	return ok
}

// serve runs one connection. agent marks the in-process connections of
// the agent's own plugins; every other connection is external.
func (s *server) serve(raw net.Conn, publishers, agent bool) {
	defer s.wg.Done()
	defer s.untrack(raw)
	typ, sock := zmtp.Pub, "sub"
	if publishers {
		typ, sock = zmtp.Sub, "pub"
	}
	o := zmtp.ServerOptions{MaxMessage: s.cfg.MaxMessageBytes, MaxFrames: maxFrames, HandshakeTimeout: s.cfg.HandshakeTimeout.D()}
	if !publishers {
		o.MaxMessage = maxSubscriberMessage
	}
	if !agent {
		o.Budget, o.MessageTimeout = s.budget, s.cfg.MessageTimeout.D()
	}
	if s.users != nil && !agent {
		remote := raw.RemoteAddr().String()
		o.Authenticate = func(user, pass string) bool { return s.authenticate(user, pass, remote) }
	}
	c, err := zmtp.Server(raw, typ, o)
	if err != nil {
		s.log.Debug("bus handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	defer c.Release()
	if s.m != nil {
		g := s.m.Conns.WithLabelValues(sock)
		g.Inc()
		defer g.Dec()
	}
	if !agent {
		defer s.closeIdle(c, s.cfg.IdleTimeout.D())()
	}
	p := peer{id: bus.PeerAgent, agent: true}
	switch {
	case agent:
	case s.users != nil:
		p = peer{id: bus.PeerUser(c.User), addr: raw.RemoteAddr().String(), user: c.User}
		if u, ok := s.users[c.User]; ok {
			p.perms = u.perms
		}
	default:
		p = peer{addr: raw.RemoteAddr().String()}
		p.id = bus.PeerConn(s.nconn.Add(1), p.addr)
	}
	if publishers {
		s.servePublisher(c, p)
	} else {
		s.serveSubscriber(c, p)
	}
}

// maxFrames bounds the frames of one message. Bus messages have two
// (topic, envelope) and subscriptions one; a message with a few more is
// counted malformed and dropped, past maxFrames the peer is disconnected.
const maxFrames = 16

// maxSubscriberMessage bounds a message on the subscriber side, where
// peers send only subscriptions (a prefix is at most bus.MaxTopicLen) and
// their handshake's metadata.
const maxSubscriberMessage = 4 << 10

// recvFailed accounts for the error that ended a connection's reads: a
// peer past the size limits is counted and logged; the others are the
// peer going away.
func (s *server) recvFailed(c *zmtp.Conn, err error) {
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		s.m.Disconnect(bus.DisconnectMessageTimeout)
		s.warn[bus.DisconnectMessageTimeout].Do(func() {
			s.log.Warn("bus peer disconnected: a message took longer than message_timeout", "remote", c.RemoteAddr().String(), "user", c.User, "message_timeout", s.cfg.MessageTimeout.String())
		})
		return
	}
	if errors.Is(err, zmtp.ErrBusy) {
		s.m.Disconnect(bus.DisconnectReadBytes)
		s.warn[bus.DisconnectReadBytes].Do(func() {
			s.log.Warn("bus peer disconnected: read_bytes full for read_wait", "remote", c.RemoteAddr().String(), "user", c.User, "err", err)
		})
		return
	}
	if !errors.Is(err, zmtp.ErrTooLarge) {
		return
	}
	s.m.Malform(bus.MalformedOversize)
	s.m.Disconnect(bus.DisconnectOversized)
	s.warn[bus.DisconnectOversized].Do(func() {
		s.log.Warn("bus peer disconnected: message too large", "remote", c.RemoteAddr().String(), "user", c.User, "err", err)
	})
}

// peer is who is on the other end of a connection.
type peer struct {
	id    string // the bus.Message Peer stamped on what it publishes
	addr  string // its network address; "" for the agent
	user  string // its PLAIN user name; "" under NULL and for the agent
	agent bool   // the agent's own plugins
	perms *bus.Permissions
}

// label names the peer in metrics: the PLAIN user (config bounds them),
// or "anonymous" for every unauthenticated connection.
func (p peer) label() string {
	if p.user != "" {
		return p.user
	}
	return "anonymous"
}

func (s *server) deny(p peer, op, topic, why string) {
	s.m.Deny(p.label(), op)
	s.log.Warn("bus permission denied", "user", p.label(), "peer", p.id, "remote", p.addr, "operation", op, "topic", topic, "reason", why)
	actor := p.id
	if actor == "" {
		actor = p.label()
	}
	s.record(audit.Record{Actor: actor, Remote: p.addr, Action: audit.ActionBusDenied, Target: op + " " + topic,
		Outcome: audit.OutcomeDenied, Detail: "bus permission denied: " + why})
}

// stampPeer appends the peer's identity to an encoded envelope. Protobuf takes
// the last value of a repeated scalar field, so what a publisher put in
// peer or peer_address is overwritten for every reader; the copy leaves
// the received frame alone.
func stampPeer(env []byte, p peer) []byte {
	out := make([]byte, 0, len(env)+len(p.id)+len(p.addr)+8)
	out = append(out, env...)
	out = protowire.AppendTag(out, peerField, protowire.BytesType)
	out = protowire.AppendString(out, p.id)
	out = protowire.AppendTag(out, peerAddressField, protowire.BytesType)
	return protowire.AppendString(out, p.addr)
}

// The envelope's field numbers that the broker owns.
var (
	peerField        = (&busv1.Envelope{}).ProtoReflect().Descriptor().Fields().ByName("peer").Number()
	peerAddressField = (&busv1.Envelope{}).ProtoReflect().Descriptor().Fields().ByName("peer_address").Number()
)

// publishLimits returns the rates at which an external publisher's
// messages are read (nil for the agent's own connections): what is past
// them waits in the peer's socket, so a flood costs the broker time
// instead of CPU. A burst of a second's worth, and of at least one largest
// message, passes at once.
func (s *server) publishLimits(p peer) (msgs, bytes *rate.Limiter) {
	if p.agent {
		return nil, nil
	}
	return rate.NewLimiter(rate.Limit(s.cfg.PublishRate), s.cfg.PublishRate),
		rate.NewLimiter(rate.Limit(s.cfg.PublishBytesRate), max(s.cfg.PublishBytesRate, s.cfg.MaxMessageBytes))
}

// throttle waits until lim allows n more at now (or the broker closes),
// and counts the wait.
func (s *server) throttle(lim *rate.Limiter, now time.Time, n int, reason string) {
	r := lim.ReserveN(now, n)
	d := r.DelayFrom(now)
	if !r.OK() || d <= 0 {
		return
	}
	s.m.Throttle(reason)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

func frameBytes(frames [][]byte) int {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return n
}

// servePublisher reads messages from one publisher and forwards them.
func (s *server) servePublisher(c *zmtp.Conn, p peer) {
	// A PUB peer sends only what its peers subscribed to: everything.
	if err := c.SendFlush([]byte{1}); err != nil {
		return
	}
	var env busv1.Envelope
	msgs, bytes := s.publishLimits(p)
	for {
		frames, err := c.Recv()
		if err != nil {
			s.recvFailed(c, err)
			return
		}
		if msgs != nil {
			now := time.Now()
			s.throttle(msgs, now, 1, bus.ThrottlePublishRate)
			s.throttle(bytes, now, frameBytes(frames), bus.ThrottlePublishBytesRate)
		}
		if len(frames) != 2 {
			s.m.Malform(bus.MalformedFrames)
			continue
		}
		size := len(frames[0]) + len(frames[1]) // at most MaxMessageBytes: the guard checked
		topic := string(frames[0])
		if bus.ValidTopic(topic) != nil {
			s.m.Malform(bus.MalformedTopic)
			continue
		}
		proto.Reset(&env)
		if proto.Unmarshal(frames[1], &env) != nil {
			s.m.Malform(bus.MalformedEnvelope)
			continue
		}
		if !p.agent && bus.AgentOnly(topic) {
			s.deny(p, "publish", topic, "only the agent publishes this topic")
			continue
		}
		if p.perms != nil && !p.perms.CanPublish(topic) {
			s.deny(p, "publish", topic, "not in the user's permissions")
			continue
		}
		if fs := s.filters.Load(); fs != nil && len(*fs) > 0 {
			m := bus.Message{
				Topic: topic, ID: env.GetId(), Source: env.GetSource(), Peer: p.id, PeerAddress: p.addr,
				ContentType: env.GetContentType(), CorrelationID: env.GetCorrelationId(), ReplyTo: env.GetReplyTo(),
				Payload: env.GetPayload(),
			}
			if env.GetTime() != nil {
				m.Time = env.GetTime().AsTime()
			}
			if p.user != "" {
				// An authenticated external process is who it logged in
				// as, whatever its envelopes claim.
				m.Source = p.user
			}
			if filtered(*fs, m) {
				s.m.Drop(bus.DropFiltered)
				continue
			}
		}
		fam := bus.Family(topic)
		if fc, ok := s.counter[fam]; ok {
			fc.inMsgs.Inc()
			fc.inBytes.Add(float64(size))
		}
		frames[1] = stampPeer(frames[1], p)
		s.fanout(&frame{topic: topic, frames: frames, fam: fam, size: len(frames[0]) + len(frames[1])})
	}
}

// filtered reports whether any filter rejects m.
func filtered(fs []bus.Filter, m bus.Message) bool {
	for _, f := range fs {
		if f.FilterMessage(m) != nil {
			return true
		}
	}
	return false
}

type frame struct {
	topic  string
	frames [][]byte
	fam    string
	size   int
}

// frameOverhead is what a queued message costs beyond its bytes: the frame
// with its slices and the queue's slot. Queue bounds count it.
const frameOverhead = 128

func (f *frame) cost() int64 { return int64(f.size + frameOverhead) }

func (s *server) fanout(f *frame) {
	topic := f.frames[0]
	for _, sub := range *s.subs.Load() {
		if sub.matches(topic) {
			s.enqueue(sub, f)
		}
	}
}

// enqueue queues f for sub within the subscriber's bounds (count and
// bytes) and the broker's (bytes over all subscribers), or counts the drop.
func (s *server) enqueue(sub *subscriber, f *frame) {
	cost := f.cost()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	switch {
	case sub.closed:
	case len(sub.q) >= s.cfg.SubscriberQueue:
		s.m.Drop(bus.DropSubscriberQueueFull)
	case sub.queued > 0 && sub.queued+cost > int64(s.cfg.SubscriberQueueBytes):
		// An empty queue takes any message: one of max_message_bytes
		// costs a little more than its bytes.
		s.m.Drop(bus.DropSubscriberQueueBytes)
	case !reserve(&s.queued, cost, int64(s.cfg.QueueBytes)):
		s.m.Drop(bus.DropQueueBytes)
	default:
		sub.q = append(sub.q, f)
		sub.queued += cost
		if len(sub.q) == 1 {
			select {
			case sub.wake <- struct{}{}:
			default:
			}
		}
	}
}

// reserve adds cost to n unless that takes it past max; from 0 it always
// does.
func reserve(n *atomic.Int64, cost, max int64) bool {
	for {
		cur := n.Load()
		if cur > 0 && cur+cost > max {
			return false
		}
		if n.CompareAndSwap(cur, cur+cost) {
			return true
		}
	}
}

// take returns what is queued for sub, oldest first, and leaves into
// (emptied) as its queue: the writer and the queue swap two slices, so a
// queue's memory follows what it holds, not what subscriber_queue allows.
// A slice grown past smallQueue by a burst is let go.
func (sub *subscriber) take(into []*frame) []*frame {
	if cap(into) > smallQueue {
		into = nil
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	q := sub.q
	sub.q = into[:0]
	return q
}

// smallQueue is the capacity a subscriber's queue slice keeps between
// bursts.
const smallQueue = 1024

// release frees what fs held in sub's and the broker's bounds.
func (s *server) release(sub *subscriber, fs ...*frame) {
	var cost int64
	for _, f := range fs {
		cost += f.cost()
	}
	sub.mu.Lock()
	sub.queued -= cost
	sub.mu.Unlock()
	s.queued.Add(-cost)
}

// subscriber is one connection on the subscriber side, with its own
// bounded queue and writer. Its prefixes are a radix tree (prefix to
// subscription count) replaced whole on each change, so matching reads it
// without a lock and in time linear in the topic's length, however many
// prefixes there are.
type subscriber struct {
	c        *zmtp.Conn
	prefixes atomic.Pointer[iradix.Tree[int]]
	wake     chan struct{} // a token when the queue stops being empty

	mu     sync.Mutex
	q      []*frame // queued, oldest first
	queued int64    // cost of what is queued or taken and not yet written
	closed bool
}

func (sub *subscriber) matches(topic []byte) bool {
	_, _, ok := sub.prefixes.Load().Root().LongestPrefix(topic)
	return ok
}

// closeSub stops enqueues and releases what is still queued. The writer
// must have returned.
func (s *server) closeSub(sub *subscriber) {
	sub.mu.Lock()
	sub.closed = true
	sub.mu.Unlock()
	s.release(sub, sub.take(nil)...)
}

func (s *server) addSub(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.subs.Load()
	next := append(append(make([]*subscriber, 0, len(old)+1), old...), sub)
	s.subs.Store(&next)
}

func (s *server) removeSub(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.subs.Load()
	next := make([]*subscriber, 0, len(old))
	for _, o := range old {
		if o != sub {
			next = append(next, o)
		}
	}
	s.subs.Store(&next)
}

// serveSubscriber reads subscriptions from one subscriber while a writer
// goroutine sends it what matches.
func (s *server) serveSubscriber(c *zmtp.Conn, p peer) {
	sub := &subscriber{c: c, wake: make(chan struct{}, 1)}
	sub.prefixes.Store(iradix.New[int]())
	s.addSub(sub)
	wrote := make(chan struct{})
	done := make(chan struct{})
	defer func() {
		s.removeSub(sub)
		close(done)
		_ = c.Close()
		<-wrote
		s.closeSub(sub)
	}()
	s.wg.Add(1)
	go func() {
		defer close(wrote)
		s.write(sub, done)
	}()

	var subs *rate.Limiter
	if !p.agent {
		subs = rate.NewLimiter(rate.Limit(s.cfg.SubscribeRate), max(s.cfg.SubscribeRate, s.cfg.MaxSubscriptions))
	}
	for {
		frames, err := c.Recv()
		if err != nil {
			s.recvFailed(c, err)
			return
		}
		if subs != nil {
			s.throttle(subs, time.Now(), 1, bus.ThrottleSubscribeRate)
		}
		if len(frames) != 1 || len(frames[0]) == 0 || frames[0][0] > 1 {
			s.m.Malform(bus.MalformedFrames)
			continue
		}
		prefix := frames[0][1:]
		if len(prefix) > bus.MaxTopicLen {
			s.m.Malform(bus.MalformedTopic) // no topic can match it
			continue
		}
		tree := sub.prefixes.Load()
		n, ok := tree.Get(prefix)
		if frames[0][0] == 1 {
			if p.perms != nil && !p.perms.CanSubscribe(p.user, string(prefix)) {
				s.deny(p, "subscribe", string(prefix), "not in the user's permissions")
				continue
			}
			if !ok && tree.Len() >= s.cfg.MaxSubscriptions {
				s.m.Refuse(bus.RefusedSubscriptionLimit)
				s.warn[bus.RefusedSubscriptionLimit].Do(func() {
					s.log.Warn("bus subscription refused: max_subscriptions reached", "remote", c.RemoteAddr().String(), "user", c.User, "max_subscriptions", s.cfg.MaxSubscriptions)
				})
				continue
			}
			tree, _, _ = tree.Insert(prefix, n+1)
		} else if !ok {
			continue
		} else if n > 1 {
			tree, _, _ = tree.Insert(prefix, n-1)
		} else {
			tree, _, _ = tree.Delete(prefix)
		}
		sub.prefixes.Store(tree)
	}
}

func (s *server) write(sub *subscriber, done <-chan struct{}) {
	defer s.wg.Done()
	timeout := s.cfg.WriteTimeout.D()
	unbounded := 0 // bytes that may still be written under the current deadline
	fail := func(err error) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.m.Disconnect(bus.DisconnectStalled)
			s.warn[bus.DisconnectStalled].Do(func() {
				s.log.Warn("bus subscriber disconnected: stalled", "remote", sub.c.RemoteAddr().String(), "user", sub.c.User, "write_timeout", timeout.String())
			})
		}
		_ = sub.c.Close()
	}
	var batch []*frame
	next := 0 // batch[next:] is taken and not yet written
	defer func() { s.release(sub, batch[next:]...) }()
	for {
		select {
		case <-sub.wake:
		case <-done:
			return
		}
		batch, next = sub.take(batch), 0
		for next < len(batch) {
			f := batch[next]
			batch[next] = nil
			next++
			s.release(sub, f)
			// The deadline covers at most 64 KiB and a message of
			// writing: a reader that keeps taking data is not stalled.
			if unbounded <= 0 {
				_ = sub.c.SetWriteDeadline(time.Now().Add(timeout))
				unbounded = 64 << 10
			}
			unbounded -= f.size
			if err := sub.c.Send(f.frames...); err != nil {
				fail(err)
				return
			}
			if fc, ok := s.counter[f.fam]; ok {
				fc.outMsgs.Inc()
				fc.outBytes.Add(float64(f.size))
			}
		}
		if err := sub.c.Flush(); err != nil {
			fail(err)
			return
		}
	}
}
