package probes_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/vitals-dev/vitals/probes"
)

func TestFetchRedirects(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "other")
	}))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/here", http.StatusFound)
		case "/here":
			io.WriteString(w, "here")
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	c := client(t)

	if b, err := probes.Fetch(ctx, c, http.MethodGet, srv.URL+"/moved", nil); err != nil || string(b) != "here" {
		t.Fatalf("same-host redirect = %q, %v; want it followed", b, err)
	}
	for _, path := range []string{"/away", "/loop"} {
		_, err := probes.Fetch(ctx, c, http.MethodGet, srv.URL+path, nil)
		if !errors.Is(err, probes.ErrRedirect) || probes.Classify(err) != probes.ClassBadResponse {
			t.Fatalf("GET %s = %v, want bad_response wrapping ErrRedirect", path, err)
		}
	}
	// A client that sets its own policy keeps it.
	follow := &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	if b, err := probes.Fetch(ctx, follow, http.MethodGet, srv.URL+"/away", nil); err != nil || string(b) != "other" {
		t.Fatalf("configured cross-host redirect = %q, %v; want it followed", b, err)
	}
}

func TestReadLines(t *testing.T) {
	collect := func(r io.Reader) ([]string, error) {
		var got []string
		err := probes.ReadLines(r, func(l []byte) error { got = append(got, string(l)); return nil })
		return got, err
	}
	got, err := collect(strings.NewReader("a\r\n\nb\nlast"))
	if err != nil || strings.Join(got, "|") != "a||b|last" {
		t.Fatalf("lines = %q, %v", got, err)
	}
	// A reader that fails mid-line: the part line never reaches fn.
	boom := errors.New("boom")
	got, err = collect(io.MultiReader(strings.NewReader("a\npart"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || strings.Join(got, "|") != "a" {
		t.Fatalf("lines = %q, %v; want [a] and the reader's error", got, err)
	}
	long := strings.Repeat("x", probes.MaxLineBytes+1) + "\n"
	if _, err := collect(strings.NewReader(long)); !errors.Is(err, probes.ErrTooLarge) {
		t.Fatalf("a line of %d bytes: %v, want ErrTooLarge", len(long), err)
	}
	n := 0
	err = probes.ReadLines(strings.NewReader("1\n2\n3\n"), func([]byte) error { n++; return probes.ErrStopLines })
	if err != nil || n != 1 {
		t.Fatalf("ErrStopLines: %d lines, %v", n, err)
	}
}

// Get reads a 2xx body to its end on one kept-alive connection, reports a
// non-2xx answer with the start of its body, and bounds the body like Fetch.
func TestGet(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" {
			t.Errorf("Accept = %q", r.Header.Get("Accept"))
		}
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, strings.Repeat("x", 64<<10))
		case "/down":
			http.Error(w, "  model is loading\n", http.StatusServiceUnavailable)
		case "/huge":
			w.Write(make([]byte, probes.MaxBodyBytes+1))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	ctx := context.Background()
	c := client(t)
	for range 3 {
		if err := probes.Get(ctx, c, srv.URL+"/ok"); err != nil {
			t.Fatalf("GET /ok = %v", err)
		}
	}
	var he *probes.HTTPError
	if err := probes.Get(ctx, c, srv.URL+"/down"); !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || he.Body != "model is loading" {
		t.Fatalf("GET /down = %v, want an HTTPError 503 with its body", err)
	}
	if err := probes.Get(ctx, c, srv.URL+"/huge"); !errors.Is(err, probes.ErrTooLarge) {
		t.Fatalf("GET /huge = %v, want ErrTooLarge", err)
	}
	if n := conns.Load(); n > 2 {
		t.Fatalf("%d connections for three GETs of /ok, a 503 and a body too large; want the body read to its end and the connection reused", n)
	}
}
