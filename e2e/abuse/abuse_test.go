//go:build abuse

package abuse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/e2e/e2etest"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// agent is one vitals process under test.
type agent struct {
	proc     *e2etest.Proc
	pid      int
	base     string // http://127.0.0.1:PORT
	httpAddr string
	pub, sub string // the bus's host:port
}

const configTemplate = `core:
  log: {level: warn}
  lifecycle: {watch_config: false}
  api_gateway:
    listen: %[1]s
    plugins:
      message_bus:
        required: true
        publish_address: tcp://%[2]s
        subscribe_address: tcp://%[3]s
        permissions:
          extmanager:
            publish: ["extmanager.", "health.", "alerts.", "logs."]
            subscribe: ["plugin.", "health.", "extmanager."]
          security: {publish: ["security.", "logs.", "audit."], subscribe: ["security.", "logs.", "plugin."]}
          routing: {publish: ["routing.", "logs.", "health.request."], subscribe: ["routing."]}
      log_consumer: {path: %[4]s/logs.db}
      security: {audit: {path: %[4]s/audit.db}}
      rate_limiting:
        api: {rate: 20, burst: 40}
        bus: {rate: 500, burst: 1000}
      validation: {}
      routing: {default_timeout: 5s}
      extmanager:
        directory: ""
        health: {interval: 10s, history: {path: %[4]s/ai-health.db}}
`

func startAgent(t *testing.T, bin string) *agent {
	t.Helper()
	dir := t.TempDir()
	a := &agent{httpAddr: e2etest.Addr(t), pub: e2etest.Addr(t), sub: e2etest.Addr(t)}
	a.base = "http://" + a.httpAddr
	cfg := filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, configTemplate, a.httpAddr, a.pub, a.sub, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	a.proc = e2etest.Start(t, bin, "--config", cfg)
	a.pid = a.proc.Cmd.Process.Pid
	e2etest.WaitHTTP(context.Background(), t, a.base+"/readyz", 30*time.Second)
	return a
}

// rss and hwm read a process's resident and peak resident memory, in
// bytes; 0 once it is gone.
func rss(pid int) int64 {
	st, _ := e2etest.ProcStatus(pid)
	return int64(st.VmRSS)
}

func hwm(pid int) int64 {
	st, _ := e2etest.ProcStatus(pid)
	return int64(st.VmHWM)
}

// cpu returns a process's user+system CPU seconds; 0 once it is gone.
func cpu(pid int) float64 {
	v, _ := e2etest.ProcCPU(pid)
	return v
}

type result struct {
	name           string
	cpu            float64 // the agent's CPU seconds per second of flood
	idle, peak     int64
	hwm, hwmIdle   int64 // VmHWM after the flood, and before it (start-up's peak)
	sampled        int64 // the largest VmRSS sampled during the flood
	p50, p99, pmax time.Duration
	probes, failed int
	sent           string
	counters       []string
	alive          bool
}

func (r result) ratio() float64 { return float64(r.peak) / float64(r.idle) }

func (r result) goalMet() bool {
	return r.alive && r.ratio() < 2 && r.p99 < 50*time.Millisecond && r.failed == 0
}

func duration(t *testing.T) time.Duration {
	if v := os.Getenv("ABUSE_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 10*time.Minute {
			t.Fatalf("ABUSE_DURATION=%q: want a duration up to 10m", v)
		}
		return d
	}
	return 10 * time.Second
}

