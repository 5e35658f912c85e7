package messagebus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/prometheus/client_golang/prometheus/testutil"

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

// At max_connections the broker stops accepting: a new connection waits
// in the kernel's backlog, costing the agent nothing, and is served when
// a connection closes. The agent's own connections do not count.
func TestConnectionLimit(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "max_connections: 4"))
	own, err := e.broker.svc.ClientFor("tester")
	must(t, err)
	must(t, own.(interface{ Sync(context.Context) error }).Sync(ctxT(t, 10*time.Second)))
	var open []net.Conn
	for i := range 4 {
		ep := e.cfg.PublishAddress
		typ := zmq4.Pub
		if i%2 == 1 {
			ep, typ = e.cfg.SubscribeAddress, zmq4.Sub
		}
		open = append(open, rawPeer(t, ep, typ))
	}
	fifth := make(chan error, 1)
	go func() {
		network, addr, _ := zmtp.Endpoint(e.cfg.SubscribeAddress)
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			fifth <- err
			return
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = zmq4.Open(c, null.Security(), zmq4.Sub, zmq4.SocketIdentity(nil), false, nil)
		fifth <- err
	}()
	eventually(t, 5*time.Second, "accepting paused", func() bool {
		return e.counter("throttled", bus.ThrottleConnectionLimit) >= 1
	})
	select {
	case err := <-fifth:
		t.Fatalf("a fifth connection was served with four open (max_connections 4): %v", err)
	default:
	}
	_ = open[0].Close()
	select {
	case err := <-fifth:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection was not served after one closed")
	}
	e.broker.srv.mu.Lock()
	n := e.broker.srv.external
	e.broker.srv.mu.Unlock()
	if n != 4 {
		t.Fatalf("%d external connections, want 4", n)
	}
}

// A connection on which nothing moves for idle_timeout is closed and
// counted; one with traffic stays.
func TestIdleConnectionsAreClosed(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "idle_timeout: 300ms"))
	ctx := ctxT(t, 20*time.Second)
	idle := rawPeer(t, e.cfg.PublishAddress, zmq4.Pub)

	// A publisher sending every 50 ms, for four idle timeouts.
	busy, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{})
	must(t, err)
	defer busy.Close()
	body := mustMarshal(t, &busv1.Envelope{Id: "tick", Source: "busy"})
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range 24 {
		<-tick.C
		must(t, busy.SendFlush([]byte("logs.info.busy"), body))
	}

	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, idle); err != nil {
		t.Fatalf("the idle connection was not closed by the broker: %v", err)
	}
	if got := e.counter("disconnects", bus.DisconnectIdle); got != 1 {
		t.Fatalf("idle disconnects %v, want 1 (the busy publisher must stay)", got)
	}
	must(t, busy.SendFlush([]byte("logs.info.busy"), body))
	eventually(t, 5*time.Second, "all 25 messages of the busy publisher in", func() bool {
		return e.counter("messages", "in", "logs") == 25
	})
	if got := e.counter("disconnects", bus.DisconnectIdle); got != 1 {
		t.Fatalf("idle disconnects %v, want 1", got)
	}
}

