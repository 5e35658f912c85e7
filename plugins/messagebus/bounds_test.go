package messagebus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/internal/zmtp"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// rawPeer connects to a broker endpoint as a ZeroMQ socket of type typ
// (NULL security) and returns the bare connection after the handshake, for
// writing frames the bus client would never send.
func rawPeer(t *testing.T, ep string, typ zmq4.SocketType) net.Conn {
	t.Helper()
	network, addr, err := zmtp.Endpoint(ep)
	must(t, err)
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	must(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := zmq4.Open(c, null.Security(), typ, zmq4.SocketIdentity(nil), false, nil); err != nil {
		t.Fatalf("handshake with %s: %v", ep, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// heapPeak samples the heap in use until stop is closed and returns the
// largest growth over the value at the start, in bytes.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	go func() {
		var peak uint64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak {
				peak = ms.HeapInuse - base
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// An endless multipart message of empty frames is cut off as it arrives:
// the broker disconnects the peer after maxFrames frames, and its heap does
// not grow with what the peer sends.
func TestEndlessMultipartIsCutOff(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	c := rawPeer(t, e.cfg.PublishAddress, zmq4.Pub)

	stop := make(chan struct{})
	peak := heapPeak(stop)
	// 64 MiB of empty frames with the MORE flag: 32 Mi frames, each a
	// slice header (24 bytes) in zmq4's message if the broker kept them.
	chunk := bytes.Repeat([]byte{0x01, 0x00}, 32<<10)
	w := bufio.NewWriter(c)
	_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	var sent int
	var werr error
	for sent < 64<<20 {
		if _, werr = w.Write(chunk); werr != nil {
			break
		}
		sent += len(chunk)
	}
	close(stop)
	if grown := <-peak; grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB while %d MiB of empty frames were sent", grown>>20, sent>>20)
	}
	if werr == nil {
		t.Fatalf("the broker read all %d MiB of one message without disconnecting", sent>>20)
	}
	var ne net.Error
	if errors.As(werr, &ne) && ne.Timeout() {
		t.Fatalf("write timed out after %d MiB: the broker stopped reading without disconnecting", sent>>20)
	}
	eventually(t, 5*time.Second, "the disconnect counted", func() bool {
		return e.counter("disconnects", bus.DisconnectOversized) == 1 && e.counter("malformed", bus.MalformedOversize) == 1
	})
}

// A frame larger than max_message_bytes disconnects its sender before its
// body is read; other publishers go on.
func TestOversizedFrameDisconnects(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "max_message_bytes: 2048"))
	ctx := ctxT(t, 10*time.Second)
	sub := e.client(t, bus.Options{Name: "s"})
	ch, err := sub.Subscribe(ctx, "logs.")
	must(t, err)
	must(t, sub.Sync(ctx))

	cases := []struct {
		name   string
		frames [][]byte
	}{
		{"oversized frame", [][]byte{[]byte("logs.info.x"), make([]byte, 64<<10)}},
		{"oversized total", [][]byte{[]byte("logs.info.x"), make([]byte, 1500), make([]byte, 1500)}},
		{"too many frames", bytes.Split(bytes.Repeat([]byte{'x'}, maxFrames+1), nil)},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{})
			must(t, err)
			defer bad.Close()
			if _, err := bad.Recv(); err != nil { // the broker's subscription
				t.Fatal(err)
			}
			must(t, bad.SendFlush(tc.frames...))
			if _, err := bad.Recv(); err == nil {
				t.Fatal("the broker sent something instead of disconnecting")
			}
			eventually(t, 5*time.Second, "disconnect counted", func() bool {
				return e.counter("disconnects", bus.DisconnectOversized) == float64(i+1)
			})
		})
	}
	// On the subscriber side, where only subscriptions come, the bound
	// is 4 KiB.
	bad, err := zmtp.Dial(ctx, e.cfg.SubscribeAddress, zmtp.Sub, zmtp.Credentials{})
	must(t, err)
	defer bad.Close()
	must(t, bad.SendFlush(append([]byte{1}, make([]byte, 5000)...)))
	eventually(t, 5*time.Second, "the subscriber disconnected", func() bool {
		return e.counter("disconnects", bus.DisconnectOversized) == float64(len(cases)+1)
	})
	pub := e.client(t, bus.Options{Name: "p"})
	must(t, pub.Publish(ctx, "logs.info.p", bus.Message{ID: "after"}))
	if m := recv(t, ch, 5*time.Second); m.ID != "after" {
		t.Fatalf("got %+v", m)
	}
}