// measure starts a fresh agent, lets it settle, runs flood for d while it
// samples RSS and times /livez, and returns what it saw.
func measure(t *testing.T, bin, name string, d time.Duration, flood func(ctx context.Context, a *agent) string) result {
	a := startAgent(t, bin)
	// Idle: the agent settled, no load.
	var idle int64
	for range 30 {
		<-time.After(100 * time.Millisecond)
		idle = rss(a.pid)
	}
	r := result{name: name, idle: idle, hwmIdle: hwm(a.pid)}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var peak atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := rss(a.pid); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var lat []time.Duration
	var failed int
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A new connection per probe, as a kubelet or load balancer makes.
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			start := time.Now()
			resp, err := client.Get(a.base + "/livez")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			if ctx.Err() != nil {
				return // cut by the end of the flood, not by the agent
			}
			lat = append(lat, time.Since(start))
			if err != nil || resp.StatusCode != http.StatusOK {
				failed++
			}
		}
	}()
	cpu0, t0 := cpu(a.pid), time.Now()
	r.sent = flood(ctx, a)
	wg.Wait()
	r.cpu = (cpu(a.pid) - cpu0) / time.Since(t0).Seconds()

	// The peak: the largest VmRSS sampled, or VmHWM if higher (it sees
	// what falls between samples, such as the end of a flood when its
	// connections close at once; before the flood it is the idle agent's).
	r.hwm = hwm(a.pid)
	r.sampled = peak.Load()
	r.peak = max(r.sampled, r.hwm)
	r.probes, r.failed = len(lat), failed
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p50, r.p99, r.pmax = lat[len(lat)/2], lat[(len(lat)*99)/100], lat[len(lat)-1]
	}
	r.alive = !a.proc.Exited()
	if b, err := e2etest.Get(context.Background(), a.base+"/metrics"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			for _, m := range []string{"vitals_bus_disconnects_total", "vitals_bus_refused_total", "vitals_bus_dropped_total", "vitals_bus_malformed_total", "vitals_bus_accept_errors_total", "vitals_bus_throttled_total", "vitals_http_connections_shed_total"} {
				if strings.HasPrefix(line, m) {
					r.counters = append(r.counters, line)
				}
			}
		}
	}
	return r
}

// TestAbuse runs every flood against its own agent and prints the table.
func TestAbuse(t *testing.T) {
	d := duration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := e2etest.Build(ctx, t, t.TempDir(), "./cmd/vitals")

	floods := []struct {
		name  string
		flood func(ctx context.Context, a *agent) string
	}{
		{"bus_multipart", floodMultipart},
		{"bus_prefixes", floodPrefixes},
		{"bus_stalled_subscriber", floodStalled},
		{"bus_announce", floodAnnounce},
		{"bus_idle_connections", floodIdleBus},
		{"bus_slow_messages", floodSlowMessages},
		{"http_idle_connections", floodIdleHTTP},
	}
	var results []result
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			r := measure(t, bin, f.name, d, f.flood)
			results = append(results, r)
			t.Logf("%s: idle %.1f MiB, peak %.1f MiB (%.2fx), VmHWM %.1f MiB (%.1f MiB before the flood); /livez p50 %s p99 %s max %s over %d probes, %d failed; agent CPU %.2f cores; sent %s; alive %v",
				r.name, mib(r.idle), mib(r.peak), r.ratio(), mib(r.hwm), mib(r.hwmIdle), ms(r.p50), ms(r.p99), ms(r.pmax), r.probes, r.failed, r.cpu, r.sent, r.alive)
			for _, c := range r.counters {
				t.Logf("  %s", c)
			}
			if !r.alive {
				t.Errorf("the agent died during %s", r.name)
			}
			if r.probes == 0 {
				t.Errorf("no /livez probe finished during %s", r.name)
			}
			if os.Getenv("ABUSE_STRICT") == "1" && !r.goalMet() {
				t.Errorf("%s misses the goal (RSS under 2x idle, /livez p99 under 50 ms, none failed)", r.name)
			}
		})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nfloods of %s each, a fresh agent for each\n\n", d)
	b.WriteString("| flood | idle RSS | peak RSS | peak/idle | sampled VmRSS peak, VmHWM before | /livez p50 | p99 | max | probes (failed) | agent CPU | goal | sent |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		goal := "met"
		if !r.goalMet() {
			goal = "**missed**"
		}
		fmt.Fprintf(&b, "| %s | %.1f MiB | %.1f MiB | %.2fx | %.1f, %.1f MiB | %s | %s | %s | %d (%d) | %.2f cores | %s | %s |\n",
			r.name, mib(r.idle), mib(r.peak), r.ratio(), mib(r.sampled), mib(r.hwmIdle), ms(r.p50), ms(r.p99), ms(r.pmax), r.probes, r.failed, r.cpu, goal, r.sent)
	}
	t.Log(b.String())
}

func mib(v int64) float64 { return float64(v) / (1 << 20) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// zmtpPeer connects to a bus socket as a ZeroMQ socket of type typ with
// NULL security and returns the bare connection after the handshake.
func zmtpPeer(ctx context.Context, addr string, typ zmq4.SocketType) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := zmq4.Open(c, null.Security(), typ, zmq4.SocketIdentity(nil), false, nil); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// writeFrame writes one ZMTP frame.
func writeFrame(w *bufio.Writer, more bool, body []byte) {
	var flag byte
	if more {
		flag = 0x01
	}
	if len(body) > 255 {
		var h [9]byte
		h[0] = flag | 0x02
		binary.BigEndian.PutUint64(h[1:], uint64(len(body)))
		_, _ = w.Write(h[:])
	} else {
		_ = w.WriteByte(flag)
		_ = w.WriteByte(byte(len(body)))
	}
	_, _ = w.Write(body)
}

// workers runs n copies of f until ctx is done.
func workers(ctx context.Context, n int, f func(ctx context.Context, i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx, i)
		}()
	}
	wg.Wait()
}

