package bustest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/bus"
)

// Bus is an in-memory bus shared by every client made from it. Delivery is
// synchronous into buffered channels; a full channel drops, as on the real
// bus. It records every published message.
type Bus struct {
	mu        sync.Mutex
	subs      map[*sub]struct{}
	published []bus.Message
	seq       int
	dropped   int
	// Buffer is the channel size of new subscriptions (default 64).
	Buffer int
}

type sub struct {
	prefix string
	ch     chan bus.Message
}

// New returns an empty in-memory bus.
func New() *Bus { return &Bus{subs: map[*sub]struct{}{}} }

// Client returns a Bus that publishes as source, restricted by perms, as
// one of the agent's own plugins (its messages carry bus.PeerAgent).
func (b *Bus) Client(source string, perms bus.Permissions) *Client {
	return &Client{b: b, source: source, perms: perms, peer: bus.PeerAgent}
}

// External returns a Bus for an external process that the broker knows as
// peer from addr: its messages carry them, as the broker stamps them, and
// topics only the agent publishes (bus.AgentOnly) are refused.
func (b *Bus) External(peer, addr, source string, perms bus.Permissions) *Client {
	return &Client{b: b, source: source, perms: perms, peer: peer, addr: addr}
}

// ClientFor implements bus.Provider as a broker whose config gives no
// permissions: bus.DefaultPermissions and the topics the plugin uses.
func (b *Bus) ClientFor(plugin string, uses ...bus.Permissions) (bus.Bus, error) {
	perms := bus.DefaultPermissions(plugin)
	for _, u := range uses {
		perms = perms.With(u)
	}
	return b.Client(plugin, perms), nil
}

// Published returns a copy of every message published so far.
func (b *Bus) Published() []bus.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bus.Message(nil), b.published...)
}

// Dropped returns how many deliveries were dropped on full channels.
func (b *Bus) Dropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

func (b *Bus) publish(topic string, m bus.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	if m.ID == "" {
		m.ID = "mem-" + strconv.Itoa(b.seq)
	}
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	m.Topic = topic
	b.published = append(b.published, m)
	for s := range b.subs {
		if strings.HasPrefix(topic, s.prefix) {
			select {
			case s.ch <- m:
			default:
				b.dropped++
			}
		}
	}
}

// Client is one plugin's view of the in-memory bus.
type Client struct {
	b      *Bus
	source string
	perms  bus.Permissions
	peer   string
	addr   string

	mu     sync.Mutex
	closed bool
	mine   []*sub
}

// Publish implements bus.Bus.
func (c *Client) Publish(ctx context.Context, topic string, m bus.Message) error {
	if c.isClosed() {
		return bus.ErrClosed
	}
	if err := bus.ValidTopic(topic); err != nil {
		return err
	}
	if !c.perms.CanPublish(topic) || (c.peer != bus.PeerAgent && bus.AgentOnly(topic)) {
		return fmt.Errorf("%w: %s may not publish %q", bus.ErrDenied, c.source, topic)
	}
	m.Source, m.Peer, m.PeerAddress = c.source, c.peer, c.addr
	c.b.publish(topic, m)
	return nil
}

// Subscribe implements bus.Bus.
func (c *Client) Subscribe(ctx context.Context, prefix string) (<-chan bus.Message, error) {
	if !c.perms.CanSubscribe(c.source, prefix) {
		return nil, fmt.Errorf("%w: %s may not subscribe %q", bus.ErrDenied, c.source, prefix)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, bus.ErrClosed
	}
	size := c.b.Buffer
	if size <= 0 {
		size = 64
	}
	s := &sub{prefix: prefix, ch: make(chan bus.Message, size)}
	c.b.mu.Lock()
	c.b.subs[s] = struct{}{}
	c.b.mu.Unlock()
	c.mine = append(c.mine, s)
	context.AfterFunc(ctx, func() { c.b.remove(s) })
	return s.ch, nil
}

func (b *Bus) remove(s *sub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
	}
}

// Request implements bus.Bus.
func (c *Client) Request(ctx context.Context, topic string, m bus.Message) (bus.Message, error) {
	c.b.mu.Lock()
	c.b.seq++
	id := "req-" + strconv.Itoa(c.b.seq)
	c.b.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reply := bus.ReplyPrefix + c.source + "." + id
	ch, err := c.Subscribe(rctx, reply)
	if err != nil {
		return bus.Message{}, err
	}
	m.ID, m.ReplyTo = id, reply
	if err := c.Publish(ctx, topic, m); err != nil {
		return bus.Message{}, err
	}
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				return bus.Message{}, bus.ErrClosed
			}
			if r.CorrelationID == id {
				return r, nil
			}
		case <-ctx.Done():
			return bus.Message{}, fmt.Errorf("bustest: request on %s: %w", topic, ctx.Err())
		}
	}
}

// Close implements bus.Bus.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	mine := c.mine
	c.mu.Unlock()
	for _, s := range mine {
		c.b.remove(s)
	}
	return nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

var (
	_ bus.Bus      = (*Client)(nil)
	_ bus.Provider = (*Bus)(nil)
)
