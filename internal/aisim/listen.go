package aisim

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// Endpoint serves a Server on an address the way the real engine listens:
// the kinds that open their port only once their model is loaded (all but
// llama.cpp and Ollama) have it closed while the server loads, so clients
// see their connections refused, and opened again on the same address
// when the load ends (start-up, Reload, the Loading knob).
type Endpoint struct {
	s       *Server
	addr    string
	stop    chan struct{}
	runDone chan struct{}  // closed when run returns
	wg      sync.WaitGroup // the Serve goroutines

	mu  sync.Mutex
	srv *http.Server
	err error
}

// listensWhileLoading reports whether the kind answers during a load.
func (s *Server) listensWhileLoading() bool {
	return s.cfg.Kind == probes.KindLlamaCpp || s.cfg.Kind == probes.KindOllama
}

// Listen binds addr (port 0 picks a free one, kept across loads) and
// serves s there until Close.
func (s *Server) Listen(addr string) (*Endpoint, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("aisim: listen %s: %w", addr, err)
	}
	e := &Endpoint{s: s, addr: ln.Addr().String(), stop: make(chan struct{}), runDone: make(chan struct{})}
	if !s.listensWhileLoading() && s.Loading() {
		_ = ln.Close()
	} else {
		e.serve(ln)
	}
	go e.run()
	return e, nil
}

// Addr returns the address served, host:port.
func (e *Endpoint) Addr() string { return e.addr }

// URL returns the base URL, http://host:port.
func (e *Endpoint) URL() string { return "http://" + e.addr }

// Err returns the last error opening the port again, if any.
func (e *Endpoint) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *Endpoint) serve(ln net.Listener) {
	srv := &http.Server{Handler: e.s, ReadHeaderTimeout: 10 * time.Second}
	e.mu.Lock()
	e.srv = srv
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = srv.Serve(ln)
	}()
}

// run opens and closes the port as loads begin and end.
func (e *Endpoint) run() {
	defer close(e.runDone)
	for {
		e.s.mu.Lock()
		changed := e.s.changedLocked()
		left := time.Until(e.s.loadUntil)
		e.s.mu.Unlock()
		want := e.s.listensWhileLoading() || !e.s.Loading()
		e.mu.Lock()
		up := e.srv != nil
		e.mu.Unlock()
		switch {
		case want && !up:
			ln, err := net.Listen("tcp", e.addr)
			e.mu.Lock()
			e.err = err
			e.mu.Unlock()
			if err == nil {
				e.serve(ln)
			} else {
				left = 10 * time.Millisecond // the port is taken for now; try again
			}
		case !want && up:
			e.closeServer()
		}
		if left <= 0 {
			left = time.Hour // until the next change
		}
		t := time.NewTimer(left)
		select {
		case <-changed:
		case <-t.C:
		case <-e.stop:
			t.Stop()
			return
		}
		t.Stop()
	}
}

func (e *Endpoint) closeServer() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Close stops serving; it does not close the Server. It is safe to call
// more than once. The port loop ends first, so that it cannot open the
// port again once the server is closed.
func (e *Endpoint) Close() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.runDone
	e.closeServer()
	e.wg.Wait()
}