// closeOnDone closes c when ctx ends, so blocked writes and reads return.
func closeOnDone(ctx context.Context, c net.Conn) func() bool {
	return context.AfterFunc(ctx, func() { _ = c.Close() })
}

// floodMultipart: publishers that send one endless multipart message of
// empty frames, reconnecting whenever the broker drops them.
func floodMultipart(ctx context.Context, a *agent) string {
	var bytesSent, conns atomic.Int64
	chunk := bytes.Repeat([]byte{0x01, 0x00}, 32<<10)
	workers(ctx, 4, func(ctx context.Context, _ int) {
		for ctx.Err() == nil {
			c, err := zmtpPeer(ctx, a.pub, zmq4.Pub)
			if err != nil {
				continue
			}
			conns.Add(1)
			stop := closeOnDone(ctx, c)
			for {
				n, err := c.Write(chunk)
				bytesSent.Add(int64(n))
				if err != nil {
					break
				}
			}
			stop()
			_ = c.Close()
		}
	})
	return fmt.Sprintf("%d MiB of empty frames on %d connections", bytesSent.Load()>>20, conns.Load())
}

// floodPrefixes: subscribers that subscribe to ever new 200-byte prefixes.
func floodPrefixes(ctx context.Context, a *agent) string {
	var subs, conns atomic.Int64
	pad := strings.Repeat("p", 200)
	workers(ctx, 4, func(ctx context.Context, i int) {
		n := 0
		for ctx.Err() == nil {
			c, err := zmtpPeer(ctx, a.sub, zmq4.Sub)
			if err != nil {
				continue
			}
			conns.Add(1)
			stop := closeOnDone(ctx, c)
			w := bufio.NewWriterSize(c, 64<<10)
			for ctx.Err() == nil {
				n++
				writeFrame(w, false, fmt.Appendf([]byte{1}, "flood.%s.%d.%d", pad, i, n))
				if n%1000 == 0 {
					if w.Flush() != nil {
						break
					}
					subs.Add(1000)
				}
			}
			stop()
			_ = c.Close()
		}
	})
	return fmt.Sprintf("%d subscriptions of 220 bytes on %d connections", subs.Load(), conns.Load())
}

// envelope encodes a valid envelope.
func envelope(id, source, contentType string, payload []byte) []byte {
	b, err := proto.Marshal(&busv1.Envelope{Id: id, Source: source, Time: timestamppb.Now(), ContentType: contentType, Payload: payload})
	if err != nil {
		panic(err)
	}
	return b
}

// floodStalled: eight subscribers to everything that never read, and two
// publishers sending 16 KiB messages as fast as the broker takes them,
// from 1000 sources so no per-source rate limit stops them.
func floodStalled(ctx context.Context, a *agent) string {
	var stalled []net.Conn
	for range 8 {
		c, err := zmtpPeer(ctx, a.sub, zmq4.Sub)
		if err != nil {
			return "subscriber: " + err.Error()
		}
		defer c.Close()
		if _, err := c.Write([]byte{0, 1, 1}); err != nil {
			return "subscribe: " + err.Error()
		}
		stalled = append(stalled, c)
	}
	var msgs atomic.Int64
	payload := make([]byte, 16<<10)
	workers(ctx, 2, func(ctx context.Context, i int) {
		n := 0
		for ctx.Err() == nil {
			c, err := zmtpPeer(ctx, a.pub, zmq4.Pub)
			if err != nil {
				continue
			}
			stop := closeOnDone(ctx, c)
			w := bufio.NewWriterSize(c, 64<<10)
			for ctx.Err() == nil {
				n++
				src := fmt.Sprintf("flood-%d", n%1000)
				writeFrame(w, true, []byte("flood.data."+src))
				writeFrame(w, false, envelope(fmt.Sprintf("f%d-%d", i, n), src, "application/octet-stream", payload))
				if n%16 == 0 {
					if w.Flush() != nil {
						break
					}
					msgs.Add(16)
				}
			}
			stop()
			_ = c.Close()
		}
	})
	return fmt.Sprintf("%d messages of 16 KiB (%d MiB) to 8 stalled subscribers", msgs.Load(), msgs.Load()*16>>10)
}

