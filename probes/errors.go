package probes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// ErrorClass is a bounded classification of probe errors, safe to use as a
// metric label.
type ErrorClass string

// The error classes. ClassNone is the class of a nil error.
const (
	ClassNone        ErrorClass = ""
	ClassTimeout     ErrorClass = "timeout"
	ClassRefused     ErrorClass = "refused"
	ClassReset       ErrorClass = "reset"
	ClassHTTP5xx     ErrorClass = "http_5xx"
	ClassHTTP4xx     ErrorClass = "http_4xx"
	ClassBadResponse ErrorClass = "bad_response" // a body of the wrong shape, or a 404 from the engine's own API
	ClassTLS         ErrorClass = "tls"
	ClassDNS         ErrorClass = "dns"
	ClassCanceled    ErrorClass = "canceled"
	// ClassAuth is a server that refused the agent's credentials, or
	// wants some: HTTP 401 or 403. Fix the target's http_config.
	ClassAuth ErrorClass = "auth"
	// ClassStuck is a server whose liveness answers while inference does
	// not: the health engine gives it to a synthetic inference that timed
	// out after liveness passed in the same check.
	ClassStuck ErrorClass = "stuck"
	// ClassNotReady is a server that answers but says it cannot serve: no
	// model loaded, the configured model missing, a readiness endpoint
	// saying no.
	ClassNotReady ErrorClass = "not_ready"
	// ClassCold is a server whose model is not loaded, by design (Ollama
	// unloads an idle model): a synthetic inference would load it, so it
	// is not run. It is not a failure.
	ClassCold ErrorClass = "cold"
	// ClassAsleep is a server whose model sleeps (a llama.cpp router's
	// sleeping model): a request would wake it, so none is sent. It is
	// not a failure.
	ClassAsleep ErrorClass = "asleep"
	// ClassNotSent is a probe that chose not to send its request, since it
	// would change the server's state (a *NotSentError). It is not a
	// failure of the server.
	ClassNotSent ErrorClass = "not_sent"
	// ClassStale is a bus plugin whose heartbeats stopped.
	ClassStale ErrorClass = "stale"
	// ClassReported is a plugin that reported itself unhealthy (a bus
	// health reply, an in-process plugin's own health check).
	ClassReported ErrorClass = "reported"
	// ClassConfig is a probe the agent's own config makes fail: a token
	// budget the server refuses (a *BudgetError).
	ClassConfig ErrorClass = "config"
	ClassOther  ErrorClass = "other"
)

// ErrNotReady reports that a server answered but cannot serve yet. Probes
// wrap it; Classify gives ClassNotReady.
var ErrNotReady = errors.New("not ready")

// ErrLoading reports a server that answers while it loads its model
// (llama.cpp's 503 "Loading model"). It wraps ErrNotReady, so Classify
// gives ClassNotReady; the health engine tells it apart with errors.Is
// and calls the plugin loading rather than failing.
var ErrLoading = fmt.Errorf("loading model: %w", ErrNotReady)

// ErrCold reports that the model a probe would use is not loaded, and
// that the probe did not load it. Classify gives ClassCold.
var ErrCold = errors.New("model not loaded")

// ErrAsleep reports that the model a probe would use sleeps, and that the
// probe did not wake it. Classify gives ClassAsleep.
var ErrAsleep = errors.New("model sleeps")

// NotSentError reports a probe that chose not to send its request,
// because the request would change the server's state (an Ollama model's
// expiry). The health engine records the probe as skipped, with Reason:
// neither a success nor a failure.
type NotSentError struct {
	// Reason says why, and what decided the check instead.
	Reason string
}

func (e *NotSentError) Error() string { return "not sent: " + e.Reason }

// ErrStale reports that a plugin has not been heard from in time.
var ErrStale = errors.New("heartbeat stale")

// ErrReported reports that a plugin said it is unhealthy.
var ErrReported = errors.New("reported unhealthy")

// ErrStuck reports inference that does not finish while the server's
// liveness answers.
var ErrStuck = errors.New("inference stuck")

