package messagebus

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"golang.org/x/time/rate"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/internal/zmtp"
)

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
