package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

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
	_, _, err := v.syncTopic(ctx, "sync")
	return err
}

// syncTopic subscribes to a private reply topic, waits until it is live,
// and returns the topic and its channel; the subscription ends with ctx.
func (v *View) syncTopic(ctx context.Context, kind string) (string, <-chan Message, error) {
	topic := ReplyPrefix + v.source + "." + kind + "." + v.c.newID()
	ch, err := v.subscribe(ctx, topic)
	if err != nil {
		return "", nil, err
	}
	probe := "probe-" + v.c.newID()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := v.c.publish(ctx, v.source, topic, Message{ID: probe}); err != nil && !errors.Is(err, ErrQueueFull) {
			return "", nil, err
		}
		for {
			select {
			case m, ok := <-ch:
				if !ok {
					return "", nil, ErrClosed
				}
				if m.ID == probe {
					return topic, ch, nil
				}
				continue
			case <-tick.C:
			case <-ctx.Done():
				return "", nil, fmt.Errorf("bus: sync: %w", ctx.Err())
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
	replyTo, ch, err := v.syncTopic(rctx, "req")
	if err != nil {
		return Message{}, fmt.Errorf("bus: request on %s: %w", topic, err)
	}
	if msg.ID == "" {
		msg.ID = v.c.newID()
	}
	msg.ReplyTo = replyTo
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

var (
	_ Bus = (*Client)(nil)
	_ Bus = (*View)(nil)
)