// When accept fails (here EMFILE: the process is out of file
// descriptors), the broker backs off instead of spinning on the queued
// connection, and accepts it once descriptors are free again.
func TestAcceptBacksOffOnEMFILE(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	var lim syscall.Rlimit
	must(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	restore := lim
	defer func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &restore) }()
	fds, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	lim.Cur = uint64(len(fds) + 16)
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))

	var fill []*os.File
	defer func() {
		for _, f := range fill {
			_ = f.Close()
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		fill = append(fill, f)
	}
	// One descriptor for the dial; the broker's accept has none.
	_ = fill[len(fill)-1].Close()
	fill = fill[:len(fill)-1]
	network, addr, _ := zmtp.Endpoint(e.cfg.PublishAddress)
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	must(t, err)
	defer c.Close()

	errs := func() float64 { return testutil.ToFloat64(e.broker.Metrics().AcceptErrors) }
	eventually(t, 5*time.Second, "an accept error counted", func() bool { return errs() >= 1 })
	// Over the next 300 ms a spinning loop fails thousands of times; the
	// backoff (5, 10, 20, ... ms) at most 7 times on each listener (the
	// broker's own client may be queued on the other).
	start := errs()
	<-time.After(300 * time.Millisecond)
	if n := errs() - start; n > 16 {
		t.Fatalf("%v accept errors in 300 ms: the accept loop does not back off\n%s", n, e.logs.String())
	}
	if n := strings.Count(e.logs.String(), "bus accept failed"); n > 20 {
		t.Fatalf("%d log lines for the failed accepts", n)
	}

	for _, f := range fill {
		_ = f.Close()
	}
	fill = nil
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &restore))
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := zmq4.Open(c, null.Security(), zmq4.Pub, zmq4.SocketIdentity(nil), false, nil); err != nil {
		t.Fatalf("the queued connection was not accepted once descriptors were free: %v", err)
	}
}

// An external peer over its rate is read late, not dropped: its messages
// wait in its socket, every one arrives, and the waits are counted.
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

// An idle connection costs the broker one 64 KiB buffer, for the way its
// data flows, not two.
func TestIdleConnectionMemory(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 60
	for i := range n {
		ep, typ := e.cfg.PublishAddress, zmq4.Pub
		if i%2 == 1 {
			ep, typ = e.cfg.SubscribeAddress, zmq4.Sub
		}
		rawPeer(t, ep, typ)
	}
	eventually(t, 5*time.Second, "all connections served", func() bool {
		e.broker.srv.mu.Lock()
		defer e.broker.srv.mu.Unlock()
		return e.broker.srv.external == n
	})
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapInuse) - int64(before.HeapInuse)) / n
	t.Logf("%d KiB of heap per connection (the test's side included)", per>>10)
	if per > 100<<10 {
		t.Fatalf("%d KiB of heap per idle connection, want under 100", per>>10)
	}
}

// ZMTP heartbeats: the broker answers a peer's PING with a PONG carrying
// its context, written in turn with the messages it sends (not from the
// reading goroutine), and the pings keep the connection from idle_timeout.
func TestHeartbeatsArePongedAndKeepAlive(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "idle_timeout: 300ms"))
	ctx := ctxT(t, 20*time.Second)
	c := rawPeer(t, e.cfg.SubscribeAddress, zmq4.Sub)
	_, err := c.Write([]byte{0, 1, 1}) // everything
	must(t, err)
	eventually(t, 5*time.Second, "subscribed", func() bool {
		subs := *e.broker.srv.subs.Load()
		return len(subs) == 1 && subs[0].matches([]byte("logs.x"))
	})

	// Read and parse everything the broker sends: messages of two frames,
	// and PONGs.
	pongs := make(chan string, 100)
	parsed := make(chan error, 1)
	go func() {
		r := bufio.NewReader(c)
		part := 0
		for {
			flag, err := r.ReadByte()
			if err != nil {
				parsed <- nil
				return
			}
			var size uint64
			if flag&0x02 != 0 {
				var b [8]byte
				if _, err := io.ReadFull(r, b[:]); err != nil {
					parsed <- nil
					return
				}
				size = binary.BigEndian.Uint64(b[:])
			} else {
				b, _ := r.ReadByte()
				size = uint64(b)
			}
			if size > 1<<20 {
				parsed <- fmt.Errorf("a frame of %d bytes: the stream is corrupt", size)
				return
			}
			body := make([]byte, size)
			if _, err := io.ReadFull(r, body); err != nil {
				parsed <- nil
				return
			}
			switch {
			case flag&0x04 != 0:
				if part != 0 || !bytes.HasPrefix(body, []byte("\x04PONG")) {
					parsed <- fmt.Errorf("command %q inside a message or not a PONG", body)
					return
				}
				pongs <- string(body[5:])
			case part == 0 && flag&0x01 != 0:
				part = 1
			case part == 1 && flag&0x01 == 0:
				part = 0
			default:
				parsed <- fmt.Errorf("frame flag %#x at part %d", flag, part)
				return
			}
		}
	}()
	// Messages keep the broker writing while the pings come.
	pub, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{})
	must(t, err)
	defer pub.Close()
	body := mustMarshal(t, &busv1.Envelope{Id: "m", Source: "flood", Payload: make([]byte, 100)})
	go func() {
		for range 20000 {
			if pub.Send([]byte("logs.x"), body) != nil {
				return
			}
		}
		_ = pub.Flush()
	}()

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := range 20 {
		<-tick.C
		want := fmt.Sprintf("c%d", i)
		ping := append([]byte{0x04, byte(7 + len(want)), 4, 'P', 'I', 'N', 'G', 0, 10}, want...)
		_, err := c.Write(ping)
		must(t, err)
		select {
		case got := <-pongs:
			if got != want {
				t.Fatalf("PONG context %q, want %q", got, want)
			}
		case err := <-parsed:
			t.Fatalf("stream ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatalf("no PONG for ping %d", i)
		}
	}
	if got := e.counter("disconnects", bus.DisconnectIdle); got != 0 {
		t.Fatalf("a connection that pings was closed as idle")
	}
}

