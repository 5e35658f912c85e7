package h1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TestWriteGetIsRequestWrite: what writeGet writes is what Request.Write
// writes, for the GETs of probes; what it does not write (it reports
// false) Request.Write still writes.
func TestWriteGetIsRequestWrite(t *testing.T) {
	get := func(raw string, h http.Header) *http.Request {
		r, err := http.NewRequest(http.MethodGet, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h != nil {
			r.Header = h
		}
		return r
	}
	accept := http.Header{"Accept": {"application/json"}}
	many := http.Header{"Accept": {"text/plain; version=0.0.4"}, "X-B": {"2", "3"}, "Authorization": {"Bearer t"}, "X-A": {""}}
	nine := http.Header{}
	for _, k := range []string{"A", "B", "C", "D", "E", "F", "G", "H", "I"} {
		nine[k] = []string{"v"}
	}
	for _, tt := range []struct {
		name  string
		req   func() *http.Request
		quick bool
	}{
		{"a probe's GET", func() *http.Request { return get("http://127.0.0.1:8080/v1/models", accept) }, true},
		{"no path", func() *http.Request { return get("http://localhost:11434", nil) }, true},
		{"a query and escapes", func() *http.Request { return get("http://h:1/a%20b/c?x=1&y=%2F", accept) }, true},
		{"forced query", func() *http.Request { return get("http://h:1/p?", nil) }, true},
		{"IPv6", func() *http.Request { return get("http://[::1]:9090/metrics", accept) }, true},
		{"HEAD", func() *http.Request {
			r := get("http://h/health", nil)
			r.Method = http.MethodHead
			return r
		}, true},
		{"several keys and values, sorted", func() *http.Request { return get("http://h/metrics", many) }, true},
		{"its own user agent", func() *http.Request {
			return get("http://h/", http.Header{"User-Agent": {"vitals/1"}, "Accept": {"*/*"}})
		}, true},
		{"no user agent", func() *http.Request { return get("http://h/", http.Header{"User-Agent": {""}}) }, true},
		{"Host set", func() *http.Request {
			r := get("http://127.0.0.1:1/", nil)
			r.Host = "model.internal:8000"
			return r
		}, true},
		{"a POST", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://h/v1/completions", strings.NewReader(`{}`))
			return r
		}, false},
		{"a line break in a value", func() *http.Request { return get("http://h/", http.Header{"X": {"a\r\nB: c"}}) }, false},
		{"padding in a value", func() *http.Request { return get("http://h/", http.Header{"X": {" a "}}) }, false},
		{"padding in the user agent", func() *http.Request { return get("http://h/", http.Header{"User-Agent": {"a\t"}}) }, false},
		{"a name that is not a token", func() *http.Request { return get("http://h/", http.Header{"X Y": {"a"}}) }, false},
		{"a key Request.Write writes itself", func() *http.Request { return get("http://h/", http.Header{"Content-Length": {"0"}}) }, false},
		{"an IDNA host", func() *http.Request { return get("http://bücher.example/", nil) }, false},
		{"a zone", func() *http.Request { return get("http://[fe80::1%25eth0]:80/", nil) }, false},
		{"a control byte in the query", func() *http.Request {
			r := get("http://h/", nil)
			r.URL.RawQuery = "a=\x01"
			return r
		}, false},
		{"close", func() *http.Request {
			r := get("http://h/", nil)
			r.Close = true
			return r
		}, false},
		{"more keys than the stack holds", func() *http.Request { return get("http://h/", nine) }, false},
		{"a client trace", func() *http.Request {
			r := get("http://h/", nil)
			return r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{}))
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var quick bytes.Buffer
			bw := bufio.NewWriter(&quick)
			r := tt.req()
			wrote := writeGet(bw, r, nil)
			bw.Flush()
			if wrote != tt.quick {
				t.Fatalf("writeGet wrote it: %v, want %v", wrote, tt.quick)
			}
			var std bytes.Buffer
			if err := tt.req().Write(&std); err != nil && wrote {
				t.Fatalf("Request.Write: %v", err)
			}
			if wrote && quick.String() != std.String() {
				t.Fatalf("writeGet wrote\n%q\nRequest.Write writes\n%q", quick.String(), std.String())
			}
			if !wrote && quick.Len() > 0 {
				t.Fatalf("writeGet reported false and wrote %q", quick.String())
			}
		})
	}
}

