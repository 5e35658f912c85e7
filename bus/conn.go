package bus

import (
	"context"
	"errors"
	"net"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/internal/zmtp"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

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

// MessageOf is the message an envelope received on topic carries; the
// broker uses it too, to show its filters what a publisher sent.
func MessageOf(topic string, env *busv1.Envelope) Message {
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
	msg := MessageOf(topic, env)
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