// Transient reports whether errors of class c may go away on retry: the
// server was slow, down, dropped the connection or failed with a 5xx.
func (c ErrorClass) Transient() bool {
	switch c {
	case ClassTimeout, ClassRefused, ClassReset, ClassHTTP5xx:
		return true
	}
	return false
}

// ErrNoMatch reports that an endpoint does not speak the protocol a family
// client asked it about. Family clients wrap it; test with errors.Is.
var ErrNoMatch = errors.New("endpoint does not speak this protocol")

// ErrNoSignals is wrapped by a SignalsFunc's error when the server has no
// endpoint for its signals at all (an OpenAI-compatible server without
// /metrics answers 404): nothing failed, there is nothing to read. The
// health engine then asks again only after a while, not at every check.
var ErrNoSignals = errors.New("server serves no signals")

// HTTPError is a response with a status code outside 2xx.
type HTTPError struct {
	Method string
	URL    string
	Status int
	// Body is the start of the response body, for humans.
	Body string
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("%s %s: http %d", e.Method, e.URL, e.Status)
	}
	return fmt.Sprintf("%s %s: http %d: %s", e.Method, e.URL, e.Status, e.Body)
}

// DecodeError is a 2xx response whose body is not what the protocol says.
type DecodeError struct {
	// What names the document, e.g. "ollama /api/tags".
	What string
	Err  error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("decode %s: %v", e.What, e.Err) }

// Unwrap returns the underlying error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Classify returns the class of err: ClassNone for nil, ClassOther for
// errors it does not recognise. It sees through wrapping. A 404 is
// ClassBadResponse, since probes ask only for paths of the engine's own
// API: the server is not what the agent thinks it is, or no longer serves
// the model it was asked for. 401 and 403 are ClassAuth.
func Classify(err error) ErrorClass {
	if err == nil {
		return ClassNone
	}
	var (
		httpErr   *HTTPError
		budgetErr *BudgetError
		notSent   *NotSentError
		decErr    *DecodeError
		dnsErr    *net.DNSError
		netErr    net.Error
		recErr    tls.RecordHeaderError
		verErr    *tls.CertificateVerificationError
		alertErr  tls.AlertError
		uaErr     x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invErr    x509.CertificateInvalidError
		syscallNo syscall.Errno
	)
	switch {
	case errors.Is(err, ErrStuck):
		return ClassStuck
	case errors.Is(err, ErrNotReady):
		return ClassNotReady
	case errors.Is(err, ErrCold):
		return ClassCold
	case errors.Is(err, ErrAsleep):
		return ClassAsleep
	case errors.As(err, &notSent):
		return ClassNotSent
	case errors.Is(err, ErrStale):
		return ClassStale
	case errors.Is(err, ErrReported):
		return ClassReported
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.As(err, &budgetErr):
		return ClassConfig
	case errors.As(err, &httpErr):
		switch {
		case httpErr.Status >= 500:
			return ClassHTTP5xx
		case httpErr.Status == 401 || httpErr.Status == 403:
			return ClassAuth
		case httpErr.Status == 404:
			return ClassBadResponse
		case httpErr.Status >= 400:
			return ClassHTTP4xx
		}
		return ClassBadResponse
	case errors.As(err, &decErr), errors.Is(err, ErrRedirect):
		return ClassBadResponse
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return ClassTimeout
		}
		return ClassDNS
	case errors.As(err, &recErr), errors.As(err, &verErr), errors.As(err, &alertErr),
		errors.As(err, &uaErr), errors.As(err, &hostErr), errors.As(err, &invErr), remoteTLSAlert(err):
		return ClassTLS
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return ClassTimeout
	case errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed):
		return ClassReset
	case errors.As(err, &syscallNo):
		return ClassOther
	}
	return ClassOther
}

// remoteTLSAlert reports whether err is an alert the server sent during
// or right after the handshake (it refused the client certificate, say):
// crypto/tls returns it as a *net.OpError with Op "remote error".
func remoteTLSAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
