package probes_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/vitals-dev/vitals/internal/h1"
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

// redirector answers with each redirect status, with none without a
// Location, and elsewhere with what it was sent: method, Accept, body.
// conns, when not nil, counts its connections.
func redirector(t *testing.T, other string, conns *atomic.Int32) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var code int
		if _, err := fmt.Sscanf(r.URL.Path, "/%d", &code); err == nil {
			http.Redirect(w, r, "/echo?from="+r.URL.Path, code)
			return
		}
		switch r.URL.Path {
		case "/noloc":
			w.WriteHeader(http.StatusFound)
			io.WriteString(w, "no location")
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/away":
			http.Redirect(w, r, other+"/x", http.StatusFound)
		default:
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %s %q", r.Method, r.URL.RequestURI(), r.Header.Get("Accept"), b)
		}
	}))
	if conns != nil {
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// TestDoFollowsRedirectsAsClientDo sends each redirect through Do and
// through http.Client.Do with the same policy, over net/http's transport
// and h1's: the same answer or the same error. Do follows them with the
// client's own code from the redirect it has read, so each request is
// sent once.
func TestDoFollowsRedirectsAsClientDo(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "other") }))
	t.Cleanup(other.Close)
	srv := redirector(t, other.URL, nil)
	transports := map[string]http.RoundTripper{
		"net/http": &http.Transport{},
		"h1":       &h1.Transport{Fallback: http.DefaultTransport, MaxIdleConnsPerHost: 4},
	}
	for name, tr := range transports {
		t.Cleanup(tr.(interface{ CloseIdleConnections() }).CloseIdleConnections)
		for _, tc := range []struct{ method, path, body string }{
			{"GET", "/301", ""},
			{"GET", "/302", ""},
			{"GET", "/303", ""},
			{"GET", "/307", ""},
			{"GET", "/308", ""},
			{"POST", "/302", "b"}, // GET, no body
			{"POST", "/303", "b"}, // GET, no body
			{"POST", "/307", "b"}, // POST again, with the body
			{"POST", "/308", "b"},
			{"GET", "/noloc", ""}, // the answer as it is
			{"GET", "/loop", ""},
			{"GET", "/away", ""},
			{"GET", "/echo", ""},
		} {
			t.Run(name+" "+tc.method+" "+tc.path, func(t *testing.T) {
				send := func(do func(*http.Request) (*http.Response, error)) (string, error) {
					var body io.Reader
					if tc.body != "" {
						body = bytes.NewReader([]byte(tc.body)) // GetBody set: 307 and 308 can resend it
					}
					req, err := http.NewRequest(tc.method, srv.URL+tc.path, body)
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Accept", "application/json")
					resp, err := do(req)
					if err != nil {
						return "", err
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					return fmt.Sprintf("%d %s", resp.StatusCode, b), err
				}
				c := &http.Client{Transport: tr}
				got, gotErr := send(func(r *http.Request) (*http.Response, error) { return probes.Do(c, r, 1<<20) })
				want, wantErr := send((&http.Client{Transport: tr, CheckRedirect: probes.SameHostRedirect}).Do)
				if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Errorf("Do = %q, %v; Client.Do = %q, %v", got, gotErr, want, wantErr)
				}
				if (tc.path == "/loop" || tc.path == "/away") && !errors.Is(gotErr, probes.ErrRedirect) {
					t.Errorf("Do = %v, want ErrRedirect", gotErr)
				}
				if strings.HasPrefix(tc.path, "/30") && !strings.Contains(got, "/echo?from="+tc.path) {
					t.Errorf("Do = %q, %v; want the redirect followed", got, gotErr)
				}
			})
		}
	}
}

// recording is a transport that remembers the requests it was handed.
type recording struct {
	rt   http.RoundTripper
	reqs []*http.Request
}

func (r *recording) RoundTrip(req *http.Request) (*http.Response, error) {
	r.reqs = append(r.reqs, req)
	return r.rt.RoundTrip(req)
}