// TestWriteGetAllocatesNothing: a probe's GET without a trace context is
// written without an allocation.
func TestWriteGetAllocatesNothing(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/v1/models", nil)
	r.Header = http.Header{"Accept": {"application/json"}}
	bw := bufio.NewWriter(io.Discard)
	if n := testing.AllocsPerRun(100, func() {
		if !writeGet(bw, r, propagation.TraceContext{}) {
			t.Fatal("not written")
		}
	}); n != 0 {
		t.Fatalf("%v allocations a request, want 0", n)
	}
}

// TestSendsTheTraceContext: with a Propagator the server gets the trace
// context of the request's context, for a GET written by writeGet, a POST
// written by Request.Write and a request of the fallback; the request's
// own header map is not changed, and a traceparent it has is sent as it is.
func TestSendsTheTraceContext(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{10, 11, 12, 13, 14, 15, 16, 17},
		TraceFlags: trace.FlagsSampled,
	})
	const want = "00-0102030405060708090a0b0c0d0e0f10-0a0b0c0d0e0f1011-01"
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	got := make(chan []string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Header["Traceparent"]
	})
	s := newServer(t, h)
	tls := httptest.NewTLSServer(h)
	defer tls.Close()
	tr := newTransport()
	tr.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	tr.Fallback = tls.Client().Transport
	if !tr.WritesTraceContext() {
		t.Fatal("WritesTraceContext false with a Propagator")
	}
	shared := http.Header{"Accept": {"application/json"}}
	send := func(method, raw string, body io.Reader, h http.Header) []string {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, raw, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return <-got
	}
	for _, c := range []struct {
		name, method, url string
		body              func() io.Reader
	}{
		{"GET", http.MethodGet, s.URL + "/v1/models", func() io.Reader { return nil }},
		{"POST", http.MethodPost, s.URL + "/v1/completions", func() io.Reader { return strings.NewReader(`{}`) }},
		{"https", http.MethodGet, tls.URL + "/v1/models", func() io.Reader { return nil }},
	} {
		if tp := send(c.method, c.url, c.body(), shared); len(tp) != 1 || tp[0] != want {
			t.Errorf("%s: traceparent %q, want %q", c.name, tp, want)
		}
	}
	if len(shared) != 1 {
		t.Errorf("the request's header was changed: %v", shared)
	}
	own := "00-0102030405060708090a0b0c0d0e0f10-1111111111111111-01"
	if tp := send(http.MethodGet, s.URL+"/", nil, http.Header{"Traceparent": {own}}); len(tp) != 1 || tp[0] != own {
		t.Errorf("a request's own traceparent: sent %q, want %q", tp, own)
	}
}

// FuzzWriteGet: whatever GET writeGet writes, Request.Write writes the
// same bytes.
func FuzzWriteGet(f *testing.F) {
	f.Add("127.0.0.1:8080", "/v1/models", "", "Accept", "application/json", "")
	f.Add("[::1]:9090", "/a%20b/", "x=1&y=%2F", "User-Agent", "vitals/1", "h.example:80")
	f.Add("h", "", "", "X-B", " padded ", "")
	f.Add("bücher.example", "/p", "q", "Content-Length", "0", "")
	f.Fuzz(func(t *testing.T, host, path, query, key, value, reqHost string) {
		u := &url.URL{Scheme: "http", Host: host, Path: path, RawQuery: query}
		r, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return
		}
		r.Host = reqHost
		if key != "" {
			r.Header = http.Header{key: {value}, "Accept": {"*/*"}}
		}
		var quick bytes.Buffer
		bw := bufio.NewWriter(&quick)
		wrote := writeGet(bw, r, nil)
		bw.Flush()
		if !wrote {
			if quick.Len() > 0 {
				t.Fatalf("reported false and wrote %q", quick.String())
			}
			return
		}
		var std bytes.Buffer
		if err := r.Write(&std); err != nil {
			t.Fatalf("writeGet wrote %q where Request.Write fails: %v", quick.String(), err)
		}
		if quick.String() != std.String() {
			t.Fatalf("writeGet wrote\n%q\nRequest.Write writes\n%q", quick.String(), std.String())
		}
	})
}
