package aisim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("250ms", "1.5s"); it also reads a JSON number as seconds.
type Duration time.Duration

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("duration: want a string like \"250ms\" or a number of seconds, got %s", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// Knobs make the server misbehave. The zero value is a well-behaved
// server.
type Knobs struct {
	// Latency is added before every answer, plus a uniform random part in
	// [0, Jitter).
	Latency Duration `json:"latency"`
	Jitter  Duration `json:"jitter"`
	// ErrorRate is the fraction of requests, in [0, 1], answered with a
	// 500 in the kind's error shape.
	ErrorRate float64 `json:"error_rate"`
	// Down resets every connection without an answer.
	Down bool `json:"down"`
	// Hang accepts requests and never answers until the client gives up or
	// the server closes.
	Hang bool `json:"hang"`
	// Stuck answers health, version and list endpoints but hangs
	// inference.
	Stuck bool `json:"stuck"`
	// SlowFirstToken delays the first streamed chunk (and non-streamed
	// inference answers) by this much.
	SlowFirstToken Duration `json:"slow_first_token"`
	// TokenInterval is the pause between streamed chunks.
	TokenInterval Duration `json:"token_interval"`
	// Garbage answers 200 with a body that is not what the protocol says.
	Garbage bool `json:"garbage"`
	// Version, when set, is the version string the server reports instead
	// of its default.
	Version string `json:"version,omitempty"`
	// Endless makes streamed inference never end: tokens keep coming past
	// the request's token limit, with no final event, until the client
	// goes away.
	Endless bool `json:"endless"`
	// Drip sends every answer's headers at once and then its body one byte
	// at a time, this long apart.
	Drip Duration `json:"drip"`
	// RedirectTo, when set, answers every API request with a 307 to this
	// URL (scheme and host, with no path) plus the request's path and
	// query.
	RedirectTo string `json:"redirect_to,omitempty"`
}

// Validate reports knob values out of range.
func (k Knobs) Validate() error {
	var errs []error
	if k.ErrorRate < 0 || k.ErrorRate > 1 {
		errs = append(errs, fmt.Errorf("error_rate %v: want 0..1", k.ErrorRate))
	}
	if k.RedirectTo != "" {
		if u, err := url.Parse(k.RedirectTo); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("redirect_to %q: want an absolute URL like http://127.0.0.1:8001", k.RedirectTo))
		}
	}
	for name, d := range map[string]Duration{"latency": k.Latency, "jitter": k.Jitter, "slow_first_token": k.SlowFirstToken, "token_interval": k.TokenInterval, "drip": k.Drip} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v: want >= 0", name, time.Duration(d)))
		}
	}
	return errors.Join(errs...)
}

// Knobs returns the current knobs.
func (s *Server) Knobs() Knobs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.knobs
}

// SetKnobs replaces all knobs.
func (s *Server) SetKnobs(k Knobs) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("aisim: knobs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knobs = k
	return nil
}

// Update changes the knobs with f, atomically.
func (s *Server) Update(f func(*Knobs)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.knobs
	f(&k)
	if err := k.Validate(); err != nil {
		return fmt.Errorf("aisim: knobs: %w", err)
	}
	s.knobs = k
	return nil
}

// SetLatency sets the fixed latency and the jitter.
func (s *Server) SetLatency(fixed, jitter time.Duration) {
	_ = s.Update(func(k *Knobs) { k.Latency, k.Jitter = Duration(max(fixed, 0)), Duration(max(jitter, 0)) })
}

// SetErrorRate sets the fraction of requests answered with 500, clamped
// to [0, 1].
func (s *Server) SetErrorRate(r float64) {
	_ = s.Update(func(k *Knobs) { k.ErrorRate = min(max(r, 0), 1) })
}

// SetDown turns hard down on or off.
func (s *Server) SetDown(on bool) { _ = s.Update(func(k *Knobs) { k.Down = on }) }

// SetHang turns hang on or off.
func (s *Server) SetHang(on bool) { _ = s.Update(func(k *Knobs) { k.Hang = on }) }

// SetStuck turns stuck on or off.
func (s *Server) SetStuck(on bool) { _ = s.Update(func(k *Knobs) { k.Stuck = on }) }

// SetSlowFirstToken sets the delay before the first token.
func (s *Server) SetSlowFirstToken(d time.Duration) {
	_ = s.Update(func(k *Knobs) { k.SlowFirstToken = Duration(max(d, 0)) })
}

// SetTokenInterval sets the pause between streamed chunks.
func (s *Server) SetTokenInterval(d time.Duration) {
	_ = s.Update(func(k *Knobs) { k.TokenInterval = Duration(max(d, 0)) })
}

// SetGarbage turns garbage bodies on or off.
func (s *Server) SetGarbage(on bool) { _ = s.Update(func(k *Knobs) { k.Garbage = on }) }

// SetEndless turns endless streams on or off.
func (s *Server) SetEndless(on bool) { _ = s.Update(func(k *Knobs) { k.Endless = on }) }

// SetDrip sets the pause between the bytes of every body; 0 turns
// dripping off.
func (s *Server) SetDrip(d time.Duration) {
	_ = s.Update(func(k *Knobs) { k.Drip = Duration(max(d, 0)) })
}

// SetRedirectTo makes every API request a redirect to base (see
// Knobs.RedirectTo); "" turns redirects off.
func (s *Server) SetRedirectTo(base string) error {
	return s.Update(func(k *Knobs) { k.RedirectTo = base })
}

// SetVersion sets the reported version; empty restores the default.
func (s *Server) SetVersion(v string) { _ = s.Update(func(k *Knobs) { k.Version = v }) }

// Version returns the version the server reports now.
func (s *Server) Version() string {
	if v := s.Knobs().Version; v != "" {
		return v
	}
	return s.cfg.Version
}
