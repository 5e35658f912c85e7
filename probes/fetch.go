package probes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxBodyBytes bounds how much of a response body Fetch reads.
const MaxBodyBytes = 8 << 20

// maxErrorBody bounds the body kept in an HTTPError.
const maxErrorBody = 256

// Fetch sends one request and returns the body of a 2xx response. A non-2xx
// status is an *HTTPError, a body larger than MaxBodyBytes is a
// *DecodeError, and transport errors are returned wrapped. body, when not
// nil, is sent as JSON. client nil means http.DefaultClient.
func Fetch(ctx context.Context, client *http.Client, method, url string, body any) ([]byte, error) {
	if client == nil {
		client = http.DefaultClient
	}
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
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err // *url.Error already names method and URL
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &HTTPError{Method: method, URL: url, Status: resp.StatusCode, Body: snippet(b)}
	}
	if len(b) > MaxBodyBytes {
		return nil, &DecodeError{What: method + " " + url, Err: fmt.Errorf("body larger than %d bytes", MaxBodyBytes)}
	}
	return b, nil
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
// shape). Transient errors (timeouts, refusals, resets, 5xx) and
// cancellation are returned unchanged, so callers can retry them.
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

// PostStream sends body as JSON to url and returns the response of a
// streaming endpoint, for the caller to read and close. A non-2xx answer is
// an *HTTPError with the start of its body. accept is the Accept header,
// "" for none.
func PostStream(ctx context.Context, client *http.Client, url string, body any, accept string) (*http.Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
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
	resp, err := client.Do(req)
	if err != nil {
		return nil, err // *url.Error already names method and URL
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		snip, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, &HTTPError{Method: http.MethodPost, URL: url, Status: resp.StatusCode, Body: strings.TrimSpace(string(snip))}
	}
	return resp, nil
}
