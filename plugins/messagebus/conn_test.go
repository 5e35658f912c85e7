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
