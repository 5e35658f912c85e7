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
	// Stuck freezes the engine: health, version and list endpoints
	// answer, inference requests take their slot (running) or queue
	// (waiting) but generate no token, so the tokens counter stands still,
	// until Stuck is turned off or their clients give up.
	Stuck bool `json:"stuck"`
	// SlowFirstToken is the time to the first token of every inference
	// request (the whole answer of embeddings and the like).
	SlowFirstToken Duration `json:"slow_first_token"`
	// TokenInterval is the time between generated tokens, streamed or
	// not.
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

	// Slots is how many requests the engine runs at once (0: 4); the
	// others wait in its queue.
	Slots int `json:"slots"`
	// Load is how many requests of its own the server keeps in flight,
	// served through the same queue and slots as any other: with more load
	// than slots the queue grows while tokens keep coming (busy); with
	// Stuck as well, nothing moves (hung). Each is 9 tokens long, at the
	// token interval or 10ms apart when that is 0.
	Load int `json:"load"`
	// KVCacheUsage, in (0, 1], is the KV-cache usage the metrics report;
	// 0 reports the share of the cache the running requests hold.
	KVCacheUsage float64 `json:"kv_cache_usage"`
	// LoadTime is how long a model load takes: the loading phase a Server
	// starts in (when set in Config.Knobs), every Reload, and each Ollama
	// model loaded by a request.
	LoadTime Duration `json:"load_time"`
	// Loading holds the server in its loading phase until it is turned
	// off (gate.go says how each kind answers then).
	Loading bool `json:"loading"`
	// SleepLevel puts a vLLM engine to sleep at level 1 or 2 (0: awake),
	// as POST /sleep does: running requests stall, new ones queue. For
	// llama.cpp it shows as is_sleeping in /props.
	SleepLevel int `json:"sleep_level"`
	// APIKey, when set, is the key the server wants (gate.go says where).
	APIKey string `json:"api_key,omitempty"`
	// ModelName, when set, renames the server's (first) model, as a
	// restart with another model or alias would.
	ModelName string `json:"model_name,omitempty"`
	// KeepAlive is Ollama's default keep-alive (OLLAMA_KEEP_ALIVE; 0:
	// five minutes; negative: forever), used by requests that name none.
	KeepAlive Duration `json:"keep_alive"`
	// MaxLoadedModels is how many models Ollama keeps loaded at once (0:
	// no limit); loading one more evicts the one that expires first.
	MaxLoadedModels int `json:"max_loaded_models"`
	// MetricsOff turns the metrics endpoint off: llama.cpp without
	// --metrics answers 501, SGLang without --enable-metrics 404.
	MetricsOff bool `json:"metrics_off"`
	// SlotsOff turns llama.cpp's /slots off (--no-slots): 501.
	SlotsOff bool `json:"slots_off"`
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
	if k.KVCacheUsage < 0 || k.KVCacheUsage > 1 {
		errs = append(errs, fmt.Errorf("kv_cache_usage %v: want 0..1", k.KVCacheUsage))
	}
	if k.SleepLevel < 0 || k.SleepLevel > 2 {
		errs = append(errs, fmt.Errorf("sleep_level %d: want 0 (awake), 1 or 2", k.SleepLevel))
	}
	for name, n := range map[string]int{"slots": k.Slots, "load": k.Load, "max_loaded_models": k.MaxLoadedModels} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%s %d: want >= 0", name, n))
		}
	}
	if k.Load > maxLoad {
		errs = append(errs, fmt.Errorf("load %d: want at most %d", k.Load, maxLoad))
	}
	if k.Slots > maxSlots {
		errs = append(errs, fmt.Errorf("slots %d: want at most %d", k.Slots, maxSlots))
	}
	for name, d := range map[string]Duration{"latency": k.Latency, "jitter": k.Jitter, "slow_first_token": k.SlowFirstToken, "token_interval": k.TokenInterval, "drip": k.Drip, "load_time": k.LoadTime} {
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

// maxLoad and maxSlots bound Knobs.Load and Knobs.Slots.
const (
	maxLoad  = 1024
	maxSlots = 1024
)

// SetKnobs replaces all knobs.
func (s *Server) SetKnobs(k Knobs) error {
	return s.Update(func(old *Knobs) { *old = k })
}

// Update changes the knobs with f, atomically, and wakes everything that
// waits on them.
func (s *Server) Update(f func(*Knobs)) error {
	s.mu.Lock()
	k := s.knobs
	f(&k)
	err := k.Validate()
	if err == nil {
		s.knobs = k
		s.notifyLocked()
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("aisim: knobs: %w", err)
	}
	s.reconcileLoad()
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

// SetSlots sets how many requests run at once, at most 1024; 0 restores
// 4.
func (s *Server) SetSlots(n int) { _ = s.Update(func(k *Knobs) { k.Slots = min(max(n, 0), maxSlots) }) }

// SetLoad sets how many background requests the server keeps in flight,
// at most 1024.
func (s *Server) SetLoad(n int) { _ = s.Update(func(k *Knobs) { k.Load = min(max(n, 0), maxLoad) }) }

// SetKVCacheUsage sets the KV-cache usage the metrics report, clamped to
// [0, 1]; 0 reports what the running requests hold.
func (s *Server) SetKVCacheUsage(u float64) {
	_ = s.Update(func(k *Knobs) { k.KVCacheUsage = min(max(u, 0), 1) })
}

// SetLoadTime sets how long a model load takes.
func (s *Server) SetLoadTime(d time.Duration) {
	_ = s.Update(func(k *Knobs) { k.LoadTime = Duration(max(d, 0)) })
}

// SetLoading holds the server in its loading phase, or lets it go.
func (s *Server) SetLoading(on bool) { _ = s.Update(func(k *Knobs) { k.Loading = on }) }

// SetSleepLevel puts the engine to sleep at level 1 or 2, or wakes it
// with 0; other levels are clamped.
func (s *Server) SetSleepLevel(level int) {
	_ = s.Update(func(k *Knobs) { k.SleepLevel = min(max(level, 0), 2) })
}

// SetAPIKey sets the key the server wants; "" turns the key off.
func (s *Server) SetAPIKey(key string) { _ = s.Update(func(k *Knobs) { k.APIKey = key }) }

// SetModelName renames the server's model; "" restores its name.
func (s *Server) SetModelName(name string) { _ = s.Update(func(k *Knobs) { k.ModelName = name }) }

// SetKeepAlive sets Ollama's default keep-alive (0: five minutes;
// negative: forever).
func (s *Server) SetKeepAlive(d time.Duration) {
	_ = s.Update(func(k *Knobs) { k.KeepAlive = Duration(d) })
}

// SetMaxLoadedModels sets how many models Ollama keeps loaded (0: no
// limit).
func (s *Server) SetMaxLoadedModels(n int) {
	_ = s.Update(func(k *Knobs) { k.MaxLoadedModels = max(n, 0) })
}

// SetMetricsOff turns the metrics endpoint off or on.
func (s *Server) SetMetricsOff(off bool) { _ = s.Update(func(k *Knobs) { k.MetricsOff = off }) }

// SetSlotsOff turns llama.cpp's /slots off or on.
func (s *Server) SetSlotsOff(off bool) { _ = s.Update(func(k *Knobs) { k.SlotsOff = off }) }
