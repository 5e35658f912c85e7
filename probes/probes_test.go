package probes_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/probestest"
)

func TestMain(m *testing.M) {
	if probestest.FakeOllamaMain() {
		return
	}
	goleak.VerifyTestMain(m)
}

func TestParseKind(t *testing.T) {
	tests := []struct {
		in      string
		want    probes.Kind
		wantErr bool
	}{
		{"", probes.KindAuto, false},
		{"auto", probes.KindAuto, false},
		{" Ollama ", probes.KindOllama, false},
		{"llamacpp", probes.KindLlamaCpp, false},
		{"kserve", probes.KindKServe, false},
		{"unknown", probes.KindUnknown, false},
		{"triton", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := probes.ParseKind(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseKind(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSortCapabilities(t *testing.T) {
	got := probes.SortCapabilities([]probes.Capability{probes.CapTools, probes.CapChat, probes.CapTools, "zzz", probes.CapEmbeddings})
	want := []probes.Capability{probes.CapChat, probes.CapEmbeddings, probes.CapTools, "zzz"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestDetectionFinish(t *testing.T) {
	d := probes.Detection{Models: []probes.Model{
		{ID: "a", Capabilities: []probes.Capability{probes.CapTools, probes.CapChat}},
		{ID: "b", Capabilities: []probes.Capability{probes.CapEmbeddings, probes.CapChat}},
	}}.Finish(probes.CapVision)
	want := []probes.Capability{probes.CapChat, probes.CapEmbeddings, probes.CapVision, probes.CapTools}
	if !slices.Equal(d.Capabilities, want) {
		t.Fatalf("got %v, want %v", d.Capabilities, want)
	}
	if !d.Has(probes.CapVision) || d.Has(probes.CapRerank) {
		t.Fatalf("Has is wrong for %v", d.Capabilities)
	}
}

// client returns an HTTP client whose idle connections are closed when the
// test ends, so goleak sees no transport goroutines.
func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestClassify(t *testing.T) {
	// A listener that is closed at once: connecting to its port is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + ln.Addr().String()
	ln.Close()

	hang, err := aisim.New(aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{Hang: true}})
	if err != nil {
		t.Fatal(err)
	}
	hangSrv := httptest.NewServer(hang)
	t.Cleanup(hangSrv.Close)
	t.Cleanup(hang.Close)

	down, err := aisim.New(aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{Down: true}})
	if err != nil {
		t.Fatal(err)
	}
	downSrv := httptest.NewServer(down)
	t.Cleanup(downSrv.Close)

	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)

	get := func(ctx context.Context, url string) error {
		_, err := probes.Fetch(ctx, client(t), http.MethodGet, url, nil)
		return err
	}

	tests := []struct {
		name string
		err  func(t *testing.T) error
		want probes.ErrorClass
	}{
		{"nil", func(*testing.T) error { return nil }, probes.ClassNone},
		{"refused", func(t *testing.T) error { return get(context.Background(), refusedURL) }, probes.ClassRefused},
		{"timeout", func(t *testing.T) error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			return get(ctx, hangSrv.URL+"/api/version")
		}, probes.ClassTimeout},
		{"canceled", func(t *testing.T) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return get(ctx, hangSrv.URL+"/api/version")
		}, probes.ClassCanceled},
		{"reset", func(t *testing.T) error { return get(context.Background(), downSrv.URL+"/api/version") }, probes.ClassReset},
		{"tls", func(t *testing.T) error { return get(context.Background(), tlsSrv.URL) }, probes.ClassTLS},
		{"http 503", func(*testing.T) error { return fmt.Errorf("x: %w", &probes.HTTPError{Status: 503}) }, probes.ClassHTTP5xx},
		{"http 404", func(*testing.T) error { return &probes.HTTPError{Status: 404} }, probes.ClassBadResponse},
		{"http 400", func(*testing.T) error { return &probes.HTTPError{Status: 400} }, probes.ClassHTTP4xx},
		{"http 401", func(*testing.T) error { return fmt.Errorf("x: %w", &probes.HTTPError{Status: 401}) }, probes.ClassAuth},
		{"http 403", func(*testing.T) error { return &probes.HTTPError{Status: 403} }, probes.ClassAuth},
		{"no match 401", func(*testing.T) error { return probes.NoMatch(&probes.HTTPError{Status: 401}) }, probes.ClassAuth},
		{"decode", func(*testing.T) error { return &probes.DecodeError{What: "x", Err: io.ErrUnexpectedEOF} }, probes.ClassBadResponse},
		{"dns", func(*testing.T) error {
			return fmt.Errorf("get: %w", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true})
		}, probes.ClassDNS},
		{"dns timeout", func(*testing.T) error { return &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true} }, probes.ClassTimeout},
		{"x509", func(*testing.T) error { return fmt.Errorf("get: %w", x509.UnknownAuthorityError{}) }, probes.ClassTLS},
		{"econnreset", func(*testing.T) error { return fmt.Errorf("read: %w", syscall.ECONNRESET) }, probes.ClassReset},
		{"deadline", func(*testing.T) error { return context.DeadlineExceeded }, probes.ClassTimeout},
		{"other", func(*testing.T) error { return errors.New("something else") }, probes.ClassOther},
		{"no match 404", func(*testing.T) error { return probes.NoMatch(&probes.HTTPError{Status: 404}) }, probes.ClassBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err(t)
			if got := probes.Classify(err); got != tt.want {
				t.Fatalf("Classify(%v) = %q, want %q", err, got, tt.want)
			}
		})
	}
}