// floodPublisher sends n messages of size bytes on topic through a bare
// publisher connection, which TCP slows to the broker's pace.
func floodPublisher(t *testing.T, ctx context.Context, ep, topic string, n, size int) {
	t.Helper()
	pub, err := zmtp.Dial(ctx, ep, zmtp.Pub, zmtp.Credentials{})
	must(t, err)
	defer pub.Close()
	// Read the broker's subscription, so that closing with it unread does
	// not reset the connection before the broker has read all.
	if _, err := pub.Recv(); err != nil {
		t.Fatal(err)
	}
	body := mustMarshal(t, &busv1.Envelope{Id: "flood", Source: "flood", Payload: make([]byte, size)})
	for i := 0; i < n; i++ {
		if err := pub.Send([]byte(topic), body); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	must(t, pub.Flush())
}

// Subscribers that stop reading hold at most subscriber_queue_bytes each
// and queue_bytes together, whatever subscriber_queue allows; one whose
// writes block for write_timeout is disconnected and its queue released.
func TestStalledSubscribersAreBoundedInBytes(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t),
		"subscriber_queue_bytes: 4194304", "queue_bytes: 6291456", "write_timeout: 2s", "publish_bytes_rate: 1073741824"))
	ctx := ctxT(t, 60*time.Second)

	// Two subscribers that never read: one to everything, one to logs.b.
	for _, sub := range [][]byte{{0, 1, 1}, append([]byte{0, 7, 1}, "logs.b"...)} {
		c := rawPeer(t, e.cfg.SubscribeAddress, zmq4.Sub)
		_, err := c.Write(sub)
		must(t, err)
	}
	eventually(t, 5*time.Second, "both subscribed", func() bool {
		n := 0
		for _, sub := range *e.broker.srv.subs.Load() {
			if sub.matches([]byte("logs.b")) {
				n++
			}
		}
		return n == 2
	})

	// 8 MiB to the first, then 128 MiB to both: with subscriber_queue at
	// 10000 the queues alone would take 264 MiB. The first fills its own
	// bound, the second what is left of queue_bytes.
	stop := make(chan struct{})
	peak := heapPeak(stop)
	var maxQueued atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if q := e.broker.srv.queued.Load(); q > maxQueued.Load() {
				maxQueued.Store(q)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	floodPublisher(t, ctx, e.cfg.PublishAddress, "logs.a", 256, 32<<10)
	floodPublisher(t, ctx, e.cfg.PublishAddress, "logs.b", 4096, 32<<10)
	close(stop)
	<-sampled
	if grown := <-peak; grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB while 264 MiB went to two stalled subscribers", grown>>20)
	}
	if q := maxQueued.Load(); q > 6291456 {
		t.Fatalf("queues held %d bytes, queue_bytes is 6291456", q)
	}
	if e.counter("dropped", bus.DropSubscriberQueueBytes) == 0 || e.counter("dropped", bus.DropQueueBytes) == 0 {
		t.Fatalf("drops: subscriber_queue_bytes %v, queue_bytes %v; want both counted",
			e.counter("dropped", bus.DropSubscriberQueueBytes), e.counter("dropped", bus.DropQueueBytes))
	}
	eventually(t, 15*time.Second, "stalled subscribers disconnected", func() bool {
		return e.counter("disconnects", bus.DisconnectStalled) == 2
	})
	eventually(t, 5*time.Second, "queues released", func() bool {
		return e.broker.srv.queued.Load() == 0 && len(*e.broker.srv.subs.Load()) == 0
	})
}