// The bus client's heartbeats keep its quiet connections open past the
// broker's idle_timeout; without them the broker closes both.
func TestClientHeartbeatsKeepConnections(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "idle_timeout: 200ms"))
	ctx := ctxT(t, 20*time.Second)
	quiet := e.client(t, bus.Options{Name: "quiet", Heartbeat: 50 * time.Millisecond})
	_, err := quiet.Subscribe(ctx, "nothing.")
	must(t, err)
	must(t, quiet.Sync(ctx)) // both connections up
	// Four idle timeouts of silence but for the heartbeats.
	<-time.After(800 * time.Millisecond)
	if got := e.counter("disconnects", bus.DisconnectIdle); got != 0 {
		t.Fatalf("%v connections of a client with heartbeats closed as idle", got)
	}

	silent := e.client(t, bus.Options{Name: "silent", Heartbeat: -1})
	_, err = silent.Subscribe(ctx, "nothing.")
	must(t, err)
	must(t, silent.Sync(ctx))
	eventually(t, 5*time.Second, "the silent client's connections closed as idle", func() bool {
		return e.counter("disconnects", bus.DisconnectIdle) >= 2
	})
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

// A message must arrive whole within message_timeout of its first header:
// a peer that stops in the middle is disconnected and counted, and one
// that keeps sending whole messages is not.
func TestSlowMessageTimesOut(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "message_timeout: 300ms"))
	ctx := ctxT(t, 20*time.Second)
	slow := rawPeer(t, e.cfg.PublishAddress, zmq4.Pub)
	// A topic frame, then an envelope frame of 100 bytes of which 10 come.
	_, err := slow.Write(append([]byte{0x01, 4, 'l', 'o', 'g', 's', 0x00, 100}, make([]byte, 10)...))
	must(t, err)

	busy, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{})
	must(t, err)
	defer busy.Close()
	body := mustMarshal(t, &busv1.Envelope{Id: "tick", Source: "busy"})
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range 16 {
		<-tick.C
		must(t, busy.SendFlush([]byte("logs.info.busy"), body))
	}
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, slow); err != nil {
		t.Fatalf("the stopped message's connection was not closed: %v", err)
	}
	eventually(t, 5*time.Second, "the busy publisher's messages in", func() bool {
		return e.counter("messages", "in", "logs") == 16
	})
	if got := e.counter("disconnects", bus.DisconnectMessageTimeout); got != 1 {
		t.Fatalf("message_timeout disconnects %v, want 1", got)
	}
}
