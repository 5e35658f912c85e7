package messagebus

import (
	"time"

	"golang.org/x/time/rate"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/internal/zmtp"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

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
			m := bus.MessageOf(topic, &env)
			m.Peer, m.PeerAddress = p.id, p.addr // what the broker stamps, not what the envelope claims
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
