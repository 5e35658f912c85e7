package extmanager

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/probes"
)

// listenEnv makes the test binary a child process that listens on the
// address it names, prints the port it got and waits to be killed.
const listenEnv = "VITALS_TEST_LISTEN"

func TestHelperListener(t *testing.T) {
	addr := os.Getenv(listenEnv)
	if addr == "" {
		t.Skip("only a child process of TestPIDCacheFollowsRestarts listens")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	select {} // until killed
}

// listener starts a child process listening on addr and returns it and
// its port.
func listener(t *testing.T, addr string) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperListener$")
	cmd.Env = append(os.Environ(), listenEnv+"="+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("child listener said %q (%v)", line, err)
	}
	return cmd, port
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // reaped: its PID may be given again
}

// A server found by its port is found again when it restarts: the PID of
// a killed server is never reported (its CPU and memory would freeze, or
// be another process's), nor is anything while nobody listens, and the
// new server's PID is reported at once.
func TestPIDCacheFollowsRestarts(t *testing.T) {
	c := newPIDCache()
	at := time.Now()
	c.now = func() time.Time { return at }
	later := func() { at = at.Add(socketsAge) } // the socket table is read again
	first, port := listener(t, "127.0.0.1:0")
	pid, err := c.lookup(port)
	if err != nil || pid != first.Process.Pid {
		t.Fatalf("lookup = %d, %v, want %d", pid, err, first.Process.Pid)
	}
	if again, _ := c.lookup(port); again != pid {
		t.Fatalf("second lookup = %d, want %d", again, pid)
	}

	kill(t, first)
	later()
	if pid, err := c.lookup(port); !errors.Is(err, probes.ErrNoListener) || pid != 0 {
		t.Fatalf("after the kill: lookup = %d, %v, want no listener", pid, err)
	}

	second, _ := listener(t, fmt.Sprintf("127.0.0.1:%d", port))
	later()
	if pid, err := c.lookup(port); err != nil || pid != second.Process.Pid {
		t.Fatalf("after the restart: lookup = %d, %v, want the new process %d (the old one was %d)", pid, err, second.Process.Pid, first.Process.Pid)
	}
}

// A cached answer is checked at every lookup, and only a changed listener
// or process costs a scan of every process.
func TestPIDCacheChecksItsAnswer(t *testing.T) {
	scans, reads := 0, 0
	inodes := []uint64{7}
	start := uint64(100)
	at := time.Now()
	c := &pidCache{
		listening: func() (map[int][]uint64, error) { reads++; return map[int][]uint64{1: inodes}, nil },
		now:       func() time.Time { return at },
		owner:     func(int, []uint64) (int, error) { scans++; return 42, nil },
		start:     func(int) (uint64, error) { return start, nil },
		m:         map[int]pidEntry{},
	}
	for range 5 {
		if pid, err := c.lookup(1); pid != 42 || err != nil {
			t.Fatalf("lookup = %d, %v", pid, err)
		}
	}
	if scans != 1 {
		t.Fatalf("%d scans for an unchanged listener, want 1", scans)
	}
	if reads != 1 {
		t.Fatalf("the socket table read %d times within %v, want once", reads, socketsAge)
	}
	start = 200 // PID 42 is another process now
	c.lookup(1)
	if scans != 2 {
		t.Errorf("a reused PID was not looked up again (%d scans)", scans)
	}
	inodes = []uint64{8} // a new listening socket: the server restarted
	c.lookup(1)
	if scans != 2 {
		t.Errorf("a new socket seen before the socket table was read again (%d scans)", scans)
	}
	at = at.Add(socketsAge)
	c.lookup(1)
	if scans != 3 {
		t.Errorf("a new socket was not looked up again (%d scans)", scans)
	}
}

// Lookups of a port asked for while one of it runs share the next one,
// which checks the process after they asked: a server restarted while the
// first lookup ran is seen by all of them, and the start time is read
// twice for six lookups, not six times.
func TestPIDCacheSharesLookups(t *testing.T) {
	var reads atomic.Int32
	inside, release := make(chan struct{}), make(chan struct{})
	var start atomic.Uint64
	c := &pidCache{
		listening: func() (map[int][]uint64, error) { return map[int][]uint64{1: {7}}, nil },
		owner:     func(int, []uint64) (int, error) { return 42, nil },
		start: func(int) (uint64, error) {
			if reads.Add(1) == 1 {
				close(inside)
				<-release
				return 100, nil // as it was when the first lookup read it
			}
			return start.Load(), nil
		},
		m: map[int]pidEntry{},
	}
	first := make(chan error, 1)
	go func() {
		_, err := c.lookup(1)
		first <- err
	}()
	<-inside // the first lookup reads the start time
	const callers = 5
	answers := make(chan int, callers)
	for range callers {
		go func() {
			pid, _ := c.lookup(1)
			answers <- pid
		}()
	}
	agenttest.Eventually(t, 10*time.Second, "the later lookups wait for the next one", func() bool {
		c.fmu.Lock()
		defer c.fmu.Unlock()
		f := c.next[1]
		return f != nil && f.waiting == callers-1
	})
	start.Store(200) // PID 42 is another process now: the next lookup must see it
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range callers {
		if pid := <-answers; pid != 42 {
			t.Fatalf("a shared lookup = %d, want 42", pid)
		}
	}
	if e := c.m[1]; e.start != 200 {
		t.Fatalf("the shared lookup kept start time %d, want the process seen after the callers asked (200)", e.start)
	}
	// The first lookup: one read; the shared one: the reused PID's read,
	// then the new process's after its scan.
	if n := reads.Load(); n != 3 {
		t.Fatalf("the start time read %d times for %d lookups, want 3", n, callers+1)
	}
}

// Lookups of many ports within socketsAge share one read of every
// listener: a hundred local servers checked every second are one dump of
// the listening sockets a second, not a hundred. A port nobody listens on
// is ErrNoListener.
func TestPIDCacheReadsListenersOnceForAllPorts(t *testing.T) {
	reads := 0
	at := time.Now()
	ports := map[int][]uint64{}
	for p := 1; p <= 100; p++ {
		ports[p] = []uint64{uint64(1000 + p)}
	}
	c := &pidCache{
		listening: func() (map[int][]uint64, error) { reads++; return ports, nil },
		now:       func() time.Time { return at },
		owner:     func(port int, _ []uint64) (int, error) { return 10000 + port, nil },
		start:     func(int) (uint64, error) { return 1, nil },
		m:         map[int]pidEntry{},
	}
	for p := 1; p <= 100; p++ {
		if pid, err := c.lookup(p); pid != 10000+p || err != nil {
			t.Fatalf("port %d: lookup = %d, %v, want %d", p, pid, err, 10000+p)
		}
	}
	if reads != 1 {
		t.Fatalf("the listeners read %d times for 100 ports within %v, want once", reads, socketsAge)
	}
	if pid, err := c.lookup(101); !errors.Is(err, probes.ErrNoListener) {
		t.Errorf("a port nobody listens on: %d, %v, want ErrNoListener", pid, err)
	}
	at = at.Add(socketsAge)
	if _, err := c.lookup(1); err != nil || reads != 2 {
		t.Errorf("after %v: %v, %d reads, want a second read", socketsAge, err, reads)
	}
}
