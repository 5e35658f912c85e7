package probes

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes bounds how much of a response body Fetch reads.
const MaxBodyBytes = 8 << 20

// MaxStreamBytes bounds how much of a streamed answer (server-sent events,
// NDJSON) PostStream lets its caller read. A synthetic inference asks for a
// handful of tokens, a few kilobytes of events; a stream that goes on past
// this is one that does not stop.
const MaxStreamBytes = 1 << 20

// maxErrorBody bounds the body kept in an HTTPError.
const maxErrorBody = 256

// maxRedirects bounds the same-host redirects a probe follows.
const maxRedirects = 5

// ErrTooLarge is wrapped by the error of a response body or stream that
// goes on past its bound. It comes inside a *DecodeError, so Classify gives
// ClassBadResponse.
var ErrTooLarge = errors.New("response too large")

// ErrRedirect is wrapped by the error of a redirect a probe did not follow:
// one to another host, or one too many.
var ErrRedirect = errors.New("redirect not followed")

// Do sends req with client and returns the response with its body bounded:
// reading more than limit bytes of it fails with a *DecodeError wrapping
// ErrTooLarge. Every probe request goes through Do, so every probe reader
// is bounded in bytes here and in time by req's context.
//
// A client without a CheckRedirect gets SameHostRedirect for the request;
// a client with one of its own keeps it: that is how a deployment that
// wants cross-host redirects configures them. client nil means
// http.DefaultClient.
func Do(client *http.Client, req *http.Request, limit int64) (*http.Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := send(client, req)
	if err != nil {
		return nil, err // *url.Error already names method and URL
	}
	resp.Body = &limitedBody{rc: resp.Body, left: limit, limit: limit}
	return resp, nil
}

// send is client.Do(req) with the probes' redirect policy when client has
// none.
//
// http.Client.Do copies the request's header at every request, for the
// redirects it might follow, and its URL when the request has a Host (as
// every request http.NewRequest makes has), though nearly no answer to a
// probe is a redirect. So a request the client would hand its transport
// unchanged (no cookie jar, no client timeout, no credentials in the URL:
// the health checks' requests) goes to the transport directly, and only
// an answer that is a redirect goes to Client.Do, as the answer to its
// first request (replay): redirects are followed by net/http's own code,
// with the client's policy, and nothing is sent twice. Errors are
// Client.Do's.
func send(client *http.Client, req *http.Request) (*http.Response, error) {
	check := client.CheckRedirect
	if check == nil {
		check = SameHostRedirect
	}
	if client.Jar != nil || client.Timeout != 0 || req.URL == nil || req.URL.User != nil || req.Header == nil || req.RequestURI != "" {
		c := *client
		c.CheckRedirect = check
		if c.Jar != nil { // it adds its cookies to the first request's own header
			r2 := *req
			r2.Header = req.Header.Clone()
			req = &r2
		}
		return c.Do(req)
	}
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		if tlsErr, ok := err.(tls.RecordHeaderError); ok && string(tlsErr.RecordHeader[:]) == "HTTP/" {
			err = http.ErrSchemeMismatch // as Client.Do says it
		}
		return nil, &url.Error{Op: urlErrorOp(req.Method), URL: req.URL.String(), Err: err}
	}
	if resp == nil {
		return nil, &url.Error{Op: urlErrorOp(req.Method), URL: req.URL.String(),
			Err: fmt.Errorf("http: RoundTripper implementation (%T) returned a nil *Response with a nil error", rt)}
	}
	if resp.Body == nil {
		if resp.ContentLength > 0 && req.Method != http.MethodHead {
			return nil, &url.Error{Op: urlErrorOp(req.Method), URL: req.URL.String(),
				Err: fmt.Errorf("http: RoundTripper implementation (%T) returned a *Response with content length %d but a nil Body", rt, resp.ContentLength)}
		}
		resp.Body = http.NoBody
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		c := *client
		c.CheckRedirect = check
		c.Transport = &replay{first: resp, rt: rt}
		return c.Do(req)
	}
	return resp, nil
}

// replay is the transport of a redirect's Client.Do: the answer already
// read for the first request, then the client's transport.
type replay struct {
	first *http.Response
	rt    http.RoundTripper
}

func (r *replay) RoundTrip(req *http.Request) (*http.Response, error) {
	if resp := r.first; resp != nil {
		r.first = nil
		return resp, nil
	}
	return r.rt.RoundTrip(req)
}

// urlErrorOp is the Op of Client.Do's *url.Error for method: "Get" for
// GET (and for none), "Post" for POST.
func urlErrorOp(method string) string {
	if method == "" {
		return "Get"
	}
	for i := range len(method) {
		if method[i] >= utf8.RuneSelf {
			return method
		}
	}
	return method[:1] + strings.ToLower(method[1:])
}

// SameHostRedirect is the redirect policy of probes, an
// http.Client.CheckRedirect: a redirect is followed only to the same
// scheme and host (host and port), at most 5 times; one elsewhere fails
// with an error wrapping ErrRedirect, since a probe must check the server
// it was pointed at and never carry its request to another.
func SameHostRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return fmt.Errorf("%w: %s %s redirects to another host, %s", ErrRedirect, via[0].Method, first.Redacted(), req.URL.Redacted())
	}
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: %s %s: more than %d redirects", ErrRedirect, via[0].Method, first.Redacted(), maxRedirects)
	}
	return nil
}

// limitedBody is a response body that fails once more than limit bytes
// were read from it.
type limitedBody struct {
	rc          io.ReadCloser
	left, limit int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	// Read one byte more than is left, to tell a body of exactly limit
	// bytes from a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), b.tooLarge()
	}
	return n, err
}

