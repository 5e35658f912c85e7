package h1

import (
	"bufio"
	"maps"
	"net/http"
	"net/http/httptrace"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpguts"
)

// The request is written by net/http's Request.Write, which for a GET of
// a probe builds a transfer writer, formats the request line and the Host
// line through fmt and sorts the header's keys into a new slice: half of
// what sending a probe allocates. A GET without a body whose every part
// is plain (writeGet's conditions) is written here instead, byte for byte
// as Request.Write writes it (TestWriteGetIsRequestWrite); anything else
// still goes through Request.Write.

// maxQuickHeaders is how many header keys a request written by writeGet
// may have, sorted in an array on the stack.
const maxQuickHeaders = 8

// defaultUserAgent is net/http's, sent when the header has none.
const defaultUserAgent = "Go-http-client/1.1"

// writeGet writes req to bw as Request.Write would and reports true, or
// writes nothing and reports false when req is not a plain GET: a method
// other than GET or HEAD, a body, a close, a header or host that
// Request.Write would change or refuse (a line break or padding in a
// value, a key it writes itself, a name with an IDNA or zone part, a
// control byte in the path), an httptrace.ClientTrace to call, or more
// than maxQuickHeaders keys. The trace context of the request's context,
// when it goes with it (sendsTraceContext), follows the header.
func writeGet(bw *bufio.Writer, req *http.Request, p propagation.TextMapPropagator) bool {
	ctx := req.Context()
	if (req.Method != "" && req.Method != http.MethodGet && req.Method != http.MethodHead) ||
		(req.Body != nil && req.Body != http.NoBody) || req.ContentLength != 0 || req.Close ||
		len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 || req.URL.Opaque != "" || len(req.Header) > maxQuickHeaders ||
		httptrace.ContextClientTrace(ctx) != nil {
		return false
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if hasCTL(path) || hasCTL(req.URL.RawQuery) {
		return false // Request.Write's error
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !plainHost(host) {
		return false
	}
	ua := defaultUserAgent
	var keys [maxQuickHeaders]string
	n := 0
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			return false
		case "User-Agent":
			ua = ""
			if len(vs) > 0 {
				ua = vs[0]
			}
			if !plainValue(ua) {
				return false
			}
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vs {
			if !plainValue(v) {
				return false
			}
		}
		// Insertion into the sorted keys: a header of a few keys.
		i := n
		for i > 0 && keys[i-1] > k {
			keys[i] = keys[i-1]
			i--
		}
		keys[i] = k
		n++
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if req.URL.ForceQuery || req.URL.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(req.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua != "" {
		line(bw, "User-Agent", ua)
	}
	for _, k := range keys[:n] {
		for _, v := range req.Header[k] {
			line(bw, k, v)
		}
	}
	if sendsTraceContext(req, p) {
		p.Inject(ctx, wireCarrier{bw})
	}
	bw.WriteString("\r\n")
	return true
}

func line(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// plainHost reports whether host (host or host:port) is written by
// Request.Write as it is: ASCII letters, digits and the punctuation of
// names, addresses and ports, with no IPv6 zone (which it drops) and no
// IDNA label (which it converts).
func plainHost(host string) bool {
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_':
		default:
			return false
		}
	}
	return true
}

// plainValue reports whether Request.Write writes v as it is: no line
// break (it turns them into spaces) and no space or tab at either end (it
// trims them).
func plainValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return v == "" || (v[0] != ' ' && v[0] != '\t' && v[len(v)-1] != ' ' && v[len(v)-1] != '\t')
}

// hasCTL reports whether s has a control byte.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// wireCarrier writes the fields a propagator sets as header lines, in the
// canonical form of their names.
type wireCarrier struct{ bw *bufio.Writer }

func (c wireCarrier) Get(string) string { return "" }
func (c wireCarrier) Keys() []string    { return nil }

func (c wireCarrier) Set(key, value string) {
	if !plainValue(value) || !httpguts.ValidHeaderFieldName(key) {
		return
	}
	line(c.bw, canonical(key), value)
}

// canonical is http.CanonicalHeaderKey, without a new string for the
// names the trace context and baggage set.
func canonical(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(key)
}

// sendsTraceContext reports whether req goes with the trace context of
// its context: p is set, the context has a span, and the header has no
// traceparent of its own.
func sendsTraceContext(req *http.Request, p propagation.TextMapPropagator) bool {
	return p != nil && req.Header["Traceparent"] == nil && trace.SpanContextFromContext(req.Context()).IsValid()
}

// withTraceContext returns req, or, when it goes with the trace context of
// its context (sendsTraceContext), a copy that carries it.
func withTraceContext(req *http.Request, p propagation.TextMapPropagator) *http.Request {
	if !sendsTraceContext(req, p) {
		return req
	}
	return CarryTraceContext(req, p)
}

// CarryTraceContext returns a copy of req whose header, a map of its own
// sharing req's values (which are never changed), has what p injects from
// req's context besides: a RoundTripper must not change the request it is
// given.
func CarryTraceContext(req *http.Request, p propagation.TextMapPropagator) *http.Request {
	r2 := *req
	r2.Header = make(http.Header, len(req.Header)+1)
	maps.Copy(r2.Header, req.Header)
	p.Inject(req.Context(), headerCarrier(r2.Header))
	return &r2
}

// headerCarrier is propagation.HeaderCarrier with the names the trace
// context and baggage set written in their canonical form at once,
// rather than canonicalised (a new string) at every request.
type headerCarrier http.Header

func (h headerCarrier) Get(key string) string { return http.Header(h).Get(key) }
func (h headerCarrier) Set(key, value string) { h[canonical(key)] = []string{value} }
func (h headerCarrier) Keys() []string        { return propagation.HeaderCarrier(h).Keys() }
