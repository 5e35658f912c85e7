package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// ServiceName is the name of the container service that the broker plugin
// provides; its value implements Provider.
const ServiceName = "message_bus"

// Bus is what a plugin uses to talk on the message bus. Implementations are
// safe for concurrent use.
type Bus interface {
	// Publish sends msg on topic. It never blocks on the network: the
	// message is queued, and a full queue is an error (ErrQueueFull).
	// A topic outside the caller's scope is ErrDenied.
	Publish(ctx context.Context, topic string, msg Message) error
	// Subscribe returns the messages whose topic starts with prefix until
	// ctx is done or the Bus is closed; then the channel is closed. A slow
	// reader loses messages (counted), it never slows the bus.
	Subscribe(ctx context.Context, prefix string) (<-chan Message, error)
	// Request publishes msg on topic with a reply address and returns the
	// first reply whose correlation id is the request's id, or ctx's error.
	Request(ctx context.Context, topic string, msg Message) (Message, error)
	// Close ends every subscription and makes later calls fail with
	// ErrClosed. Closing twice is harmless.
	Close() error
}

// Provider is the value of the message_bus service: it hands each plugin a
// Bus scoped to the topics the broker's config allows it. A plugin that
// config gives no permissions gets DefaultPermissions plus uses (its
// Topics().Uses, see TopicUser).
type Provider interface {
	ClientFor(plugin string, uses ...Permissions) (Bus, error)
}

// Errors returned by Bus implementations, compared with errors.Is.
var (
	ErrClosed       = errors.New("bus: closed")
	ErrDenied       = errors.New("bus: permission denied")
	ErrQueueFull    = errors.New("bus: publish queue full, message dropped")
	ErrInvalidTopic = errors.New("bus: invalid topic")
	ErrTooLarge     = errors.New("bus: message too large")
)

// Message is one bus message as a plugin sees it.
type Message struct {
	// Topic it was published on; set on delivery.
	Topic string
	// ID is unique per message; set by Publish when empty.
	ID string
	// Source is the publishing plugin; set by Publish. It is what the
	// publisher claims: decide who may do what by Peer, never by Source.
	Source string
	// Peer is who published the message as the broker knows the
	// connection (PeerAgent, "user:<name>" or "conn:<n>@<address>"); the
	// broker sets it on every message it forwards, over anything the
	// publisher sent. Set on delivery.
	Peer string
	// PeerAddress is the network address of the publishing connection;
	// "" for the agent's own plugins. Set on delivery, like Peer.
	PeerAddress string
	// Time of publication; set by Publish when zero.
	Time time.Time
	// ContentType of Payload.
	ContentType string
	// CorrelationID links a reply to its request's ID.
	CorrelationID string
	// ReplyTo is the topic a reply should go to.
	ReplyTo string
	Payload []byte

	// SpanContext is the consumer span of this delivery (a child of the
	// producer's span); invalid when tracing is off.
	SpanContext trace.SpanContext
}

// Context returns ctx carrying the message's consumer span, so that work
// done for the message joins its trace.
func (m Message) Context(ctx context.Context) context.Context {
	if !m.SpanContext.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, m.SpanContext)
}

// ProtoContentType is the content type of a protobuf payload.
func ProtoContentType(m proto.Message) string {
	return "application/x-protobuf; messageType=" + string(m.ProtoReflect().Descriptor().FullName())
}

// NewProto returns a Message carrying m, encoded with protobuf.
func NewProto(m proto.Message) (Message, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return Message{}, fmt.Errorf("bus: encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return Message{ContentType: ProtoContentType(m), Payload: b}, nil
}

// Decode decodes the payload into m.
func (m Message) Decode(into proto.Message) error {
	if err := proto.Unmarshal(m.Payload, into); err != nil {
		return fmt.Errorf("bus: decode %s on %s: %w", into.ProtoReflect().Descriptor().FullName(), m.Topic, err)
	}
	return nil
}

// Reply publishes resp as the answer to req: on req.ReplyTo, with req.ID as
// correlation id.
func Reply(ctx context.Context, b Bus, req, resp Message) error {
	if req.ReplyTo == "" {
		return fmt.Errorf("bus: reply to %s on %s: request has no reply_to", req.ID, req.Topic)
	}
	resp.CorrelationID = req.ID
	return b.Publish(ctx, req.ReplyTo, resp)
}

// MaxTopicLen is the longest topic accepted.
const MaxTopicLen = 255

// ReplyPrefix starts the topics that replies are sent on. Anyone may
// publish under it; a plugin may subscribe only under ReplyPrefix+name+".".
const ReplyPrefix = "reply."

// ValidTopic reports whether topic has the bus's shape: dot-separated,
// non-empty segments of ASCII letters, digits, '_', '-' and ':', starting
// with a lowercase segment, at most MaxTopicLen bytes.
func ValidTopic(topic string) error {
	if topic == "" || len(topic) > MaxTopicLen {
		return fmt.Errorf("%w %q: length must be 1..%d", ErrInvalidTopic, topic, MaxTopicLen)
	}
	seg := 0
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case c == '.':
			if seg == 0 {
				return fmt.Errorf("%w %q: empty segment", ErrInvalidTopic, topic)
			}
			seg = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		case c >= 'A' && c <= 'Z', c == ':':
			if !strings.Contains(topic[:i], ".") {
				return fmt.Errorf("%w %q: first segment must be lowercase", ErrInvalidTopic, topic)
			}
		default:
			return fmt.Errorf("%w %q: byte %q not allowed", ErrInvalidTopic, topic, c)
		}
		seg++
	}
	if seg == 0 {
		return fmt.Errorf("%w %q: empty segment", ErrInvalidTopic, topic)
	}
	return nil
}

// Family returns the first segment of a topic when it is one of the
// well-known families, and "other" otherwise; it keeps metric labels
// bounded.
func Family(topic string) string {
	first, _, _ := strings.Cut(topic, ".")
	switch first {
	case "logs", "plugin", "health", "alerts", "lifecycle", "reply":
		return first
	}
	return "other"
}

// PeerAgent is the Peer of messages published by the agent's own plugins,
// which reach the broker over an in-process connection that no other
// process can open.
const PeerAgent = "agent"

// PeerUser returns the Peer of a connection authenticated as a PLAIN user.
func PeerUser(name string) string { return "user:" + name }

// PeerConn returns the Peer of the n-th unauthenticated connection, from
// addr.
func PeerConn(n uint64, addr string) string { return fmt.Sprintf("conn:%d@%s", n, addr) }

// AgentOnly reports whether only the agent may publish topic: health state
// and requests (health.*, except the answers on health.response), alerts.*,
// lifecycle.*, extmanager.* and audit.*. The broker refuses these from
// every external connection, whatever its permissions say.
func AgentOnly(topic string) bool {
	first, _, _ := strings.Cut(topic, ".")
	switch first {
	case "health":
		return topic != "health.response"
	case "alerts", "lifecycle", "extmanager", "audit":
		return true
	}
	return false
}

// Credentials are ZeroMQ PLAIN credentials; the zero value means NULL
// security.
type Credentials struct {
	Username string
	Password string
}