// A subscriber's distinct prefixes stop at max_subscriptions; the flood is
// refused and counted and costs the broker no more memory than the cap.
func TestPrefixFloodIsCapped(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "max_subscriptions: 100", "subscribe_rate: 10000000"))
	ctx := ctxT(t, 60*time.Second)
	c, err := zmtp.Dial(ctx, e.cfg.SubscribeAddress, zmtp.Sub, zmtp.Credentials{})
	must(t, err)
	defer c.Close()

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 20000
	pad := strings.Repeat("p", 240)
	for i := range n {
		must(t, c.Send(fmt.Appendf([]byte{1}, "logs.%s.%06d", pad, i)))
	}
	must(t, c.Flush())
	eventually(t, 30*time.Second, "the flood refused", func() bool {
		return e.counter("refused", bus.RefusedSubscriptionLimit) == n-100
	})
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 2<<20 {
		t.Fatalf("the broker kept %d KiB after %d prefixes of 256 bytes, capped at 100", grown>>10, n)
	}
	sub := (*e.broker.srv.subs.Load())[0]
	if got := sub.prefixes.Load().Len(); got != 100 {
		t.Fatalf("%d prefixes kept, want 100", got)
	}
	// The prefixes within the cap match, the refused ones do not; an
	// unsubscribe makes room.
	if !sub.matches(fmt.Appendf(nil, "logs.%s.%06d.x", pad, 99)) || sub.matches(fmt.Appendf(nil, "logs.%s.%06d", pad, 100)) {
		t.Fatal("matching does not follow the kept prefixes")
	}
	must(t, c.SendFlush(fmt.Appendf([]byte{0}, "logs.%s.%06d", pad, 0)))
	must(t, c.SendFlush([]byte{1, 'a'}))
	eventually(t, 5*time.Second, "a freed slot is used", func() bool {
		return sub.matches([]byte("a.b")) && !sub.matches(fmt.Appendf(nil, "logs.%s.%06d", pad, 0))
	})
}