func TestNoMatch(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantMatch bool
	}{
		{"404", &probes.HTTPError{Status: 404}, true},
		{"decode", &probes.DecodeError{What: "x", Err: io.EOF}, true},
		{"500", &probes.HTTPError{Status: 500}, false},
		{"timeout", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := probes.NoMatch(tt.err)
			if got := errors.Is(err, probes.ErrNoMatch); got != tt.wantMatch {
				t.Fatalf("errors.Is(NoMatch(%v), ErrNoMatch) = %v", tt.err, got)
			}
			if !errors.Is(err, tt.err) && !errors.As(err, new(*probes.HTTPError)) && !errors.As(err, new(*probes.DecodeError)) {
				t.Fatalf("NoMatch lost the cause: %v", err)
			}
		})
	}
	if probes.NoMatch(nil) != nil {
		t.Fatal("NoMatch(nil) != nil")
	}
}

func TestErrorClassTransient(t *testing.T) {
	var got []probes.ErrorClass
	for _, c := range probes.ErrorClasses() {
		if c.Transient() {
			got = append(got, c)
		}
	}
	want := []probes.ErrorClass{probes.ClassTimeout, probes.ClassRefused, probes.ClassReset, probes.ClassHTTP5xx}
	if !slices.Equal(got, want) {
		t.Fatalf("transient classes %v, want %v", got, want)
	}
}

func TestFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Method == http.MethodPost {
				b, _ := io.ReadAll(r.Body)
				w.Write(b)
				return
			}
			io.WriteString(w, `{"a":1}`)
		case "/big":
			w.Write(make([]byte, probes.MaxBodyBytes+10))
		default:
			http.Error(w, "nope", http.StatusTeapot)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	c := client(t)

	b, err := probes.Fetch(ctx, c, http.MethodGet, srv.URL+"/ok", nil)
	if err != nil || string(b) != `{"a":1}` {
		t.Fatalf("GET /ok = %q, %v", b, err)
	}
	b, err = probes.Fetch(ctx, c, http.MethodPost, srv.URL+"/ok", map[string]int{"b": 2})
	if err != nil || string(b) != `{"b":2}` {
		t.Fatalf("POST /ok = %q, %v", b, err)
	}
	_, err = probes.Fetch(ctx, c, http.MethodGet, srv.URL+"/teapot", nil)
	var he *probes.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusTeapot || he.Body != "nope" {
		t.Fatalf("GET /teapot err = %v", err)
	}
	_, err = probes.Fetch(ctx, c, http.MethodGet, srv.URL+"/big", nil)
	if probes.Classify(err) != probes.ClassBadResponse {
		t.Fatalf("GET /big err = %v, want bad_response", err)
	}
}

func TestDecodeJSON(t *testing.T) {
	var v map[string]any
	for _, in := range []string{"", "  ", "null", "{", "[1]"} {
		if err := probes.DecodeJSON("x", []byte(in), &v); probes.Classify(err) != probes.ClassBadResponse {
			t.Errorf("DecodeJSON(%q) = %v, want a bad_response", in, err)
		}
	}
	if err := probes.DecodeJSON("x", []byte(` {"a":1} `), &v); err != nil || v["a"] != 1.0 {
		t.Fatalf("DecodeJSON = %v, %v", v, err)
	}
}

func TestJoinURL(t *testing.T) {
	for _, tt := range []struct{ base, path, want string }{
		{"http://h:1", "/v2", "http://h:1/v2"},
		{"http://h:1/", "v2", "http://h:1/v2"},
		{"http://h:1/prefix//", "//v2", "http://h:1/prefix/v2"},
	} {
		if got := probes.JoinURL(tt.base, tt.path); got != tt.want {
			t.Errorf("JoinURL(%q, %q) = %q, want %q", tt.base, tt.path, got, tt.want)
		}
	}
}

func TestRun(t *testing.T) {
	clock := time.Unix(100, 0)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	fail := probes.ProbeFunc(func(ctx context.Context, _ *http.Client, _ probes.Target, _ probes.Config) (probes.Result, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("Run did not apply cfg.Timeout")
		}
		return probes.Result{Version: "1"}, &probes.HTTPError{Status: 502}
	})
	res, err := probes.Run(context.Background(), fail, nil, probes.Target{ID: "p1"}, probes.Config{Timeout: time.Minute}, now)
	if err == nil || res.Class != probes.ClassHTTP5xx || res.Duration != time.Second || res.Version != "1" {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	var he *probes.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("Run lost the error type: %v", err)
	}
}

func TestOutputTokensPerSecond(t *testing.T) {
	for _, tc := range []struct {
		r    probes.Result
		want float64
	}{
		{probes.Result{}, 0},
		// Fewer than MinRateTokens tokens time the network, not the server.
		{probes.Result{CompletionTokens: 2, Duration: time.Millisecond}, 0},
		{probes.Result{CompletionTokens: 7, Duration: time.Second}, 0},
		{probes.Result{CompletionTokens: 8, Duration: time.Second}, 8},
		{probes.Result{CompletionTokens: 9, Duration: 3 * time.Second, TimeToFirstToken: time.Second}, 4},
	} {
		if got := tc.r.OutputTokensPerSecond(); got != tc.want {
			t.Errorf("%+v: %g, want %g", tc.r, got, tc.want)
		}
	}
}
