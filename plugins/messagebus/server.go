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

	"golang.org/x/time/rate"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/internal/backoff"
	"github.com/vitals-dev/vitals/internal/zmtp"
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
	fails := 0
	for {
		raw, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Such as EMFILE: the pending connection stays queued, so
			// retrying at once would spin. Wait, and give up on close.
			delay := backoff.Exponential(fails, acceptBackoffMin, acceptBackoffMax)
			fails++
			s.m.AcceptError()
			s.log.Warn("bus accept failed", "address", l.Addr().String(), "err", err, "retry_in", delay.String())
			select {
			case <-time.After(delay):
			case <-s.done:
				return
			}
			continue
		}
		fails = 0
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