// TestDoHandsTheRequestToTheTransport: a request that is no redirect
// reaches the transport as it was given, header and all, not a copy; a
// redirect's reuses the connection its redirect came on.
func TestDoHandsTheRequestToTheTransport(t *testing.T) {
	var conns atomic.Int32
	srv := redirector(t, "", &conns)
	tr := &h1.Transport{Fallback: http.DefaultTransport, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	rec := &recording{rt: tr}
	c := &http.Client{Transport: rec}
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := probes.Do(c, req, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if len(rec.reqs) != 1 || rec.reqs[0] != req {
		t.Fatalf("the transport was handed %v, want the request itself", rec.reqs)
	}
	for range 3 {
		if _, err := probes.Fetch(context.Background(), c, http.MethodGet, srv.URL+"/302", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for a request and 3 redirects, want 1", n)
	}
	if len(rec.reqs) != 7 {
		t.Errorf("%d requests sent, want 7 (1, and 3 redirects of 2)", len(rec.reqs))
	}
}

// TestDoErrorsAreClientDos: a refused connection, a canceled request and
// TLS to a plain-HTTP server fail as Client.Do fails.
func TestDoErrorsAreClientDos(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/"
	ln.Close()
	plain := redirector(t, "", nil)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tr := &h1.Transport{Fallback: &http.Transport{}, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	for _, tc := range []struct {
		name, method, url string
		ctx               context.Context
	}{
		{"refused", http.MethodGet, refused, context.Background()},
		{"refused POST", http.MethodPost, refused, context.Background()},
		{"canceled", http.MethodGet, plain.URL, canceled},
		{"TLS to plain HTTP", http.MethodGet, strings.Replace(plain.URL, "http:", "https:", 1), context.Background()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send := func(do func(*http.Request) (*http.Response, error)) error {
				req, err := http.NewRequestWithContext(tc.ctx, tc.method, tc.url, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := do(req)
				if err == nil {
					resp.Body.Close()
				}
				return err
			}
			c := &http.Client{Transport: tr}
			got := send(func(r *http.Request) (*http.Response, error) { return probes.Do(c, r, 1<<20) })
			want := send((&http.Client{Transport: tr, CheckRedirect: probes.SameHostRedirect}).Do)
			var ue *url.Error
			if got == nil || fmt.Sprint(got) != fmt.Sprint(want) || !errors.As(got, &ue) {
				t.Errorf("Do = %v; Client.Do = %v", got, want)
			}
			if tc.name == "TLS to plain HTTP" && !errors.Is(got, http.ErrSchemeMismatch) {
				t.Errorf("Do = %v, want http.ErrSchemeMismatch", got)
			}
		})
	}
}

// TestDoSendsURLCredentials: credentials in a URL go as basic auth, as
// with Client.Do.
func TestDoSendsURLCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "secret" {
			http.Error(w, "no credentials", http.StatusUnauthorized)
		}
	}))
	t.Cleanup(srv.Close)
	u := strings.Replace(srv.URL, "http://", "http://user:secret@", 1)
	if err := probes.Get(context.Background(), client(t), u); err != nil {
		t.Fatalf("GET with credentials in the URL = %v", err)
	}
}

// TestDoWithACookieJar: the jar's cookies go to their server's requests
// only, though the probes' requests share one header map.
func TestDoWithACookieJar(t *testing.T) {
	cookies := make(chan string, 4)
	handler := func(w http.ResponseWriter, r *http.Request) {
		cookies <- r.Header.Get("Cookie")
		http.SetCookie(w, &http.Cookie{Name: "session", Value: r.Host})
	}
	a := httptest.NewServer(http.HandlerFunc(handler))
	t.Cleanup(a.Close)
	b := httptest.NewServer(http.HandlerFunc(handler))
	t.Cleanup(b.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t)
	c.Jar = jar
	// b as localhost: another host for the jar, whose cookies of
	// 127.0.0.1 are not its.
	bURL := strings.Replace(b.URL, "127.0.0.1", "localhost", 1)
	for _, u := range []string{a.URL, a.URL, bURL} {
		if err := probes.Get(context.Background(), c, u); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"", "session=" + strings.TrimPrefix(a.URL, "http://"), ""}
	for i, w := range want {
		if got := <-cookies; got != w {
			t.Errorf("request %d: Cookie %q, want %q", i+1, got, w)
		}
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
