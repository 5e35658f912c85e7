//go:build linux

package discovery_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/discovery"
)

// Prometheus' DNS discoverer asks the name servers of /etc/resolv.conf on
// port 53 and takes no name server in its config. So that it asks a DNS
// server in the test, and only on loopback, TestDNSSD runs itself again
// in new mount and network namespaces: there /etc/resolv.conf is a file
// of the test's, bind-mounted, that names 127.0.0.1, and the only
// network is the namespace's own loopback, where the test's server
// (github.com/miekg/dns) answers on port 53. The child is marked with
// inNamespaceEnv.

func TestDNSSD(t *testing.T) {
	if os.Getenv(inNamespaceEnv) == "" {
		reexecInNamespaces(t)
		return
	}
	if err := isolateResolver(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	srv := startDNS(t)
	srv.set(map[string][]dns.RR{
		"_llm._tcp.vitals.test.": {
			srvRR("_llm._tcp.vitals.test.", "llm-0.vitals.test.", 8000),
			srvRR("_llm._tcp.vitals.test.", "llm-1.vitals.test.", 8001),
		},
		"ollama.vitals.test.": {aRR("ollama.vitals.test.", "127.0.0.11"), aRR("ollama.vitals.test.", "127.0.0.12")},
	})
	h := run(t, `
dns_sd_configs:
  - names: [_llm._tcp.vitals.test]
    refresh_interval: 100ms
  - names: [ollama.vitals.test]
    type: A
    port: 11434
    refresh_interval: 100ms
relabel_configs:
  - source_labels: [__meta_dns_name]
    regex: ollama.*
    target_label: __vitals_kind__
    replacement: ollama
`, discovery.Shard{})
	h.waitIDs("127.0.0.11-11434,127.0.0.12-11434,llm-0.vitals.test-8000,llm-1.vitals.test-8001")
	for _, tg := range h.last() {
		if (tg.Kind == "ollama") != (tg.Source == "dns_sd_configs[1]") {
			t.Errorf("target %+v: kind from relabel wrong", tg)
		}
	}

	// Records change: an SRV target goes, an A record comes.
	srv.set(map[string][]dns.RR{
		"_llm._tcp.vitals.test.": {srvRR("_llm._tcp.vitals.test.", "llm-1.vitals.test.", 8001)},
		"ollama.vitals.test.":    {aRR("ollama.vitals.test.", "127.0.0.12"), aRR("ollama.vitals.test.", "127.0.0.13")},
	})
	h.waitIDs("127.0.0.12-11434,127.0.0.13-11434,llm-1.vitals.test-8001")

	// The server fails: last good targets stay, errors are counted.
	srv.fail(true)
	agenttest.Eventually(t, 15*time.Second, "dns_sd errors counted", func() bool {
		return h.errors("dns_sd_configs[0]") >= 1 && h.errors("dns_sd_configs[1]") >= 1
	})
	if got := h.ids(); got != "127.0.0.12-11434,127.0.0.13-11434,llm-1.vitals.test-8001" {
		t.Errorf("while failing: targets %s, want the last good ones", got)
	}
	srv.fail(false)
	srv.set(map[string][]dns.RR{"_llm._tcp.vitals.test.": {srvRR("_llm._tcp.vitals.test.", "llm-2.vitals.test.", 8002)}})
	h.waitIDs("llm-2.vitals.test-8002")
}

// reexecInNamespaces runs TestDNSSD in a child in new namespaces.
func reexecInNamespaces(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDNSSD$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), inNamespaceEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
	if os.Getuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	out, err := cmd.CombinedOutput()
	var pe *os.PathError
	if errors.As(err, &pe) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		t.Skipf("the DNS test needs mount and network namespaces, which this system refuses: %v", err)
	}
	if err != nil {
		t.Fatalf("TestDNSSD in namespaces: %v\n%s", err, out)
	}
	t.Logf("in namespaces:\n%s", out)
}

// isolateResolver bind-mounts a resolv.conf naming 127.0.0.1 over
// /etc/resolv.conf (in this process's own mount namespace) and brings
// the network namespace's loopback up.
func isolateResolver(dir string) error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return err
	}
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		return err
	}
	if err := syscall.Mount(rc, "/etc/resolv.conf", "", syscall.MS_BIND, ""); err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var ifr [40]byte // struct ifreq: name, then flags
	copy(ifr[:], "lo")
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return e
	}
	*(*uint16)(unsafe.Pointer(&ifr[16])) |= syscall.IFF_UP
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return e
	}
	return nil
}

type dnsServer struct {
	mu      sync.Mutex
	records map[string][]dns.RR
	failing bool
}

func (s *dnsServer) set(r map[string][]dns.RR) {
	s.mu.Lock()
	s.records = r
	s.mu.Unlock()
}

func (s *dnsServer) fail(f bool) {
	s.mu.Lock()
	s.failing = f
	s.mu.Unlock()
}

func (s *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	s.mu.Lock()
	switch {
	case s.failing:
		m.Rcode = dns.RcodeServerFailure
	case len(req.Question) == 1:
		q := req.Question[0]
		rrs, ok := s.records[q.Name]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	s.mu.Unlock()
	_ = w.WriteMsg(m)
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	s := &dnsServer{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownContext(ctx)
		<-done
	})
	return s
}

func srvRR(name, target string, port uint16) dns.RR {
	return &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
		Priority: 1, Weight: 1, Port: port, Target: target}
}

func aRR(name, ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.ParseIP(ip)}
}