func (b *limitedBody) tooLarge() error {
	return &DecodeError{What: "response body", Err: fmt.Errorf("%w: body larger than %d bytes", ErrTooLarge, b.limit)}
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// Fetch sends one request through Do and returns the body of a 2xx
// response, read to its end within ctx. A non-2xx status is an *HTTPError,
// a body larger than MaxBodyBytes is a *DecodeError wrapping ErrTooLarge,
// and transport errors are returned wrapped. body, when not nil, is sent
// as JSON. client nil means http.DefaultClient.
func Fetch(ctx context.Context, client *http.Client, method, url string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, url, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	req.Header = acceptJSON
	if body != nil {
		req.Header = sendJSON
	}
	return readOK(client, req, url, MaxBodyBytes)
}

// Get sends a GET of url through Do and reads the body of a 2xx answer to
// its end, within ctx and MaxBodyBytes, without keeping it: the check of a
// probe that needs only the answer's status, such as a liveness GET. Its
// errors are Fetch's. Reading to the end lets the transport reuse the
// connection; discarding goes through io.Discard's pooled buffer, so a
// check keeps no copy of the body.
func Get(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	req.Header = acceptJSON
	return copyOK(client, req, url, MaxBodyBytes, io.Discard)
}

// The headers of the probes' requests, each map shared by every request
// that has it, since a header map costs more than the rest of a GET's
// request (a table of eight entries, over 300 bytes). Nothing below Do
// changes a request's header: a RoundTripper must not (propagating and
// otelhttp copy it to add the trace context), and send copies it before
// Client.Do adds a cookie jar's cookies to it.
var (
	acceptJSON    = http.Header{"Accept": {"application/json"}}
	sendJSON      = http.Header{"Accept": {"application/json"}, "Content-Type": {"application/json"}}
	acceptMetrics = http.Header{"Accept": {"text/plain; version=0.0.4"}}
)

// readOK sends req through Do with a body bound of limit and returns the
// body of a 2xx response; url names the request in errors.
func readOK(client *http.Client, req *http.Request, url string, limit int64) ([]byte, error) {
	var body bytes.Buffer
	if err := copyOK(client, req, url, limit, &body); err != nil {
		return nil, err
	}
	return body.Bytes(), nil
}

// copyOK sends req through Do with a body bound of limit and copies the
// body of a 2xx response to w. Any other status is an *HTTPError with the
// start of its body; the body is read to its end either way, so the
// transport can reuse the connection.
func copyOK(client *http.Client, req *http.Request, url string, limit int64, w io.Writer) error {
	resp, err := Do(client, req, limit)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(resp.Body)
		return &HTTPError{Method: req.Method, URL: url, Status: resp.StatusCode, Body: snippet(b)}
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("%s %s: read body: %w", req.Method, url, err)
	}
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > maxErrorBody {
		s = s[:maxErrorBody] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// JoinURL joins a base URL and a path, with exactly one slash between them.
func JoinURL(base, path string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(path, "/")
}

// DecodeJSON unmarshals b into v and wraps a failure in a *DecodeError
// naming what. An empty body or JSON null is an error too.
func DecodeJSON(what string, b []byte, v any) error {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return &DecodeError{What: what, Err: fmt.Errorf("empty body")}
	}
	if err := json.Unmarshal(t, v); err != nil {
		return &DecodeError{What: what, Err: err}
	}
	return nil
}

// NoMatch wraps err as an ErrNoMatch for a family client when it says the
// endpoint does not speak the family's protocol (4xx or a body of the wrong
// shape). Transient errors (timeouts, refusals, resets, 5xx),
// cancellation and a refusal of the agent's credentials (401, 403: the
// server may well speak the protocol, behind a key) are returned
// unchanged, so callers can retry them or report them.
func NoMatch(err error) error {
	if err == nil {
		return nil
	}
	switch Classify(err) {
	case ClassHTTP4xx, ClassBadResponse:
		return fmt.Errorf("%w: %w", ErrNoMatch, err)
	}
	return err
}

// PostStream sends body as JSON to url through Do and returns the
// response of a streaming endpoint, for the caller to read and close; its
// body fails past MaxStreamBytes. A non-2xx answer is an *HTTPError with
// the start of its body. accept is the Accept header, "" for none.
func PostStream(ctx context.Context, client *http.Client, url string, body any, accept string) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("POST %s: encode request: %w", url, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := Do(client, req, MaxStreamBytes)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		snip, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, &HTTPError{Method: http.MethodPost, URL: url, Status: resp.StatusCode, Body: snippet(snip)}
	}
	return resp, nil
}

// streamSlack is how many events a streamed answer may carry besides one
// per token: the role, finish, usage and done events, and a few empty
// deltas some servers send.
const streamSlack = 8

// StreamBudget counts the events of a streamed answer against the token
// budget its request asked for, so a reader stops a server that does not
// stop at max_tokens long before MaxStreamBytes. The zero value has no
// budget.
type StreamBudget struct {
	// Tokens is the budget the request asked for; 0 or less means none.
	Tokens int
	events int
}

// Event counts one event of the stream what and returns an error wrapping
// ErrTooLarge (inside a *DecodeError) once there are more than the budget
// allows.
func (b *StreamBudget) Event(what string) error {
	b.events++
	if b.Tokens > 0 && b.events > b.Tokens+streamSlack {
		return &DecodeError{What: what, Err: fmt.Errorf("%w: more than %d events for a budget of %d tokens; the server does not stop at the token limit",
			ErrTooLarge, b.Tokens+streamSlack, b.Tokens)}
	}
	return nil
}