func TestRatesThrottlePeers(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t),
		// 3000 messages against a burst of 750: the publisher would have to
		// take 3 s over them to pass without a wait, even on a loaded machine.
		"publish_rate: 750", "subscribe_rate: 2000", "max_subscriptions: 10"))
	ctx := ctxT(t, 30*time.Second)
	sub := e.client(t, bus.Options{Name: "s", SubscriptionSize: 4000})
	ch, err := sub.Subscribe(ctx, "logs.")
	must(t, err)
	must(t, sub.Sync(ctx))

	floodPublisher(t, ctx, e.cfg.PublishAddress, "logs.info.flood", 3000, 10)
	for i := range 3000 {
		select {
		case m := <-ch:
			if m.ID != "flood" {
				t.Fatalf("message %d: %+v", i, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 3000 messages arrived; in %v, dropped %v %v", i, e.counter("messages", "in", "logs"), e.counter("dropped", bus.DropSubscriberQueueFull), e.counter("dropped", bus.DropSubscriptionQueueFull))
		}
	}
	if e.counter("throttled", bus.ThrottlePublishRate) == 0 {
		t.Fatal("3000 messages at once passed a publish_rate of 750/s without a wait")
	}

	c, err := zmtp.Dial(ctx, e.cfg.SubscribeAddress, zmtp.Sub, zmtp.Credentials{})
	must(t, err)
	defer c.Close()
	for i := range 3000 {
		must(t, c.Send(fmt.Appendf([]byte{1}, "x.%d", i)))
	}
	must(t, c.Flush())
	eventually(t, 10*time.Second, "every subscription read", func() bool {
		return e.counter("refused", bus.RefusedSubscriptionLimit) == 2990
	})
	if e.counter("throttled", bus.ThrottleSubscribeRate) == 0 {
		t.Fatal("3000 subscriptions at once passed a subscribe_rate of 2000/s without a wait")
	}
	if e.counter("dropped", bus.DropSubscriberQueueFull) != 0 {
		t.Fatal("throttling dropped messages")
	}
}

// Subscriptions count as ZeroMQ's do: a prefix subscribed twice needs two
// unsubscriptions, and unsubscribing a prefix never subscribed is a no-op.
func TestPrefixesAreCounted(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	ctx := ctxT(t, 10*time.Second)
	c, err := zmtp.Dial(ctx, e.cfg.SubscribeAddress, zmtp.Sub, zmtp.Credentials{})
	must(t, err)
	defer c.Close()
	var sub *subscriber
	eventually(t, 5*time.Second, "the subscriber registered", func() bool {
		if subs := *e.broker.srv.subs.Load(); len(subs) == 1 {
			sub = subs[0]
			return true
		}
		return false
	})
	steps := []struct {
		frame []byte
		match bool
	}{
		{[]byte("\x01a."), true},
		{[]byte("\x01a."), true},
		{[]byte("\x00b."), true},
		{[]byte("\x00a."), true},
		{[]byte("\x00a."), false},
		{[]byte("\x00a."), false},
		{[]byte("\x01"), true}, // everything
	}
	for i, st := range steps {
		must(t, c.SendFlush(st.frame))
		must(t, c.SendFlush([]byte("\x01zz.sync"), []byte("x"))) // malformed: a marker that the step was read
		eventually(t, 5*time.Second, "step read", func() bool { return e.counter("malformed", bus.MalformedFrames) == float64(i+1) })
		if got := sub.matches([]byte("a.b")); got != st.match {
			t.Fatalf("after step %d (%q): matches a.b = %v, want %v", i, st.frame, got, st.match)
		}
	}
}

// The messages being read from all external peers together are bounded
// by read_bytes: a frame's size is reserved at its header, before its body
// is allocated; a frame that finds no room within read_wait disconnects
// its peer, and a finished message gives its room back.
func TestReadBytesBoundsAllConnections(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "read_bytes: 2097152", "read_wait: 500ms"))
	ctx := ctxT(t, 30*time.Second)
	sub := e.client(t, bus.Options{Name: "s"})
	ch, err := sub.Subscribe(ctx, "logs.")
	must(t, err)
	must(t, sub.Sync(ctx))

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// 16 publishers start a 1 MiB frame and send 10 bytes of it.
	header := []byte{0x02, 0, 0, 0, 0, 0, 0x10, 0, 0} // a long frame of 1 MiB
	var slow []net.Conn
	for range 16 {
		c := rawPeer(t, e.cfg.PublishAddress, zmq4.Pub)
		_, err := c.Write(append(header, make([]byte, 10)...))
		must(t, err)
		slow = append(slow, c)
	}
	eventually(t, 10*time.Second, "14 of 16 disconnected", func() bool {
		return e.counter("disconnects", bus.DisconnectReadBytes) == 14
	})
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 8<<20 {
		t.Fatalf("heap grew by %d MiB while 16 peers started 1 MiB frames, read_bytes 2 MiB", grown>>20)
	}
	for _, c := range slow {
		_ = c.Close()
	}
	// The room is back: a whole 1 MiB message passes.
	pub, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{})
	must(t, err)
	defer pub.Close()
	big := mustMarshal(t, &busv1.Envelope{Id: "big", Source: "p", Payload: make([]byte, 1<<20-64)})
	must(t, pub.SendFlush([]byte("logs.big"), big))
	for m := recv(t, ch, 10*time.Second); m.ID != "big"; m = recv(t, ch, 10*time.Second) {
	}
}