// floodAnnounce: publishers announcing ever new plugins.
func floodAnnounce(ctx context.Context, a *agent) string {
	var msgs atomic.Int64
	workers(ctx, 2, func(ctx context.Context, i int) {
		n := 0
		for ctx.Err() == nil {
			c, err := zmtpPeer(ctx, a.pub, zmq4.Pub)
			if err != nil {
				continue
			}
			stop := closeOnDone(ctx, c)
			w := bufio.NewWriterSize(c, 64<<10)
			for ctx.Err() == nil {
				n++
				name := fmt.Sprintf("flood%d_%07d", i, n)
				m, _ := bus.NewProto(&busv1.Announce{
					Name: name, Version: "1.0.0", Description: "announce flood", Capabilities: []string{"flood"},
					Pid: int32(100000 + n), HeartbeatIntervalMs: 1000,
				})
				writeFrame(w, true, []byte("plugin.announce"))
				writeFrame(w, false, envelope(name+"-1", name, m.ContentType, m.Payload))
				if n%64 == 0 {
					if w.Flush() != nil {
						break
					}
					msgs.Add(64)
				}
			}
			stop()
			_ = c.Close()
		}
	})
	return fmt.Sprintf("%d announcements of distinct plugins", msgs.Load())
}

// floodIdleBus: 1000 clients holding connections to both bus sockets,
// half after a complete handshake and half without sending a byte, each
// reopening when the broker closes it.
func floodIdleBus(ctx context.Context, a *agent) string {
	var opened atomic.Int64
	workers(ctx, 1000, func(ctx context.Context, i int) {
		addr, typ := a.pub, zmq4.Pub
		if i%4 >= 2 {
			addr, typ = a.sub, zmq4.Sub
		}
		var d net.Dialer
		for ctx.Err() == nil {
			var c net.Conn
			var err error
			if i%2 == 0 {
				c, err = zmtpPeer(ctx, addr, typ)
			} else {
				c, err = d.DialContext(ctx, "tcp", addr)
			}
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			opened.Add(1)
			stop := closeOnDone(ctx, c)
			_, _ = io.Copy(io.Discard, c)
			stop()
			_ = c.Close()
		}
	})
	return fmt.Sprintf("%d connections opened by 1000 clients", opened.Load())
}

// floodSlowMessages: 200 publishers that each start a 1 MiB message and
// send its body a byte every 100 ms, reconnecting when dropped.
func floodSlowMessages(ctx context.Context, a *agent) string {
	var started atomic.Int64
	header := []byte{0x02, 0, 0, 0, 0, 0, 0x0f, 0xff, 0x00} // one long frame of 1 MiB - 256 bytes
	workers(ctx, 200, func(ctx context.Context, _ int) {
		for ctx.Err() == nil {
			c, err := zmtpPeer(ctx, a.pub, zmq4.Pub)
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			stop := closeOnDone(ctx, c)
			if _, err := c.Write(header); err == nil {
				started.Add(1)
				tick := time.NewTicker(100 * time.Millisecond)
				for ctx.Err() == nil {
					<-tick.C
					if _, err := c.Write([]byte{'x'}); err != nil {
						break
					}
				}
				tick.Stop()
			}
			stop()
			_ = c.Close()
		}
	})
	return fmt.Sprintf("%d messages of 1 MiB started, a byte every 100 ms", started.Load())
}

// floodIdleHTTP: 2000 connections to the HTTP listener, half silent and
// half stopping in the middle of their headers, each reopened when the
// agent closes it.
func floodIdleHTTP(ctx context.Context, a *agent) string {
	var opened atomic.Int64
	partial := []byte("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	workers(ctx, 2000, func(ctx context.Context, i int) {
		var d net.Dialer
		for ctx.Err() == nil {
			c, err := d.DialContext(ctx, "tcp", a.httpAddr)
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			opened.Add(1)
			stop := closeOnDone(ctx, c)
			if i%2 == 1 {
				_, _ = c.Write(partial)
			}
			_, _ = io.Copy(io.Discard, c) // until the agent or the end of the flood closes it
			stop()
			_ = c.Close()
		}
	})
	return fmt.Sprintf("%d connections opened by 2000 clients", opened.Load())
}
